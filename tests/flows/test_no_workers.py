"""An external cluster that loses every worker mid-node: the run says so (with the command that adds one) instead
of waiting in silence, and goes on once a worker joins. A wrong per-worker memory limit is a config error."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _dask_cluster import free_port, stop_processes, wait_for_workers
from pydantic import ValidationError

from flows import executor as executor_mod
from flows.executor import DaskExecutor
from flows.schema import ExecutorSpec


@pytest.mark.slow
def test_losing_every_worker_is_said_and_the_map_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(executor_mod, "NO_WORKERS_WARN_S", 1.0)
    monkeypatch.setattr(executor_mod, "NO_WORKERS_POLL_S", 0.5)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    worker = [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
        )
    ]
    executor = DaskExecutor(ExecutorSpec(address=address, inline_s=0))
    try:
        procs.append(subprocess.Popen(worker, **quiet))
        wait_for_workers(address, 1, timeout_s=90, poll_s=0.5)
        out: list = []
        caplog.set_level(logging.WARNING, logger="flows.executor")
        mapper = threading.Thread(target=lambda: out.append(executor.map(time.sleep, [3.0, 3.0])))
        mapper.start()
        time.sleep(1.0)
        procs[1].kill()  # the only worker dies mid-task
        procs[1].wait()
        deadline = time.monotonic() + 30
        while "no Dask worker has been connected" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.2)
        assert f"no Dask worker has been connected to {address}" in caplog.text
        assert f"`dask worker {address}`" in caplog.text
        assert mapper.is_alive()  # still waiting for a worker, not failed
        procs[1] = subprocess.Popen(worker, **quiet)
        mapper.join(timeout=90)
        assert out == [[None, None]]
        assert f"workers are connected to {address} again" in caplog.text
    finally:
        executor.close()
        stop_processes(procs)


def test_a_memory_limit_that_is_no_size_is_a_config_error() -> None:
    for good in ("auto", "4GiB", "6GB", "0.5", "2000000000"):
        ExecutorSpec(memory_limit=good)
    with pytest.raises(ValidationError, match=r"memory limit '1GiBB' is not a size: write e.g. 4GiB"):
        ExecutorSpec(memory_limit="1GiBB")
