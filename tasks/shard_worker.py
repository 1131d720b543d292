"""What a Dask worker runs for one shard: look the kind up in the registry and call its ``run_shard``.

Kept free of Prefect and of the orchestrator, so any worker with the project installed can run it.
"""

from __future__ import annotations

from data_pipes.io.shards import ShardResult
from tasks.base import KindParams, ShardTask
from tasks.registry import get_kind


def execute_shard(
    kind_name: str, params: KindParams, task: ShardTask, out_dir: str, seed: int
) -> ShardResult:
    kind = get_kind(kind_name)
    result = kind.run_shard(params, task, out_dir, seed)
    result.check_balance()
    return result
