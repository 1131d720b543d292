"""A wrong `executor.address` is said at once, naming the setting: nothing listens there, or something that is not a
Dask scheduler does (its dashboard port, say), where Dask's own client would wait with no end."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _dask_cluster import free_port
from _pipeline_util import write_corpus, write_pipeline

from flows.executor import SchedulerUnreachableError, check_scheduler

REPO = Path(__file__).resolve().parents[2]


def _silent_listener() -> tuple[socket.socket, int]:
    """A server that accepts connections and never writes (as a web server waits for a request)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return srv, srv.getsockname()[1]


def test_nothing_listening_is_said_with_the_fix() -> None:
    port = free_port()
    with pytest.raises(
        SchedulerUnreachableError, match=rf"executor.address 'tcp://127.0.0.1:{port}': cannot connect"
    ):
        check_scheduler(f"tcp://127.0.0.1:{port}")


def test_a_listener_that_is_not_a_scheduler_is_said_within_the_probe_time() -> None:
    srv, port = _silent_listener()
    try:
        started = time.monotonic()
        with pytest.raises(SchedulerUnreachableError, match="sent no Dask handshake within 1 s"):
            check_scheduler(f"127.0.0.1:{port}", timeout_s=1.0)
        assert time.monotonic() - started < 10
    finally:
        srv.close()


def test_no_port_is_said() -> None:
    with pytest.raises(SchedulerUnreachableError, match="has no port"):
        check_scheduler("tcp://schedulerhost")


def test_arcflow_run_stops_before_any_node(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=1)
    srv, port = _silent_listener()
    try:
        pipeline = write_pipeline(
            tmp_path,
            {"raw": {"uses": "files", "params": {"paths": ["data"]}}},
            extra={"executor": {"address": f"tcp://127.0.0.1:{port}"}},
        )
        res = subprocess.run(
            [sys.executable, "-m", "flows.cli", "run", "-f", str(pipeline)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        srv.close()
    assert res.returncode == 1, res.stdout + res.stderr
    text = " ".join(res.stderr.split())
    assert f"{pipeline}: executor.address 'tcp://127.0.0.1:{port}'" in text, text
    assert "not a Dask scheduler" in text and "Traceback" not in text, text
    assert not (tmp_path / ".arcflow" / "outputs").exists()  # no node started
