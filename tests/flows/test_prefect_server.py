"""End to end against a real Prefect server: the user story of infra/prefect.yaml and of `arcflow deploy`.

Starts `prefect server start` (sqlite, in a temporary PREFECT_HOME, on a free port), creates the process work
pool, deploys (`prefect deploy --prefect-file infra/prefect.yaml --all` from the repository root, or `arcflow
deploy`), starts a process worker elsewhere, then starts runs with `arcflow run --deployment` and checks through
the Prefect API what the UI shows (one task run per node named by its id, each node's artifacts), that deployment
runs and CLI runs share the store's cache both ways, that a schedule keeps its timezone, that an unknown deployment
is a clear error, and that the default pipeline gives the same fingerprints and content hashes from the CLI and
from a deployment worker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PREFECT_YAML = REPO / "infra" / "prefect.yaml"
FLOW_RUN_ID = re.compile(r"\(([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\)")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_tiny_pipeline(root: Path, name: str, extra: dict[str, Any] | None = None) -> Path:
    """A `files` source over small HTML and text files, and a `filter` node that drops the short ones."""
    data = root / "data"
    data.mkdir(parents=True)
    (data / "a.html").write_text(
        "<html><body><p>A first page with enough words in it to be kept.</p></body></html>"
    )
    (data / "b.html").write_text(
        "<html><body><h1>B</h1><p>Another page that passes the length check.</p></body>"
    )
    (data / "c.txt").write_text("short")
    spec = {
        "name": name,
        "workdir": str(root / "store"),
        "executor": {"n_workers": 1},
        "sources": {"pages": {"paths": [str(data)]}},
        "nodes": {
            "long_enough": {"uses": "filter", "inputs": ["pages"], "params": {"expr": "length(text) >= 20"}},
        },
    }
    spec.update(extra or {})
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@dataclass
class Stack:
    """The server and worker processes of one test, their logs, and the environment the CLIs run in."""

    root: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, IO[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")
        self.logs[name] = log
        # a session of its own, so stopping it also stops the flow-run and Dask processes it started
        proc = subprocess.Popen(
            args, cwd=cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, n: int = 60) -> str:
        path = self.root / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return f"--- last lines of {name}.log ---\n" + "\n".join(lines[-n:])

    def cli(self, args: list[str], cwd: Path, timeout: float = 120, code: int = 0) -> str:
        done = subprocess.run(args, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
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
                _signal_group(proc, signal.SIGINT)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=10)
            _signal_group(proc, signal.SIGKILL)  # leftovers of its session (flow runs, Dask workers)
        for log in self.logs.values():
            log.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _environment(home: Path, port: int) -> dict[str, str]:
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


def _wait_healthy(stack: Stack, port: int, timeout: float = 120) -> None:
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
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout}s\n{stack.log_tail('server')}")


def _start_run(stack: Stack, args: list[str]) -> str:
    out = stack.cli([sys.executable, "-m", "flows.cli", "run", *args], cwd=stack.root)
    match = FLOW_RUN_ID.search(out)
    assert match, f"no flow run id in the output of arcflow run:\n{out}"
    return match.group(1)


def _wait_final(client: Any, stack: Stack, flow_run_id: str, timeout: float = 150) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(uuid.UUID(flow_run_id))
        if run.state is not None and run.state.type.value in FINAL:
            return run
        worker = stack.procs["worker"]
        assert worker.poll() is None, f"the worker exited {worker.returncode}\n{stack.log_tail('worker')}"
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} not finished after {timeout}s\n{stack.log_tail('worker')}")


def _task_runs(client: Any, flow_run_id: str, timeout: float = 120) -> list[tuple[str, str]]:
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
        time.sleep(1)


def _artifacts(client: Any, flow_run_id: str) -> dict[str, str]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]))
    )
    return {a.key: a.type for a in found if a.key}


def _artifact(arts: dict[str, str], pipeline: str, node: str, what: str) -> str | None:
    """The type of a node's artifact: keys are `<pipeline>-<store/--set label>-<node>-<what>`."""
    found = [t for k, t in arts.items() if k.startswith(f"{pipeline}-") and k.endswith(f"-{node}-{what}")]
    assert len(found) <= 1, arts
    return found[0] if found else None


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[Stack]:
    port = free_port()
    home = tmp_path / "prefect-home"
    home.mkdir()
    s = Stack(tmp_path, _environment(home, port))
    try:
        s.start(
            "server",
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
        )
        _wait_healthy(s, port)
        yield s
    finally:
        s.stop()


