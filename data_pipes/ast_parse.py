"""``ast.parse`` behind one process-wide lock, retried on CPython 3.11's recursion-depth race.

CPython 3.11's AST constructor keeps its recursion-depth counter in module state, not per thread: each conversion
sets it to its own thread's stack depth, so two threads converting at once can fail with ``SystemError: AST
constructor recursion depth mismatch (before=..., after=...)`` (fixed in later releases). Prefect runs nodes in
threads of one process (a node's fingerprint parses project modules while another node's inline shard parses
Python sources), and parses we do not make run there too: the 3.11 traceback module parses each frame's line to
place its carets, Prefect and griffe parse sources and docstrings.

So every parse of the project goes through :func:`parse` (one lock), :func:`install` puts the same lock around
the ``ast.parse`` that other libraries call (traceback, Prefect, ``ast.literal_eval``), and a parse that still
meets the race (a ``compile(..., PyCF_ONLY_AST)`` call elsewhere, which no lock can cover) is retried: the error
says nothing about the source, and the counter is reset by the next conversion.
"""

from __future__ import annotations

import ast
import sys
import threading
from typing import Any

_lock = threading.RLock()
_original_parse = ast.parse
RACE = "AST constructor recursion depth mismatch"
ATTEMPTS = 5


def _locked(source: Any, filename: Any = "<unknown>", mode: str = "exec", **kwargs: Any) -> Any:
    for attempt in range(ATTEMPTS):
        with _lock:
            try:
                return _original_parse(source, filename=filename, mode=mode, **kwargs)
            except SystemError as exc:
                if RACE not in str(exc) or attempt == ATTEMPTS - 1:
                    raise
    raise AssertionError("unreachable")


def parse(source: str | bytes, filename: str = "<unknown>", mode: str = "exec", **kwargs: Any) -> Any:
    """``ast.parse(source, filename, mode, **kwargs)``, serialised across the process's threads and retried when
    another thread's unlocked AST conversion trips CPython 3.11's shared recursion counter."""
    return _locked(source, filename, mode, **kwargs)


def install() -> None:
    """Route the ``ast.parse`` other modules call through the same lock (CPython before 3.13, where the counter
    is shared). Idempotent."""
    if sys.version_info < (3, 13) and ast.parse is not _locked:
        ast.parse = _locked  # type: ignore[assignment]


install()
