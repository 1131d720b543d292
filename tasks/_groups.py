"""Consecutive shards grouped into one cluster task when a phase's per-shard work is small.

A phase of one tiny task per shard (read one column, look up a few ids) is bound by the per-task cost on the
driver and the scheduler, not by the workers: 300 such tasks take longer than 16 workers need for their work. A
group keeps the shards' order, so a phase's results, flattened, are the same as one task per shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

TASKS = 64  # about this many tasks per phase (a few per worker on a 16-worker host) ...
MAX_GROUP = 32  # ... with at most this many shards in one task, so a large corpus still spreads


def group_size(n: int) -> int:
    """Shards per task for a phase over ``n`` shards: 1 up to 2 x ``TASKS`` shards, then ``n // TASKS``."""
    return max(1, min(MAX_GROUP, n // TASKS))


def groups(items: Sequence[T]) -> list[list[T]]:
    """``items`` cut into consecutive groups of :func:`group_size` (the last may be shorter)."""
    size = group_size(len(items))
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
