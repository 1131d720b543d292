"""Include / exclude globs over ``/``-separated paths inside a repository.

``*`` and ``?`` stay inside one path segment, ``**`` spans segments (``**/`` may match nothing). As in
``.gitignore``, a pattern without ``/`` is matched against the file name alone (``*.min.js`` anywhere).
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Sequence


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(path: str, pattern: str) -> bool:
    """Whether ``path`` matches ``pattern`` (see the module docstring)."""
    target = path if "/" in pattern else posixpath.basename(path)
    return _compile(pattern.lstrip("/")).match(target) is not None


def selected(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """True when ``path`` matches one of ``include`` (or ``include`` is empty) and none of ``exclude``."""
    if include and not any(glob_match(path, p) for p in include):
        return False
    return not any(glob_match(path, p) for p in exclude)
