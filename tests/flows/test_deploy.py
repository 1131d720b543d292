"""`arcflow deploy`: pipeline.yaml's schedules become Prefect deployments on a process work pool."""

from __future__ import annotations

from pathlib import Path

from _pipeline_util import load, write_corpus, write_pipeline
from prefect.client.orchestration import get_client
from prefect.testing.utilities import prefect_test_harness

from flows.deploy import deploy_schedules


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
    with prefect_test_harness():
        names = deploy_schedules(pipeline, "test-pool", create_pool=True)
        assert names == ["demo-pipe-nightly", "demo-pipe-1", "demo-pipe-adhoc"]
        with get_client(sync_client=True) as client:
            nightly = client.read_deployment_by_name("arcflow/demo-pipe-nightly")
            hourly = client.read_deployment_by_name("arcflow/demo-pipe-1")
            adhoc = client.read_deployment_by_name("arcflow/demo-pipe-adhoc")
            assert client.read_work_pool("test-pool").type == "process"
    assert nightly.schedules[0].schedule.cron == "0 3 * * *"
    assert nightly.parameters == {"pipeline": str(tmp_path / "pipeline.yaml"), "to_node": None}
    assert hourly.parameters["to_node"] == "raw"
    assert nightly.job_variables["working_dir"] == str(tmp_path)
    assert adhoc.schedules == [] and adhoc.work_pool_name == "test-pool"
