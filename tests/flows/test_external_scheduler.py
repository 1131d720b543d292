"""An existing Dask cluster (`executor.address`) gives the same outputs as the embedded LocalCluster."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _pipeline_util import load, output_hashes, run_all, write_corpus, write_pipeline

NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.00001}},
    "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 300"}},
    "few": {"uses": "sample", "inputs": ["long"], "params": {"fraction": 0.7, "limit": 6}},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_existing_scheduler_matches_embedded_cluster(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=10)
    write_pipeline(tmp_path, NODES, workers=2, processes=True, extra={"workdir": str(tmp_path / "embedded")})
    run_all(load(tmp_path / "pipeline.yaml"))
    embedded = output_hashes(tmp_path / "embedded")

    port = _free_port()
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
                    "CPU=1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=dict(os.environ),
            )
        )
        from distributed import Client

        deadline = time.monotonic() + 90
        while True:
            try:
                with Client(address, timeout="5s") as c:
                    if len(c.scheduler_info()["workers"]) >= 2:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dask cluster did not come up"
            time.sleep(0.5)
        write_pipeline(
            tmp_path, NODES, extra={"workdir": str(tmp_path / "external"), "executor": {"address": address}}
        )
        run_all(load(tmp_path / "pipeline.yaml"))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    assert embedded and output_hashes(tmp_path / "external") == embedded
