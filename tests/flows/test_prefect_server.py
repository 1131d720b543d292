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

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.flows._prefect_stack import REPO, Stack, environment, free_port, start_server
from tests.flows._prefect_stack import artifact as _artifact
from tests.flows._prefect_stack import artifacts as _artifacts
from tests.flows._prefect_stack import start_run as _start_run
from tests.flows._prefect_stack import task_runs as _task_runs
from tests.flows._prefect_stack import wait_final as _wait_final

PREFECT_YAML = REPO / "infra" / "prefect.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Prefect server for this module's tests (each deploys under its own names and pools)."""
    root = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    home = root / "prefect-home"
    home.mkdir()
    s = Stack(root, environment(home, port))
    try:
        start_server(s, port)
        yield s
    finally:
        s.stop()


@pytest.fixture()
def stack(server: Stack) -> Iterator[Stack]:
    """The module's server; the worker a test starts is stopped (with its flow runs) when the test ends."""
    env = dict(server.env)
    try:
        yield server
    finally:
        worker, log = server.procs.pop("worker", None), server.logs.pop("worker", None)
        if worker is not None:
            Stack(server.root, env, procs={"worker": worker}, logs={"worker": log} if log else {}).stop()
        server.env.clear()
        server.env.update(env)


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


@pytest.mark.default_runs("A", "W")
@pytest.mark.timeout(2400)
def test_default_pipeline_gives_the_same_hashes_from_the_cli_and_a_deployment_worker(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The default pipeline computed by a deployment's flow run on a process worker (run ``W`` of the session:
    `arcflow deploy` of another clone of this repository at HEAD, `arcflow run --deployment`, 2 Dask workers)
    has one Completed task run per node and the same fingerprints and content hashes as the CLI's run (run
    ``A``); a CLI run on a copy of the worker's store then reuses every node and status is clean. Both sides
    run a clone's code (its git history for `project_history`), so a commit made meanwhile changes nothing.
    Both runs are the session's shared runs (``tests/flows/_determinism.py``: ``default_runs``, shrunk by
    ``SMALL_DEFAULT``); the determinism test reads the same two."""
    from tests.flows._determinism import cli_env, default_runs, differences, run_cli, store_hashes

    runs = default_runs(tmp_path_factory, "A", "W")
    by_cli_run, by_worker_run = runs["A"], runs["W"]
    assert not by_cli_run.failure, by_cli_run.failure
    assert not by_worker_run.failure, by_worker_run.failure
    by_cli = store_hashes(by_cli_run.workdir)
    by_worker = store_hashes(by_worker_run.workdir)
    n = len(by_cli)
    # what the UI shows of the worker's flow run: one task run per node, named by its id, each computed there
    assert [node for node, _state in by_worker_run.states] == sorted(by_cli), by_worker_run.states
    assert [state for _node, state in by_worker_run.states] == ["Completed"] * n, by_worker_run.states
    assert differences(by_cli, by_worker, by_cli_run.workdir, by_worker_run.workdir) == []

    # the CLI, from the worker's checkout, on a copy of the worker's store (elsewhere): everything reused
    store = tmp_path / "store"
    shutil.copytree(by_worker_run.workdir, store)
    overrides = [o for o in by_worker_run.overrides if not o.startswith("workdir=")] + [f"workdir={store}"]
    out = run_cli(
        by_worker_run.pipeline,
        overrides,
        cwd=by_worker_run.folder,
        prefect_home=tmp_path / "prefect",
        timeout_s=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"{n} reused, 0 computed" in " ".join(out.stdout.split()), out.stdout[-3000:]
    assert differences(by_worker, store_hashes(store)) == []
    sets = [a for o in overrides for a in ("--set", o)]
    status = subprocess.run(
        [sys.executable, "-m", "flows.cli", "status", "-f", str(by_worker_run.pipeline), *sets],
        cwd=by_worker_run.folder,
        env=cli_env(tmp_path / "prefect"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert status.returncode == 0, status.stdout + status.stderr
    for word in ("stale", "missing", "partial"):
        assert word not in status.stdout, status.stdout
