"""Shards grouped into Dask tasks: guided batch sizes (large first, single shards at the end)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flows.engine import BATCHES_PER_SLOT, MAX_BATCH, Engine
from tasks.base import ShardTask


def _batches(n: int, slots: int) -> list[list[ShardTask]]:
    engine = SimpleNamespace(executor=SimpleNamespace(slots=lambda: slots))
    todo = [ShardTask(i, {"path": f"part-{i:05d}.parquet"}) for i in range(n)]
    return Engine._batches(engine, todo)  # type: ignore[arg-type]


@pytest.mark.parametrize(("n", "slots"), [(1200, 16), (64, 2), (100_000, 64), (7, 4), (0, 16)])
def test_every_shard_once_in_order_with_sizes_shrinking_to_one(n: int, slots: int) -> None:
    batches = _batches(n, slots)
    assert [t.index for b in batches for t in b] == list(range(n))
    sizes = [len(b) for b in batches]
    assert all(1 <= s <= MAX_BATCH for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    tail = min(n, slots * BATCHES_PER_SLOT)
    assert sizes[len(sizes) - tail :] == [1] * tail  # the node's tail is single shards


def test_many_shards_make_few_tasks_and_few_shards_one_task_each() -> None:
    sizes = [len(b) for b in _batches(1200, 16)]
    assert sizes[0] == 1200 // (16 * BATCHES_PER_SLOT)
    assert len(sizes) < 1200 / 2  # grouped: the scheduler's cost is per task
    assert [len(b) for b in _batches(100, 16)] == [1] * 100
