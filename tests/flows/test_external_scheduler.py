"""An existing Dask cluster (`executor.address`) gives the same outputs as the embedded LocalCluster, and a node's
`resources.memory_gb` is matched against what its workers declare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _dask_cluster import free_port, stop_processes, wait_for_workers
from _pipeline_util import load, output_hashes, run_all, write_corpus, write_pipeline

from flows.executor import ResourceUnavailableError

NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.00001}},
    "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 300"}},
    "few": {"uses": "sample", "inputs": ["long"], "params": {"fraction": 0.7, "limit": 6}},
}


@pytest.mark.slow
def test_existing_scheduler_matches_embedded_cluster(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=10)
    write_pipeline(tmp_path, NODES, workers=2, processes=True, extra={"workdir": str(tmp_path / "embedded")})
    run_all(load(tmp_path / "pipeline.yaml"))
    embedded = output_hashes(tmp_path / "embedded")

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bindir = Path(sys.executable).parent
    procs = [
        subprocess.Popen(
            [str(bindir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        procs.append(
            subprocess.Popen(
                [
                    str(bindir / "dask"),
                    "worker",
                    address,
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--resources",
                    "CPU=1,MEMORY_GB=4",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=dict(os.environ),
            )
        )
        wait_for_workers(address, 2, timeout_s=90, poll_s=0.5)
        write_pipeline(
            tmp_path, NODES, extra={"workdir": str(tmp_path / "external"), "executor": {"address": address}}
        )
        run_all(load(tmp_path / "pipeline.yaml"))
        external = output_hashes(tmp_path / "external")

        # memory_gb: within what the workers declare it runs (same bytes); beyond it, a clear error, no hang
        fits = {**NODES, "long": {**NODES["long"], "resources": {"memory_gb": 3}}}
        too_big = {**NODES, "long": {**NODES["long"], "resources": {"memory_gb": 64}}}
        for nodes, workdir in ((fits, "fits"), (too_big, "too_big")):
            write_pipeline(
                tmp_path, nodes, extra={"workdir": str(tmp_path / workdir), "executor": {"address": address}}
            )
            if nodes is fits:
                run_all(load(tmp_path / "pipeline.yaml"))
            else:
                with pytest.raises(ResourceUnavailableError) as info:
                    run_all(load(tmp_path / "pipeline.yaml"))
                assert "MEMORY_GB=64" in str(info.value) and "MEMORY_GB=4" in str(info.value), info.value
                assert "--resources" in str(info.value)
    finally:
        stop_processes(procs)
    assert embedded and external == embedded
    assert output_hashes(tmp_path / "fits") == embedded
