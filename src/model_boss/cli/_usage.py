"""The CLI's usage error: bad arguments found after parsing (exit code 2)."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """Arguments argparse accepted but the command cannot use (``model-boss`` exits 2)."""
