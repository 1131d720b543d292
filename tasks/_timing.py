"""Wall-clock timing of a kind's phases into ``ctx.timings`` (the manifest's ``timings.phases``).

The timings go to the manifest only, never to a node's outputs or reports: those are hashed and must be the same
bytes on every run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.base import RunContext


@contextmanager
def timed(ctx: RunContext, name: str) -> Iterator[None]:
    """Add the wall seconds of the ``with`` block to ``ctx.timings[name]`` (summed when a phase repeats)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        ctx.timings[name] = ctx.timings.get(name, 0.0) + time.perf_counter() - started
