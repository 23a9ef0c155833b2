"""The one version of model-boss, read from the installed distribution's metadata."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__ = version("model-boss")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"
