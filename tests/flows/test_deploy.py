"""`arcflow deploy`: pipeline.yaml's schedules become Prefect deployments on a process work pool, each cron with its
timezone, the pull step at the checkout that holds pipeline.yaml, and absolute pipeline and store paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _pipeline_util import load, write_corpus, write_pipeline
from prefect.client.orchestration import get_client

from flows.deploy import ENTRYPOINT, deploy_schedules
from tests._prefect_home import shared_prefect_harness  # Prefect's harness, one server for the group

REPO = Path(__file__).resolve().parents[2]


def test_schedules_become_deployments(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=2)
    write_pipeline(
        tmp_path,
        {
            "raw": {"uses": "files", "params": {"paths": ["data"]}},
            "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 10"}},
        },
        name="Demo.Pipe",
        extra={
            "schedules": [
                {"cron": "0 3 * * *", "name": "nightly"},
                {"cron": "30 * * * *", "timezone": "Europe/Paris", "nodes": ["raw"]},
            ]
        },
    )
    pipeline = load(tmp_path / "pipeline.yaml")
    # a loaded machine (the suite's shared default runs go on in the background) starts it slowly
    with shared_prefect_harness(server_startup_timeout=180, group="deployments"):
        deployed = deploy_schedules(pipeline, "test-pool", create_pool=True)
        assert [d.name for d in deployed] == [
            "arcflow/demo-pipe-nightly",
            "arcflow/demo-pipe-1",
            "arcflow/demo-pipe-adhoc",
        ]
        assert [d.schedule for d in deployed] == ["0 3 * * * (UTC)", "30 * * * * (Europe/Paris)", "none"]
        with get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name("arcflow/demo-pipe-nightly")
            hourly = client.read_deployment_by_name("arcflow/demo-pipe-1")
            adhoc = client.read_deployment_by_name("arcflow/demo-pipe-adhoc")
            assert client.read_work_pool("test-pool").type == "process"
    assert nightly.schedules[0].schedule.cron == "0 3 * * *"
    assert nightly.schedules[0].schedule.timezone == "UTC"
    assert hourly.schedules[0].schedule.timezone == "Europe/Paris"
    store = str(tmp_path / ".arcflow")
    assert nightly.parameters == {
        "pipeline": str(tmp_path / "pipeline.yaml"),
        "store": store,
        "to_node": None,
    }
    assert hourly.parameters["to_node"] == "raw"
    # the code is the installed package; the working directory is the checkout that holds pipeline.yaml
    assert nightly.entrypoint == ENTRYPOINT
    assert nightly.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(tmp_path)}}
    ]
    assert nightly.job_variables["working_dir"] == str(tmp_path)
    assert adhoc.schedules == [] and adhoc.work_pool_name == "test-pool"
    assert adhoc.parameters == {"pipeline": str(tmp_path / "pipeline.yaml"), "store": store}


def test_without_a_server_deploy_and_run_deployment_both_exit_2(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=1)
    write_pipeline(tmp_path, {"raw": {"uses": "files", "params": {"paths": ["data"]}}})
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),  # no profile with an API URL, no local server record
    }
    outs = []
    for args in (["deploy"], ["run", "--deployment", "adhoc"]):
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", *args, "-f", str(tmp_path / "pipeline.yaml")],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        outs.append(done.stderr)
    for out in outs:
        assert "no Prefect server configured" in out and "arcflow server start" in out, out
        assert "Traceback" not in out


def test_deploy_cluster_says_a_spec_error_before_asking_for_a_server(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=1)
    write_pipeline(tmp_path, {"raw": {"uses": "files", "params": {"paths": ["data"]}}})
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        "scheduler: tcp://127.0.0.1:8786\nworkers:\n  cpu:\n    hosts: [a]\n    memory_limit: 1GiBB\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path / "prefect-home")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "deploy",
            "--cluster",
            str(spec),
            "-f",
            str(tmp_path / "pipeline.yaml"),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    text = " ".join(done.stderr.split())
    # the spec's own error, not "no Prefect server configured"
    assert text.startswith(f"{spec}: ") and "workers" in text, text
    assert "no Prefect server configured" not in text and "Traceback" not in text, text
