"""C and C++ quote includes (``#include "x.h"``) resolved to repository files.

An include resolves first relative to the including file's folder, then from the repository root, then to
any repository file whose path ends with the included path (the usual ``-I include/`` setups, matched by
basename and trailing folders); among several, the one sharing the longest folder prefix with the including
file wins, ties by path. Angle includes (``<x.h>``) are system headers and never resolved.
"""

from __future__ import annotations

import posixpath
import re

from data_pipes.code.deps_index import RepoIndex

_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"\n]+)"', re.MULTILINE)


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a.split("/"), b.split("/"), strict=False):
        if x != y:
            break
        n += 1
    return n


def resolve(index: RepoIndex, path: str, include: str) -> str | None:
    found = index.first([posixpath.join(posixpath.dirname(path), include), include])
    if found:
        return found
    norm = posixpath.normpath(include).lstrip("./")
    name = posixpath.basename(norm)
    matches = [p for p in index.by_name.get(name, []) if p == norm or p.endswith("/" + norm)]
    if not matches:
        return None
    folder = posixpath.dirname(path)
    return min(matches, key=lambda p: (-_shared_prefix(folder, posixpath.dirname(p)), p))


def c_imports(path: str, text: str, index: RepoIndex) -> set[str]:
    """Repository files that the C/C++ file ``path`` includes with quotes."""
    found = {resolve(index, path, inc) for inc in _INCLUDE.findall(text)}
    found.discard(None)
    found.discard(path)
    return found  # type: ignore[return-value]
