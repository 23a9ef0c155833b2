"""Where a key of the merged settings came from: which file, and how that file spelled it.

Each file is read into a :class:`Source` whose keys are already in their canonical
spelling (see ``canonical_models``), so a local override merges over its base key by key
whichever spelling each file used. Errors are reported against the file that holds the bad
key, under the key path as that file wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["KeyPath", "Origins", "Source"]

KeyPath = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Source:
    """One settings file: its name, its data with canonical keys, and the keys it spelled
    otherwise (canonical key path -> the key path as written)."""

    name: str
    data: Mapping[str, Any] = field(default_factory=dict)
    spellings: Mapping[KeyPath, KeyPath] = field(default_factory=dict)

    def depth(self, path: KeyPath) -> int:
        """How many leading keys of ``path`` this file holds."""
        node: Any = self.data
        for i, key in enumerate(path):
            if not isinstance(node, Mapping) or key not in node:
                return i
            node = node[key]
        return len(path)

    def written(self, path: KeyPath) -> KeyPath:
        """``path`` as this file spells it."""
        for n in range(len(path), 0, -1):
            spelled = self.spellings.get(path[:n])
            if spelled is not None:
                return (*spelled, *path[n:])
        return path


class Origins:
    """The files merged into one settings mapping, later ones over earlier ones."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sources = tuple(sources) or (Source("<defaults>"),)

    def source(self, path: KeyPath) -> Source:
        """The last file that holds ``path``; for a missing key, the file holding most of it."""
        for source in reversed(self.sources):
            if source.depth(path) == len(path):
                return source
        return max(self.sources, key=lambda s: s.depth(path))  # the first on ties

    def written(self, path: KeyPath) -> KeyPath:
        return self.source(path).written(path)

    def at(self, path: KeyPath) -> str:
        """``file: key.path`` for an error about ``path`` (a canonical key path)."""
        source = self.source(path)
        return f"{source.name}: {'.'.join(source.written(path))}"
