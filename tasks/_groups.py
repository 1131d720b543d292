"""Consecutive shards grouped into one cluster task when a phase's per-shard work is small.

A phase of one tiny task per shard (read one column, look up a few ids) is bound by the per-task cost on the
driver and the scheduler, not by the workers: 1,200 such tasks take longer than 16 workers need for their work.
A group keeps the shards' order, so a phase's results, flattened, are the same as one task per shard, and the
number of tasks never changes an output byte (only how the work is cut).

How many tasks: ``TASKS_PER_SLOT`` per worker thread of the running cluster (enough for the load to even out),
between ``MIN_TASKS`` and ``MAX_TASKS``, with at most ``MAX_GROUP`` shards in one task so a large corpus still
spreads. The slots are read from the Dask client the executor runs (``distributed.default_client``); before a
cluster is started (the executor starts it lazily) the machine's CPU count stands in, the executor's default
worker count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

TASKS_PER_SLOT = 4  # tasks per worker thread: the last round's unevenness stays a quarter of a task
MIN_TASKS = 8
MAX_TASKS = (
    256  # the driver and scheduler pay per task; beyond this a phase's tasks cost more than they even out
)
MAX_GROUP = 32  # at most this many shards in one task, so a large corpus still spreads


def cluster_slots() -> int:
    """Worker threads of the running Dask cluster, or the CPU count when none runs in this process."""
    try:
        from distributed import default_client

        client = default_client()
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001 - no client yet (ValueError), one closing or gone: the grouping is a heuristic
        return max(1, os.cpu_count() or 1)


def target_tasks() -> int:
    """About how many tasks a grouped phase gets on the running cluster."""
    return max(MIN_TASKS, min(MAX_TASKS, TASKS_PER_SLOT * cluster_slots()))


def group_size(n: int, tasks: int | None = None) -> int:
    """Shards per task for a phase over ``n`` shards and about ``tasks`` tasks (default :func:`target_tasks`):
    1 up to 2 x ``tasks`` shards, then ``n // tasks``, at most ``MAX_GROUP``."""
    tasks = target_tasks() if tasks is None else max(1, tasks)
    return max(1, min(MAX_GROUP, n // tasks))


def groups(items: Sequence[T], tasks: int | None = None) -> list[list[T]]:
    """``items`` cut into consecutive groups of :func:`group_size` (the last may be shorter)."""
    size = group_size(len(items), tasks)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
