"""`arcflow server`: a local Prefect server that `arcflow run` finds by itself, with the warm runner that takes the
command (the run reports to the server, its flow run and task runs are there, the output is the CLI's)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from _pipeline_util import write_corpus, write_pipeline

from tests._prefect_home import seed_prefect_home

REPO = Path(__file__).resolve().parents[2]
NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"]}},
    "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 300"}},
}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_finds_the_local_server_and_its_warm_runner(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    write_corpus(tmp_path, n_files=3)
    pipeline = write_pipeline(tmp_path, NODES)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # no PREFECT_* setting but the home, as a user has; its database already migrated (tests/_prefect_home.py)
    env["PREFECT_HOME"] = str(seed_prefect_home(tmp_path / "prefect-home"))
    state = tmp_path / "prefect-home" / "arcflow-server"

    def arcflow(*args: str, code: int = 0) -> str:
        # `python -m flows.launch` is what the `arcflow` console script runs
        done = subprocess.run(
            [sys.executable, "-m", "flows.launch", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == code, done.stdout + done.stderr
        return done.stdout + done.stderr

    port = _free_port()
    arcflow("server", "status", code=1)
    try:
        out = arcflow("server", "start", "--port", str(port))
        assert f"http://127.0.0.1:{port}" in out, out
        assert "already running" in arcflow("server", "start", "--port", str(port))
        assert f"API http://127.0.0.1:{port}/api" in arcflow("server", "status")
        for _ in range(3000):  # the warm runner imports Prefect and every kind before it listens
            if (state / "runner.sock").exists():
                break
            time.sleep(0.1)
        assert (state / "runner.sock").exists(), (state / "runner.log").read_text()

        out = arcflow("run", "-f", str(pipeline))
        assert "Prefect API: the local arcflow server" in out and "0 reused, 2 computed" in out, out
        match = re.search(rf"http://127\.0\.0\.1:{port}/runs/flow-run/([0-9a-f-]{{36}})", out)
        assert match, out
        assert "arcflow run -f" in (state / "runner.log").read_text()  # the warm runner ran it
        with (
            temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}),
            get_client(sync_client=True) as client,
        ):
            run = client.read_flow_run(uuid.UUID(match.group(1)))
            assert run.state is not None and run.state.type.value == "COMPLETED"
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            assert sorted(t.name for t in tasks) == ["long", "raw"]

        out = arcflow("run", "-f", str(pipeline))
        assert "2 reused, 0 computed" in out, out
        # a command with Prefect settings of its own runs the usual way (here: the same server, by URL)
        env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
        assert "2 reused, 0 computed" in arcflow("run", "-f", str(pipeline))
        assert (state / "runner.log").read_text().count("arcflow run -f") == 2
        del env["PREFECT_API_URL"]
    finally:
        arcflow("server", "stop")
    arcflow("server", "status", code=1)
    assert not (state / "server.json").exists()
    assert not (state / "runner.sock").exists()  # stop leaves no stale socket behind
