"""A param that validation passes but the input's data shows wrong (a filter expression naming a column the input
lacks) fails its node once, as a ``ParamError`` naming the param's YAML line and the fix, under ``retries:`` too."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pipeline_util import load, run_all, write_corpus, write_pipeline
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import FlowRunSort
from typer.testing import CliRunner

from flows.cli import app
from flows.retry import permanent_reason, with_article
from tasks.param_error import ParamError
from tests._prefect_home import shared_prefect_harness  # Prefect's harness, one server for the modules


def _bad_filter(root: Path, retries: int = 0) -> tuple[Path, int]:
    """A pipeline whose node ``bad`` filters on a column the corpus lacks; (its file, the ``expr:`` line)."""
    write_corpus(root, n_files=2)
    bad = {"uses": "filter", "inputs": ["raw"], "params": {"expr": "nosuchcol > 5"}}
    if retries:
        bad.update({"retries": retries, "retry_delay_s": 1})
    path = write_pipeline(root, {"raw": {"uses": "files", "params": {"paths": ["data"]}}, "bad": bad})
    return path, path.read_text().splitlines().index("      expr: nosuchcol > 5") + 1


def test_a_column_the_input_lacks_names_the_expr_line_and_the_columns(tmp_path: Path) -> None:
    path, expr_line = _bad_filter(tmp_path)
    pipeline = load(path)  # validate passes: the columns are the data's, known only once `raw` has run
    with pytest.raises(ParamError) as caught:
        run_all(pipeline)
    text = str(caught.value)
    assert text.startswith(
        f"{path}:{expr_line}: nodes.bad.params.expr: filter expression 'nosuchcol > 5' "
    ), text
    assert "uses column(s) ['nosuchcol'] that input 'raw' does not have" in text, text
    assert text.endswith("; use the input's columns: id, lang, meta, source, text, url"), text
    assert isinstance(caught.value, ValueError)  # callers that catch a ValueError still do
    assert permanent_reason(caught.value) == "ParamError"
    again = pickle.loads(pickle.dumps(caught.value))  # as a Dask worker hands it back
    assert type(again) is ParamError and str(again) == text and again.line == expr_line


def test_a_shard_task_s_param_error_gets_its_node_and_line(tmp_path: Path) -> None:
    """A kind's shard task (which knows no node) raising a ParamError: the engine names the node and the line."""
    write_corpus(tmp_path, n_files=2)
    heur = {"uses": "heuristic_filters", "inputs": ["raw"], "params": {"lang_column": "language"}}
    path = write_pipeline(tmp_path, {"raw": {"uses": "files", "params": {"paths": ["data"]}}, "heur": heur})
    line = path.read_text().splitlines().index("      lang_column: language") + 1
    with pytest.raises(ParamError) as caught:
        run_all(load(path))
    assert str(caught.value).startswith(
        f"{path}:{line}: nodes.heur.params.lang_column: heuristic_filters: input has no column 'language'; "
        "run `langid` before this node"
    ), str(caught.value)


def test_param_error_without_a_readable_file_keeps_the_yaml_path(tmp_path: Path) -> None:
    exc = ParamError("n", ("buckets", 0, "column"), "no column 'q'", "set it").locate(
        str(tmp_path / "gone.yaml")
    )
    assert str(exc) == f"{tmp_path / 'gone.yaml'}: nodes.n.params.buckets.0.column: no column 'q'; set it"


def test_the_article_follows_the_class_name() -> None:
    assert with_article("AllQuarantinedError") == "an AllQuarantinedError"
    assert with_article("SpecError") == "a SpecError"
    assert with_article("MissingInputError") == "a MissingInputError"


@pytest.fixture(scope="module")
def client() -> Iterator[SyncPrefectClient]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls
        mp.setenv("DO_NOT_TRACK", "1")
        mp.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
        with shared_prefect_harness(server_startup_timeout=120), get_client(sync_client=True) as c:
            yield c


@pytest.mark.timeout(300)
def test_a_bad_param_is_not_retried(tmp_path: Path, client: SyncPrefectClient) -> None:
    path, expr_line = _bad_filter(tmp_path, retries=2)
    result = CliRunner().invoke(app, ["run", "-f", str(path)])
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert f"ParamError: {path}:{expr_line}: nodes.bad.params.expr: filter expression" in flat, flat
    assert "use the input's columns: id, lang, meta, source, text, url" in flat, flat
    latest = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest.id])))
    states = {r.name: (r.state.name, r.run_count) for r in runs if r.state is not None}
    assert states["bad"] == ("Failed", 1), states  # not 3 attempts with pauses between
    assert states["raw"][0] == "Completed", states
