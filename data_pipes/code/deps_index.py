"""What import resolution needs to know about a repository: its file paths, by directory and by basename.

Paths are repository-relative with ``/`` separators (as in ``meta.path``). Resolution only ever answers with
paths of the repository: imports of the standard library or third-party packages resolve to nothing.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field


def normpath(path: str) -> str | None:
    """``path`` normalised (``a/./b/../c`` -> ``a/c``); ``None`` when it climbs out of the repository."""
    norm = posixpath.normpath(path.replace("\\", "/")).lstrip("/") if path else ""
    if norm in ("", ".") or norm == ".." or norm.startswith("../"):
        return None
    return norm


@dataclass
class RepoIndex:
    """The paths of one repository, with lookups by directory and by basename."""

    paths: frozenset[str]
    by_dir: dict[str, list[str]] = field(default_factory=dict)
    by_name: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, paths: Iterable[str]) -> RepoIndex:
        clean = frozenset(p for p in (normpath(p) for p in paths) if p)
        by_dir: dict[str, list[str]] = defaultdict(list)
        by_name: dict[str, list[str]] = defaultdict(list)
        for p in sorted(clean):
            by_dir[posixpath.dirname(p)].append(p)
            by_name[posixpath.basename(p)].append(p)
        return cls(clean, dict(by_dir), dict(by_name))

    def first(self, candidates: Iterable[str]) -> str | None:
        """The first candidate path that is a file of the repository."""
        for c in candidates:
            norm = normpath(c)
            if norm is not None and norm in self.paths:
                return norm
        return None

    def files_in(self, folder: str) -> list[str]:
        """Files directly inside ``folder`` (``""`` is the root), sorted."""
        return self.by_dir.get(folder, [])
