"""The Prefect flow on Prefect's test harness: one task per node named by its id, Cached on a rerun, artifacts
per node, and a failing node failing the flow and the CLI (exit code 1)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact
from prefect.client.schemas.sorting import FlowRunSort
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from flows.cli import app
from flows.prefect_flow import arcflow_pipeline

PAGES = {
    "a.html": "<html><body><h1>Alpha</h1><p>The first page says enough words to be kept.</p></body></html>",
    "b.html": "<html><body><p>The second page, also long enough to pass the length check.</p></body></html>",
    "c.txt": "tiny",
}


def write_tiny_pipeline(root: Path, name: str) -> Path:
    """A `files` source over three small files and a `filter` node that drops the short one."""
    data = root / "data"
    data.mkdir(parents=True)
    for fname, text in PAGES.items():
        (data / fname).write_text(text)
    spec = {
        "name": name,
        "workdir": str(root / "store"),
        "executor": {"n_workers": 1},
        "sources": {"pages": {"paths": [str(data)]}},
        "nodes": {
            "long_enough": {"uses": "filter", "inputs": ["pages"], "params": {"expr": "length(text) >= 20"}},
        },
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls
        mp.setenv("DO_NOT_TRACK", "1")
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture()
def client(harness: None) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as c:
        yield c


def task_runs(client: SyncPrefectClient, flow_run_id: Any) -> dict[str, str]:
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r.state.name for r in runs if r.state is not None}


def artifacts(client: SyncPrefectClient, flow_run_id: Any) -> dict[str, Artifact]:
    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    return {a.key: a for a in found if a.key}


@pytest.mark.slow
def test_rerun_is_cached_and_nodes_publish_artifacts(tmp_path: Path, client: SyncPrefectClient) -> None:
    name = f"tiny-{uuid.uuid4().hex[:6]}"
    path = write_tiny_pipeline(tmp_path, name)

    first = arcflow_pipeline(pipeline=str(path), return_state=True)
    assert first.is_completed(), first
    first_id = first.state_details.flow_run_id
    assert task_runs(client, first_id) == {"pages": "Completed", "long_enough": "Completed"}
    arts = artifacts(client, first_id)
    for node in ("pages", "long-enough"):
        assert arts[f"{name}-{node}-counts"].type == "table"
        assert arts[f"{name}-{node}-summary"].type == "markdown"
        assert arts[f"{name}-{node}-progress"].type == "progress"

    second = arcflow_pipeline(pipeline=str(path), return_state=True)
    assert second.is_completed(), second
    second_id = second.state_details.flow_run_id
    assert task_runs(client, second_id) == {"pages": "Cached", "long_enough": "Cached"}
    # a reused node publishes nothing new: the artifacts of the run that computed it stay the latest by key
    assert artifacts(client, second_id) == {}
    arts = artifacts(client, first_id)
    assert "filter_expr" in str(arts[f"{name}-long-enough-counts"].data)


@pytest.mark.slow
def test_a_failing_node_fails_the_flow_and_the_cli_exits_1(
    tmp_path: Path, client: SyncPrefectClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI sets these with setdefault; setting them here keeps them out of the rest of the session.
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    path = write_tiny_pipeline(tmp_path, f"bad-{uuid.uuid4().hex[:6]}")
    bad = ["--set", "nodes.long_enough.params.expr=length(no_such_column) > 1"]

    result = CliRunner().invoke(app, ["run", "-f", str(path), *bad])

    assert result.exit_code == 1, result.output
    assert "no_such_column" in result.output or "long_enough" in result.output
    latest = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    assert latest.state is not None and latest.state.is_failed()
    assert task_runs(client, latest.id) == {"pages": "Completed", "long_enough": "Failed"}
