"""Guard: a worker process must run the code the driver fingerprinted.

A node's fingerprint hashes the source files of its kind's modules as they are on the driver's disk
(flows/fingerprint.py). A long-lived Dask worker (an external cluster's `dask worker`) keeps the modules it
imported for an earlier run: after a source file changes, the driver fingerprints the new code while that worker
would still compute with the old, and the output would be stored, and reused, under the new fingerprint.

:class:`CodeGuard` wraps every function the engine sends to the workers. In each process it records, per module,
the sha256 of the module's source file when the process is first seen holding that module (before a task, for the
modules already imported; right after the task, for those the task imported), and fails the task when a recorded
digest differs from the driver's: the message names the modules and says to restart the workers. A module's file
edited while a task that first imports it is running is recorded as edited (the task then fails too, which is
right: its code changed under the run).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

_SEEN: dict[str, str] = {}  # module -> sha256 of its source file when this process was first seen holding it
_LOCK = threading.Lock()


class StaleWorkerCodeError(RuntimeError):
    """A worker process holds other code than the code the node's fingerprint was computed from."""


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


def _record(expected: dict[str, str]) -> list[str]:
    """Record the loaded modules of ``expected`` not seen yet; return those whose recorded digest differs."""
    stale = []
    with _LOCK:
        for name, want in expected.items():
            if name not in _SEEN:
                module = sys.modules.get(name)
                path = getattr(module, "__file__", None) if module is not None else None
                if not path or not path.endswith(".py"):
                    continue  # not imported here yet: it will be imported from the file as it is now
                digest = _digest(path)
                if digest is None:
                    continue
                _SEEN[name] = digest
            if _SEEN[name] != want:
                stale.append(name)
    return sorted(stale)


def check_loaded(expected: dict[str, str], when: str) -> None:
    """Raise :class:`StaleWorkerCodeError` when a module of ``expected`` (``{module: sha256}``) that this process
    holds was loaded from other source than the driver's."""
    stale = _record(expected)
    if stale:
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        raise StaleWorkerCodeError(
            f"worker process {os.getpid()} on {socket.gethostname()} {when} holds other code than this run "
            f"fingerprinted ({shown}: changed on disk since the process imported it). A Dask worker keeps the "
            f"modules it imported; restart the cluster's `dask worker` processes after changing code, then run "
            f"again"
        )


class CodeGuard:
    """``fn`` run after (and checked again after) :func:`check_loaded` of the node's code digests. Picklable."""

    def __init__(self, fn: Callable[..., Any], expected: dict[str, str]) -> None:
        self.fn, self.expected = fn, expected

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        check_loaded(self.expected, "before the task")
        out = self.fn(*args, **kwargs)
        check_loaded(self.expected, "after the task (a module it imported)")
        return out
