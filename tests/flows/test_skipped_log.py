"""A node downstream of a failed node is skipped, not failed: its task run ends ``Skipped`` (a Completed state whose
message names the failed node, logged at INFO), so Prefect logs no error for it, neither to the API (the UI) nor on
the terminal; the failed node's error is logged, once on the terminal, and the flow run and the CLI still fail.
A node retried after a transient fault still feeds its consumers (they wait for its last attempt)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pipeline_util import write_corpus, write_pipeline
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.engine import Engine
from flows.prefect_flow import arcflow_pipeline
from tests._prefect_home import seed_prefect_home, shared_prefect_harness  # on a migrated database

REPO = Path(__file__).resolve().parents[2]
# names that are not part of one another, so that a name found in a message is that node
NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"]}},
    "wrong": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(no_such_column) > 1"}},
    "trimmed": {"uses": "filter", "inputs": ["wrong"], "params": {"expr": "length(text) > 1"}},
    "final": {"uses": "filter", "inputs": ["trimmed"], "params": {"expr": "length(text) > 2"}},
    "flaky": {
        "uses": "filter",
        "inputs": ["raw"],
        "params": {"expr": "length(text) > 3"},
        "retries": 1,
        "retry_delay_s": 0,
    },
    "fed": {"uses": "filter", "inputs": ["flaky"], "params": {"expr": "length(text) > 4"}},
}
SKIPPED = ("trimmed", "final")


@pytest.fixture(scope="module")
def client() -> Iterator[SyncPrefectClient]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls
        mp.setenv("DO_NOT_TRACK", "1")
        with shared_prefect_harness(server_startup_timeout=120), get_client(sync_client=True) as c:
            yield c


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def prefect_records() -> Iterator[list[logging.LogRecord]]:
    """Every record of Prefect's loggers at INFO and above (what its API handler sends to the UI)."""
    logger = logging.getLogger("prefect")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _text(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info and record.exc_info[1] is not None:
        text += "\n" + str(record.exc_info[1])
    return text


@pytest.mark.timeout(300)
def test_skipped_nodes_end_skipped_without_error_records_and_the_run_fails(
    tmp_path: Path,
    client: SyncPrefectClient,
    prefect_records: list[logging.LogRecord],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_corpus(tmp_path, n_files=2)
    path = write_pipeline(tmp_path, NODES, name="skiplog")
    # the transient fault (a dropped connection on flaky's first attempt) is injected: it cannot be made on demand
    real_run_node, attempts = Engine.run_node, []

    def once_flaky(self: Engine, node_id: str, *args: object, **kwargs: object) -> tuple[bool, dict]:
        attempts.append(node_id)
        if node_id == "flaky" and attempts.count("flaky") == 1:
            raise ConnectionError("connection reset by peer")
        return real_run_node(self, node_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "run_node", once_flaky)

    state = arcflow_pipeline(pipeline=str(path), return_state=True)

    assert state.is_failed(), state  # the flow run fails, naming the failed node
    assert "wrong (" in (state.message or ""), state.message
    runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    )
    by_name = {r.name: r for r in runs}
    states = {n: (r.state.type.value, r.state.name, r.state.message) for n, r in by_name.items() if r.state}
    assert states["wrong"][:2] == ("FAILED", "Failed"), states
    assert states["trimmed"] == ("COMPLETED", "Skipped", "upstream failed: wrong"), states
    assert states["final"] == ("COMPLETED", "Skipped", "upstream skipped: trimmed (failed: wrong)"), states
    # retried after a transient fault: its consumer ran on its last attempt's output
    assert states["flaky"][1] == "Completed" and by_name["flaky"].run_count == 2, states
    assert states["fed"][1] == "Completed" and states["raw"][1] == "Completed", states
    assert attempts.count("flaky") == 2 and not set(SKIPPED) & set(attempts), attempts
    # the UI's graph keeps the edges: a skipped node still waits for its input's task run
    waits = {i.id for i in by_name["trimmed"].task_inputs.get("wait_for", [])}
    assert waits == {by_name["wrong"].id}, by_name["trimmed"].task_inputs

    errors = [r for r in prefect_records if r.levelno >= logging.ERROR]
    # no error record from a skipped node's task run, nor any NotReady state
    assert not [r for r in errors if getattr(r, "task_run_name", None) in SKIPPED], errors
    assert not [r for r in prefect_records if "NotReady" in _text(r)]
    # the failed node's exception is logged once (its 'Finished in state Failed' line aside)
    wrong = [r for r in errors if getattr(r, "task_run_name", None) == "wrong"]
    assert sum(1 for r in wrong if r.exc_info) == 1 and "no_such_column" in _text(wrong[0]), wrong
    # the flow's error (the run's summary) names the skipped nodes only in its "skipped" part
    for r in errors:
        head = _text(r).split("node(s) skipped:")[0]
        assert not any(n in head for n in SKIPPED), _text(r)
    # each skipped node says why at INFO, naming the failed node
    infos = {
        getattr(r, "task_run_name", None): r.getMessage()
        for r in prefect_records
        if r.levelno == logging.INFO and r.getMessage().startswith("Finished in state Skipped")
    }
    assert "upstream failed: wrong" in infos["trimmed"] and "(failed: wrong)" in infos["final"], infos

    # --from the failed node: the same, within the selection (raw and flaky are read from the store)
    state = arcflow_pipeline(pipeline=str(path), from_node="wrong", return_state=True)
    assert state.is_failed(), state
    runs = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    )
    assert {r.name: r.state.name for r in runs if r.state} == {
        "wrong": "Failed",
        "trimmed": "Skipped",
        "final": "Skipped",
    }


@pytest.mark.timeout(300)
def test_the_terminal_shows_one_error_for_the_failed_node_and_none_for_the_skipped(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=2)
    nodes = {n: spec for n, spec in NODES.items() if n not in ("flaky", "fed")}
    path = write_pipeline(tmp_path, nodes, name="skipcli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # the ephemeral API, its database already migrated (tests/_prefect_home.py)
    env["PREFECT_HOME"] = str(seed_prefect_home(tmp_path / "prefect-home"))

    run = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "-f", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )

    assert run.returncode == 1, run.stdout + run.stderr  # the exit code stays non-zero
    errs = run.stderr
    error_lines = [ln for ln in errs.splitlines() if "| ERROR" in ln]
    wrong = [ln for ln in error_lines if "Task run 'wrong'" in ln]
    assert len(wrong) == 1 and "ParamError" in wrong[0], errs  # its error once
    assert not any(f"Task run '{n}'" in ln for ln in error_lines for n in SKIPPED), errs
    assert "NotReady" not in errs, errs
    summary = errs[errs.index("run failed: ") :].splitlines()
    assert summary[0] == "run failed: 1 node(s) failed:" and summary[1].startswith("  wrong ("), errs
    assert summary[2] == "2 node(s) skipped:", errs
    assert summary[3].endswith("skipped, upstream failed: wrong"), errs
    assert summary[4].endswith("skipped, upstream skipped: trimmed"), errs
    # the run's record in the store says the same
    (record,) = (tmp_path / ".arcflow" / "runs").glob("*/run.json")
    nodes_state = {n: v["state"] for n, v in json.loads(record.read_text())["nodes"].items()}
    assert nodes_state == {"raw": "Completed", "wrong": "Failed", "trimmed": "Skipped", "final": "Skipped"}
