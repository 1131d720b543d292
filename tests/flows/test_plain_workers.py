"""The README's "use an existing cluster" recipe with plain workers: `dask scheduler` and `dask worker ADDRESS`
without `--resources` run a pipeline that asks for nothing special, with the bytes of a run without a cluster; a node
that asks for memory is still refused before anything is submitted, with the worker command that fixes it.

A real scheduler and worker, started here as processes (as tests/flows/test_external_scheduler.py does)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _dask_cluster import stop_processes, wait_for_workers
from _pipeline_util import load, output_hashes, run_all, write_corpus, write_pipeline

from flows.executor import ResourceUnavailableError

NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.00001}},
    "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 300"}},
}


@pytest.fixture(scope="module")
def plain_cluster() -> Iterator[str]:
    """`dask scheduler` and one `dask worker ADDRESS --nthreads 2`, no resources declared (no nanny: it stops at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
        )
    ]
    try:
        procs.append(
            subprocess.Popen(
                [dask, "worker", address, "--nthreads", "2", "--no-nanny", "--no-dashboard"], **quiet
            )
        )
        wait_for_workers(address, 1, timeout_s=90, poll_s=0.3)
        yield address
    finally:
        stop_processes(procs)


def test_plain_workers_run_a_pipeline_that_asks_nothing_special(plain_cluster: str, tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=6)
    here = {"workdir": str(tmp_path / "here"), "executor": {"inline_s": 1e9}}  # every shard in this process
    run_all(load(write_pipeline(tmp_path, NODES, extra=here)))
    reference = output_hashes(tmp_path / "here")

    on_cluster = {"workdir": str(tmp_path / "plain"), "executor": {"address": plain_cluster}}
    assert run_all(load(write_pipeline(tmp_path, NODES, extra=on_cluster))) == {"raw": False, "long": False}
    assert reference and output_hashes(tmp_path / "plain") == reference

    # memory is still enforced: refused before anything is submitted, naming the worker command that fixes it
    asks = {**NODES, "long": {**NODES["long"], "resources": {"memory_gb": 2}}}
    extra = {"workdir": str(tmp_path / "memory"), "executor": {"address": plain_cluster}}
    with pytest.raises(ResourceUnavailableError) as info:
        run_all(load(write_pipeline(tmp_path, asks, extra=extra)))
    assert str(info.value).startswith(
        f"node 'long': a shard task asks CPU=1, MEMORY_GB=2, but the workers of {plain_cluster} offer(s) none; "
        f'start workers that offer it, e.g. `dask worker {plain_cluster} --resources "CPU=1,MEMORY_GB=2"`'
    ), info.value
