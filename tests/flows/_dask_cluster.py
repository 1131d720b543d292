"""Helpers for tests that start an external dask scheduler and workers as subprocesses: a free port for the
scheduler, wait until enough workers have joined, and stop the processes afterwards."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_workers(address: str, n_workers: int, timeout_s: float, poll_s: float) -> None:
    """Poll the scheduler at ``address`` until at least ``n_workers`` workers have joined; fail the test when that
    has not happened within ``timeout_s`` seconds."""
    from distributed import Client

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with Client(address, timeout="5s") as c:
                if len(c.scheduler_info()["workers"]) >= n_workers:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "the dask cluster did not come up"
        time.sleep(poll_s)


def stop_processes(procs: Sequence[subprocess.Popen]) -> None:
    """Terminate ``procs`` (last started first) and wait for each, killing any still running after 20 s."""
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
