"""``ast.parse`` behind one process-wide lock.

CPython 3.11's AST constructor keeps its recursion-depth counter in module state, not per thread, so two threads
parsing at once can fail with ``SystemError: AST constructor recursion depth mismatch`` (fixed in later
releases). Prefect runs nodes in threads of one process (a node's fingerprint parses project modules while another
node's inline shard parses Python sources), so every parse in the project goes through :func:`parse`.
"""

from __future__ import annotations

import ast
import threading
from typing import Any

_lock = threading.Lock()


def parse(source: str | bytes, filename: str = "<unknown>", mode: str = "exec", **kwargs: Any) -> Any:
    """``ast.parse(source, filename, mode, **kwargs)``, serialised across the process's threads."""
    with _lock:
        return ast.parse(source, filename=filename, mode=mode, **kwargs)