def test_deployments_run_on_a_worker_and_rerun_one_node(stack: Stack, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    spec = yaml.safe_load(PREFECT_YAML.read_text())
    pool = spec["deployments"][0]["work_pool"]["name"]
    prefect = [sys.executable, "-m", "prefect"]
    name = "tiny-served"
    pipeline = write_tiny_pipeline(tmp_path / "project", name)

    stack.cli([*prefect, "work-pool", "create", pool, "--type", "process"], cwd=REPO)
    stack.cli([*prefect, "deploy", "--prefect-file", str(PREFECT_YAML.relative_to(REPO)), "--all"], cwd=REPO)
    # elsewhere on purpose: the deployment, not the worker's cwd, says where the code is
    stack.start("worker", [*prefect, "worker", "start", "--pool", pool], cwd=tmp_path)

    with (
        temporary_settings({PREFECT_API_URL: stack.env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        nightly = client.read_deployment_by_name("arcflow/nightly")
        assert [s.schedule.cron for s in nightly.schedules] == ["0 3 * * *"]  # type: ignore[union-attr]
        assert nightly.parameters == {"pipeline": "pipeline.yaml"}
        assert nightly.work_pool_name == pool
        assert client.read_deployment_by_name("arcflow/adhoc").schedules == []

        # the whole pipeline, as a flow run of the scheduled deployment (its pipeline file overridden)
        run_id = _start_run(stack, ["--deployment", "nightly", "-f", str(pipeline)])
        run = _wait_final(client, stack, run_id)
        assert run.state.type.value == "COMPLETED", f"{run.state}\n{stack.log_tail('worker')}"
        assert run.deployment_id == nightly.id
        assert _task_runs(client, run_id) == [("long_enough", "Completed"), ("pages", "Completed")]
        arts = _artifacts(client, run_id)
        for node in ("pages", "long-enough"):
            assert _artifact(arts, name, node, "counts") == "table", arts
            assert _artifact(arts, name, node, "summary") == "markdown", arts

        # one node again, as a new flow run of the ad-hoc deployment: exactly one task run, recomputed
        rerun_id = _start_run(stack, ["--deployment", "adhoc", "--node", "long_enough", "-f", str(pipeline)])
        rerun = _wait_final(client, stack, rerun_id)
        assert rerun.state.type.value == "COMPLETED", f"{rerun.state}\n{stack.log_tail('worker')}"
        assert rerun.parameters["node"] == "long_enough"
        assert _task_runs(client, rerun_id) == [("long_enough", "Completed")]
        arts = _artifacts(client, rerun_id)
        assert _artifact(arts, name, "long-enough", "counts") == "table", arts
        assert _artifact(arts, name, "pages", "counts") is None, arts

        # a CLI run after the deployment run reuses everything: the worker and the CLI agree on every fingerprint
        out = stack.arcflow(["run", "-f", str(pipeline)])
        assert "2 reused, 0 computed" in out, out
        _assert_status_clean(stack, pipeline)

        # an unknown deployment: exit 2 (usage), naming the deployments that exist
        out = stack.arcflow(["run", "--deployment", "nosuch", "-f", str(pipeline)], code=2)
        assert "no deployment 'arcflow/nosuch'" in out, out
        assert "arcflow/adhoc" in out and "arcflow/nightly" in out, out
        assert "Traceback" not in out, out


def _assert_status_clean(stack: Stack, pipeline: Path, overrides: list[str] | None = None) -> None:
    """`arcflow status`: every node up to date (nothing stale, missing or partial)."""
    from flows.engine import Engine
    from flows.validate import load_pipeline

    sets = [a for o in overrides or [] for a in ("--set", o)]
    out = stack.arcflow(["status", "-f", str(pipeline), *sets])
    plans = Engine(load_pipeline(str(pipeline), overrides or [])).plan()
    assert [(p.node, p.reasons) for p in plans if p.status != "up_to_date"] == [], out
    for word in ("stale", "missing", "partial"):
        assert word not in out, out


def test_arcflow_deploy_keeps_the_timezone_and_shares_the_cache(stack: Stack, tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    name = "tiny-tz"
    project = tmp_path / "project"
    schedule = {"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris"}
    pipeline = write_tiny_pipeline(project, name, {"schedules": [schedule]})

    out = stack.arcflow(["deploy", "-f", str(pipeline), "--pool", "tz-pool"])
    # one table (ours), each deployment once, with its schedule and timezone; none of Prefect's own tables
    assert out.count("arcflow/tiny-tz-nightly") == 1 and out.count("arcflow/tiny-tz-adhoc") == 1, out
    assert "0 3 * * * (Europe/Paris)" in out and "Deployments" not in out, out

    # the CLI computes first; a deployment run on a worker then reuses everything
    out = stack.arcflow(["run", "-f", str(pipeline)])
    assert "0 reused, 2 computed" in out, out
    stack.start(
        "worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool", "tz-pool"], cwd=tmp_path
    )

    with (
        temporary_settings({PREFECT_API_URL: stack.env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        nightly = client.read_deployment_by_name(f"arcflow/{name}-nightly")
        (sched,) = nightly.schedules
        assert (sched.schedule.cron, sched.schedule.timezone) == ("0 3 * * *", "Europe/Paris")  # type: ignore[union-attr]
        assert nightly.pull_steps == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}
        ]
        assert nightly.parameters["pipeline"] == str(pipeline)
        assert nightly.parameters["store"] == str(project / "store")

        run_id = _start_run(stack, ["--deployment", f"{name}-adhoc", "-f", str(pipeline)])
        run = _wait_final(client, stack, run_id)
        assert run.state.type.value == "COMPLETED", f"{run.state}\n{stack.log_tail('worker')}"
        assert run.parameters["pipeline"] == str(pipeline) and run.parameters["store"] == str(
            project / "store"
        )
        assert _task_runs(client, run_id) == [("long_enough", "Cached"), ("pages", "Cached")]
        _assert_status_clean(stack, pipeline)

        # a pipeline file the worker cannot find: the flow run fails with a message naming it, runs nothing
        missing = str(tmp_path / "elsewhere" / "pipeline.yaml")
        bad = run_deployment(f"arcflow/{name}-adhoc", parameters={"pipeline": missing}, timeout=0)
        bad_run = _wait_final(client, stack, str(bad.id))
        assert bad_run.state.type.value == "FAILED", bad_run.state
        logs = stack.log_tail("worker", 200)
        assert f"pipeline file {missing!r} not found" in (bad_run.state.message or "") + logs, logs
        assert _task_runs(client, str(bad.id)) == []


@pytest.mark.timeout(2400)
def test_default_pipeline_gives_the_same_hashes_from_the_cli_and_a_deployment_worker(
    stack: Stack, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The CLI computes the default pipeline; a deployment run reuses every node; a forced deployment run
    recomputes every node on the worker (the training stages included), with the same fingerprints and content
    hashes; a CLI run then reuses everything and status is clean. Both sides run one clone of this repository at
    HEAD (its code on PYTHONPATH, its git history for `project_history`), so a commit made meanwhile changes
    nothing. The CLI's computation is the session's shared default run (``default_run``, shrunk by
    ``SMALL_DEFAULT``), whose store is copied here first so that the worker's forced run rewrites only the copy."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tests.flows._determinism import default_run, differences, executor_overrides, store_hashes
    from tests.flows._pipeline_util import SMALL_DEFAULT

    computed = default_run(tmp_path_factory)
    assert not computed.failure, computed.failure
    assert ", 0 reused," in computed.output, computed.output
    checkout, pipeline = computed.folder, computed.pipeline
    store = tmp_path / "store"
    shutil.copytree(computed.workdir, store)
    by_cli = store_hashes(store)
    assert differences(store_hashes(computed.workdir), by_cli) == []
    n = len(by_cli)
    sets = [
        a
        for o in [*SMALL_DEFAULT, f"workdir={store}", *executor_overrides(computed.workers)]
        for a in ("--set", o)
    ]
    # the CLI (run from the clone) and the worker's flow runs (PYTHONSAFEPATH) import the clone's code
    stack.env["PYTHONPATH"] = str(checkout)

    def arcflow(args: list[str]) -> str:
        return stack.cli([sys.executable, "-m", "flows.cli", *args], cwd=checkout, timeout=1200)

    arcflow(["deploy", "-f", str(pipeline), "--pool", "det-pool"])
    stack.start(
        "worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool", "det-pool"], cwd=tmp_path
    )
    with (
        temporary_settings({PREFECT_API_URL: stack.env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        for extra, state in (([], "Cached"), (["--force"], "Completed")):
            run_id = _start_run(
                stack, ["--deployment", "arcflow-demo-adhoc", "-f", str(pipeline), *sets, *extra]
            )
            run = _wait_final(client, stack, run_id, timeout=1200)
            assert run.state.type.value == "COMPLETED", f"{run.state}\n{stack.log_tail('worker')}"
            states = _task_runs(client, run_id)
            assert [s for _node, s in states] == [state] * n, states
            by_worker = store_hashes(store)
            assert differences(by_cli, by_worker, store, store) == []

    out = arcflow(["run", "-f", str(pipeline), *sets])
    assert f"{n} reused, 0 computed" in out, out
    out = arcflow(["status", "-f", str(pipeline), *sets])
    for word in ("stale", "missing", "partial"):
        assert word not in out, out
