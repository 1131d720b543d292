"""Include / exclude patterns over ``/``-separated paths inside a repository, with ``.gitignore`` semantics.

Patterns are read by ``pathspec``'s ``GitIgnoreSpec`` (the rules git itself applies, including its edge
cases), so what a user writes in a ``.gitignore`` works here the same way:

* a pattern without a ``/`` (other than a trailing one) matches at any depth: ``*.min.js``, ``*.[ch]``;
* a trailing ``/`` matches a folder and everything below it: ``vendor/``, ``node_modules/``;
* a ``/`` at the start or in the middle anchors the pattern to the repository root: ``/build``, ``docs/*.md``;
* ``*``, ``?`` and ``[...]`` stay inside one path segment, ``**`` spans segments;
* ``!pattern`` re-includes what an earlier pattern of the same list matched. One departure from git: it
  re-includes a file even inside an excluded folder (``vendor/`` then ``!vendor/keep.py`` keeps
  ``vendor/keep.py``; git would not look inside ``vendor/``), because paths are matched one file at a time.

A path is selected when ``include`` is empty or matches it, and ``exclude`` does not.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pathspec


@functools.lru_cache(maxsize=256)
def compile_patterns(patterns: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    """The compiled spec of ``patterns``; a malformed pattern raises ``ValueError`` naming it."""
    for p in patterns:
        try:
            pathspec.GitIgnoreSpec.from_lines([p])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"invalid include/exclude pattern {p!r}: {exc}") from exc
    return pathspec.GitIgnoreSpec.from_lines(list(patterns))


def glob_match(path: str, pattern: str) -> bool:
    """Whether ``path`` matches ``pattern`` (see the module docstring)."""
    return compile_patterns((pattern,)).match_file(path)


def selected(path: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """True when ``path`` matches ``include`` (or ``include`` is empty) and does not match ``exclude``."""
    if include and not compile_patterns(tuple(include)).match_file(path):
        return False
    return not (exclude and compile_patterns(tuple(exclude)).match_file(path))
