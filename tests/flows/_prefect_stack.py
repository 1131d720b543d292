"""Helpers for tests against a real Prefect server: start `prefect server start` (sqlite, in a temporary
PREFECT_HOME, on a free port) and process workers, run CLIs in their environment, start deployment runs with
`arcflow run --deployment` and read back through the Prefect API what the UI shows (flow-run states, task runs,
artifacts).

``tests/flows/test_prefect_server.py`` uses them per test; ``tests/flows/_determinism.py`` uses them for the
session's run of the default pipeline on a deployment worker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests._prefect_home import seed_prefect_home

REPO = Path(__file__).resolve().parents[2]
FLOW_RUN_ID = re.compile(r"\(([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\)")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """The server and worker processes of one test, their logs, and the environment the CLIs run in.
    ``prefix`` goes before every started command (``["nice", "-n", "10"]`` for a run in the background);
    ``on_start`` is told each started process (the session's default runs track them to stop them at the end)."""

    root: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, IO[bytes]] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)
    on_start: Callable[[subprocess.Popen[bytes]], None] | None = None

    def start(self, name: str, args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.logs[name] = log
        # a session of its own, so stopping it also stops the flow-run and Dask processes it started
        proc = subprocess.Popen(
            [*self.prefix, *args],
            cwd=cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        if self.on_start is not None:
            self.on_start(proc)
        return proc

    def log_tail(self, name: str, n: int = 60) -> str:
        path = self.root / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return f"--- last lines of {name}.log ---\n" + "\n".join(lines[-n:])

    def cli(self, args: list[str], cwd: Path, timeout: float = 120, code: int = 0) -> str:
        done = subprocess.run(
            [*self.prefix, *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        out = done.stdout + done.stderr
        assert done.returncode == code, f"{' '.join(args)} exited {done.returncode}, not {code}:\n{out}"
        return out

    def arcflow(self, args: list[str], timeout: float = 300, code: int = 0) -> str:
        return self.cli([sys.executable, "-m", "flows.cli", *args], cwd=REPO, timeout=timeout, code=code)

    def stop(self) -> None:
        # the worker first (SIGINT is what makes it exit promptly), then the server
        for name in sorted(self.procs, key=lambda n: n != "worker"):
            proc = self.procs[name]
            if proc.poll() is None:
                signal_group(proc, signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=10)
            signal_group(proc, signal.SIGKILL)  # leftovers of its session (flow runs, Dask workers)
        for log in self.logs.values():
            log.close()


def signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def environment(home: Path, port: int) -> dict[str, str]:
    """The environment of the server, workers and CLIs of a stack; ``home`` gets a migrated database
    (tests/_prefect_home.py), so the server does not spend its start on Prefect's migrations."""
    seed_prefect_home(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",  # nothing to look at in CI; the API is what the UI reads
        PREFECT_CLI_PROMPT="false",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_LOGGING_LEVEL="INFO",
        DO_NOT_TRACK="1",
        # the process worker starts flow runs with `python -m prefect.engine`: make `python` this interpreter
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        # infra/prefect.yaml pins the flow's working directory to `{{ $PWD }}` of `prefect deploy`
        PWD=str(REPO),
    )
    return env


def start_server(stack: Stack, port: int, timeout: float = 120) -> None:
    """`prefect server start` on ``port``, in the stack's root; returns once its API answers."""
    stack.start(
        "server",
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=stack.root,
    )
    wait_healthy(stack, port, timeout)


def wait_healthy(stack: Stack, port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/health"
    while time.monotonic() < deadline:
        server = stack.procs["server"]
        assert server.poll() is None, f"prefect server exited {server.returncode}\n{stack.log_tail('server')}"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"prefect server not healthy after {timeout}s\n{stack.log_tail('server')}")


def start_run(stack: Stack, args: list[str], timeout: float = 120) -> str:
    out = stack.cli([sys.executable, "-m", "flows.cli", "run", *args], cwd=stack.root, timeout=timeout)
    match = FLOW_RUN_ID.search(out)
    assert match, f"no flow run id in the output of arcflow run:\n{out}"
    return match.group(1)


def wait_final(client: Any, stack: Stack, flow_run_id: str, timeout: float = 150) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(uuid.UUID(flow_run_id))
        if run.state is not None and run.state.type.value in FINAL:
            return run
        worker = stack.procs["worker"]
        assert worker.poll() is None, f"the worker exited {worker.returncode}\n{stack.log_tail('worker')}"
        time.sleep(0.25)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout}s\n{stack.log_tail('worker')}")


def task_runs(client: Any, flow_run_id: str, timeout: float = 120) -> list[tuple[str, str]]:
    """(name, state) of the flow run's task runs, once the server has recorded them all. The server records task
    runs from the events the flow run sends, after it: a loaded server may still show some as Pending (under a
    provisional name) when the flow run is already Completed, so wait until every one is final."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    while True:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(flow_run_id)]))
        )
        settled = all(r.state is not None and r.state.type.value in FINAL for r in runs)
        if settled or time.monotonic() > deadline:
            return sorted((r.name, r.state.name if r.state else "?") for r in runs)
        time.sleep(0.25)


def artifacts(client: Any, flow_run_id: str) -> dict[str, str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]))
    )
    return {a.key: a.type for a in found if a.key}


def artifact(arts: dict[str, str], pipeline: str, node: str, what: str) -> str | None:
    """The type of a node's artifact: keys are `<pipeline>-<store/--set label>-<node>-<what>`."""
    found = [t for k, t in arts.items() if k.startswith(f"{pipeline}-") and k.endswith(f"-{node}-{what}")]
    assert len(found) <= 1, arts
    return found[0] if found else None
