"""The Dask executor: small work runs in the calling process without starting the cluster (with the same outputs),
and `resources.memory_gb` is a Dask resource that limits how many of a node's shards a worker runs at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _pipeline_util import load, output_hashes, run_all, write_corpus, write_pipeline

from flows.engine import Engine
from flows.executor import MEMORY, DaskExecutor, ResourceUnavailableError
from flows.schema import ExecutorSpec

NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.00001}},
    "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 300"}},
}


def _square(x: int) -> int:
    return x * x


def test_small_work_runs_inline_and_big_work_goes_to_the_cluster() -> None:
    small = DaskExecutor(ExecutorSpec(n_workers=1, processes=False, inline_s=60))
    done: list[int] = []
    assert small.map(_square, range(5), on_done=lambda i, _r: done.append(i)) == [0, 1, 4, 9, 16]
    assert (small.inline_items, small.started, done) == (5, False, [0, 1, 2, 3, 4])

    def slow(x: int) -> int:
        time.sleep(0.05)
        return x + 1

    # projected past the budget after the first item: the rest go to the cluster, results still in order
    big = DaskExecutor(ExecutorSpec(n_workers=1, processes=False, inline_s=0.001))
    try:
        assert big.map(slow, range(4)) == [1, 2, 3, 4]
        assert (big.inline_items, big.started) == (1, True)
    finally:
        big.close()


def test_inline_and_cluster_runs_give_the_same_bytes(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=6)
    outs = {}
    for inline_s in (0.0, 60.0):
        write_pipeline(
            tmp_path,
            NODES,
            workers=2,
            processes=True,
            extra={
                "workdir": str(tmp_path / f"store-{inline_s:g}"),
                "executor": {"n_workers": 2, "processes": True, "inline_s": inline_s},
            },
        )
        pipeline = load(tmp_path / "pipeline.yaml")
        engine = Engine(pipeline)
        try:
            for node in pipeline.order:
                engine.run_node(node)
            assert engine.executor.started is (inline_s == 0.0)
        finally:
            engine.close()
        outs[inline_s] = output_hashes(tmp_path / f"store-{inline_s:g}")
    assert outs[0.0] and outs[0.0] == outs[60.0]


def test_memory_gb_beyond_a_worker_is_refused_with_the_fix(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=2)
    nodes = {**NODES, "long": {**NODES["long"], "resources": {"memory_gb": 1e6}}}
    write_pipeline(tmp_path, nodes, extra={"executor": {"n_workers": 1, "memory_limit": "2GB"}})
    with pytest.raises(ResourceUnavailableError) as info:
        run_all(load(tmp_path / "pipeline.yaml"))
    message = str(info.value)
    assert "'long'" in message and "MEMORY_GB=1e+06" in message and "MEMORY_GB=2" in message
    assert "memory_limit" in message


_ACTIVE = {"now": 0, "max": 0}
_GUARD = threading.Lock()


def _occupy(_i: int) -> None:
    """Counts how many tasks run at once (the workers are threads of this process, so the counter is shared)."""
    with _GUARD:
        _ACTIVE["now"] += 1
        _ACTIVE["max"] = max(_ACTIVE["max"], _ACTIVE["now"])
    time.sleep(0.2)
    with _GUARD:
        _ACTIVE["now"] -= 1


def test_memory_gb_limits_concurrent_shards_on_a_worker() -> None:
    """One worker with two threads offering M GB: tasks of M GB run one at a time, tasks of M/2 two at a time.
    (The worker runs in this process, so its limit must sit far above the test process's own memory: Dask pauses
    a worker whose process passes 80% of its limit, and a long pytest session holds a few GB. Dask caps the limit
    at the machine's memory, which is then what the worker offers.)"""
    ex = DaskExecutor(ExecutorSpec(n_workers=1, threads_per_worker=2, processes=False, memory_limit="4TB"))
    offer = ex.local_resources()[MEMORY]
    assert ex.local_resources() == {"CPU": 2.0, MEMORY: round(ex.worker_memory_bytes() / 1e9, 3)}
    assert offer > 4.0
    try:
        ex.map(_occupy, range(4), resources={MEMORY: offer})
        assert _ACTIVE["max"] == 1
        ex.map(_occupy, range(4), resources={MEMORY: offer / 2})
        assert _ACTIVE["max"] == 2
    finally:
        ex.close()


def test_cluster_start_prints_no_dask_info_lines() -> None:
    # a fresh process where the root logger already has a handler (Prefect's, in the CLI): importing distributed
    # then sets its logger to INFO without a handler of its own, so LocalCluster's silence_logs (which quiets
    # distributed's handlers only) does nothing; the executor must set the level before the cluster starts
    code = (
        "import logging\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "from flows.executor import DaskExecutor\n"
        "from flows.schema import ExecutorSpec\n"
        "ex = DaskExecutor(ExecutorSpec(n_workers=1, processes=False, inline_s=0))\n"
        "assert ex.map(abs, [-1, -2]) == [1, 2]\n"
        "ex.close()\n"
    )
    env = {
        **os.environ,
        "ARCFLOW_DASK_LOG_LEVEL": "ERROR",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    chatter = [line for line in done.stderr.splitlines() if "distributed." in line and "INFO" in line]
    assert chatter == [], chatter


def _worker_config() -> dict[str, object]:
    import dask.config

    from flows.executor import IDLE_DEFAULTS

    return {k: dask.config.get(k) for k in IDLE_DEFAULTS}


def test_embedded_cluster_slows_dasks_loops_unless_the_user_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """The LocalCluster's scheduler and its worker process run with the idle defaults, except a key the user set:
    here with dask.config.set before the cluster starts; a DASK_* variable (or a config file) also wins."""
    import dask.config

    from flows.executor import IDLE_DEFAULTS, dask_overrides

    tick = "distributed.admin.tick.interval"
    monkeypatch.setenv("DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL", "750ms")
    assert set(dask_overrides()) == set(IDLE_DEFAULTS) - {"distributed.admin.system-monitor.interval"}
    monkeypatch.delenv("DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL")
    monkeypatch.setenv("ARCFLOW_DASK_DEFAULTS", "0")
    assert dask_overrides() == {}
    monkeypatch.delenv("ARCFLOW_DASK_DEFAULTS")
    with dask.config.set({tick: "50ms"}):
        ex = DaskExecutor(ExecutorSpec(n_workers=1, processes=True, inline_s=0))
        try:
            client = ex.client()
            (worker,) = client.run(_worker_config).values()
            scheduler_tick = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler._tick_interval)
            # set for the cluster's start only: this process's own config is left as it was
            assert dask.config.get("distributed.worker.memory.monitor-interval") == "100ms"
        finally:
            ex.close()
    assert worker == {**IDLE_DEFAULTS, tick: "50ms"}
    assert scheduler_tick == 0.05
