"""A node that quarantines every input row fails the run (the CLI exits 1 naming it, its YAML line, the count, where
the rows are and how to read them; the Prefect flow run, which a deployment's worker runs, fails); the nodes
downstream are skipped. Partial quarantine and a node with no input rows complete. ``--node`` over such an output
refuses it as an input."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.sorting import FlowRunSort
from typer.testing import CliRunner

from flows.cli import app
from flows.engine import Engine
from flows.errors import MissingInputError
from flows.outcome import all_quarantined, all_quarantined_error, failed_status
from flows.validate import load_pipeline
from tests._prefect_home import shared_prefect_harness  # Prefect's harness, one server for the modules

GOOD = json.dumps({"id": "g1", "text": "a good line of JSON with enough text in it"})


def _pipeline(root: Path, name: str) -> Path:
    """``broken``: JSONL files whose every line is malformed, ``after_broken`` over it and ``grandchild`` over that;
    ``mixed``: one good line and one bad; ``nothing``: a filter that keeps no row, and ``after_nothing`` reading its
    0 rows."""
    (root / "broken").mkdir()
    (root / "broken" / "a.jsonl").write_text('{"id": "a1", "text": \n{not json}\n')
    (root / "broken" / "b.jsonl").write_text("[1, 2]\n")
    (root / "mixed").mkdir()
    (root / "mixed" / "m.jsonl").write_text(GOOD + "\n{oops\n")
    spec = {
        "name": name,
        "workdir": str(root / "store"),
        "executor": {"n_workers": 1},
        "nodes": {
            "broken": {"uses": "files", "params": {"paths": [str(root / "broken")]}},
            "after_broken": {"uses": "filter", "inputs": ["broken"], "params": {"expr": "length(text) > 0"}},
            "grandchild": {
                "uses": "filter",
                "inputs": ["after_broken"],
                "params": {"expr": "length(text) > 0"},
            },
            "mixed": {"uses": "files", "params": {"paths": [str(root / "mixed")]}},
            "nothing": {"uses": "filter", "inputs": ["mixed"], "params": {"expr": "length(text) > 100000"}},
            "after_nothing": {
                "uses": "filter",
                "inputs": ["nothing"],
                "params": {"expr": "length(text) > 0"},
            },
        },
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def client() -> Iterator[SyncPrefectClient]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # offline: no telemetry calls
        mp.setenv("DO_NOT_TRACK", "1")
        mp.setenv("PREFECT_LOGGING_LEVEL", "WARNING")  # the CLI sets these with setdefault
        with shared_prefect_harness(server_startup_timeout=120), get_client(sync_client=True) as c:
            yield c


@pytest.mark.timeout(300)
def test_a_node_quarantining_every_row_fails_the_run_and_skips_its_consumers(
    tmp_path: Path, client: SyncPrefectClient
) -> None:
    path = _pipeline(tmp_path, "allq")
    lines = path.read_text().splitlines()
    broken_line, after_line = lines.index("  broken:") + 1, lines.index("  after_broken:") + 1
    grand_line = lines.index("  grandchild:") + 1

    result = CliRunner().invoke(app, ["run", "-f", str(path)])

    assert result.exit_code == 1, result.output
    out = result.output[result.output.index("run failed: ") :]
    summary = [ln for ln in out.splitlines() if ln.strip()]
    # the store's manifest says where the quarantined rows are; the summary names that folder
    spec = load_pipeline(str(path), [])
    engine = Engine(spec)
    try:
        ref = engine.store.read_refs("allq")["broken"]
        manifest = engine.store.manifest(ref["fingerprint"])
    finally:
        engine.close()
    assert manifest is not None and all_quarantined(manifest)
    assert manifest["counts"] == {"in": 3, "kept": 0, "dropped": 0, "quarantined": 3, "out": 0}
    folder = tmp_path / "store" / "outputs" / ref["fingerprint"] / "quarantine"
    flat = " ".join(out.split())  # rich may wrap the long line
    assert summary[0] == "run failed: 1 node(s) failed:", out
    # the counts, the first message of the most common error, where the rows are, the commands (the polars one
    # with the interpreter that runs arcflow) and the way out when the cause is outside the fingerprint
    assert flat.startswith(
        f"run failed: 1 node(s) failed: broken ({path}:{broken_line}): AllQuarantinedError: all 3 input rows "
        "were quarantined (jsonl_decode_error: 2, jsonl_not_object: 1; the first jsonl_decode_error: "
    ), flat
    assert "), so its output is not used downstream" in flat, flat
    assert f"{folder}/part-*.parquet" in flat and f"`arcflow show broken -f {path}`" in flat, flat
    assert (
        f"`{sys.executable} -c \"import polars as pl; print(pl.read_parquet('{folder}/*.parquet'))\"`" in flat
    )
    assert f"recompute it with `arcflow run --from broken -f {path}`" in flat, flat
    assert flat.endswith(
        f"2 node(s) skipped: after_broken ({path}:{after_line}): skipped, upstream failed: broken "
        f"grandchild ({path}:{grand_line}): skipped, upstream skipped: after_broken"
    ), flat
    # the command it prints reads the quarantined rows, each with its error
    rows = pl.read_parquet(f"{folder}/*.parquet")
    assert rows.height == 3 and sorted(e.split(":")[0] for e in rows["error"]) == [
        "jsonl_decode_error",
        "jsonl_decode_error",
        "jsonl_not_object",
    ]

    # the flow run (what a deployment's worker runs) failed; partial quarantine and 0 input rows completed
    latest = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    assert latest.state is not None and latest.state.is_failed()
    assert "broken (" in (latest.state.message or ""), latest.state.message
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest.id])))
    states = {r.name: r.state.name for r in runs if r.state is not None}
    assert states["broken"] == "Failed" and states["mixed"] == "Completed", states
    assert states["nothing"] == "Completed" and states["after_nothing"] == "Completed", states
    assert "after_broken" not in states or states["after_broken"] != "Completed", states
    assert not (tmp_path / "store" / "refs" / "allq.json").read_text().count('"after_broken"')

    # a rerun reuses the stored output and fails again, at once (no retry, nothing recomputed)
    again = CliRunner().invoke(app, ["run", "-f", str(path)])
    assert again.exit_code == 1 and "broken (" in again.output and "AllQuarantinedError" in again.output

    # `--node` over it: the run's last words keep the advice whole
    one = CliRunner().invoke(app, ["run", "-f", str(path), "--node", "after_broken"])
    assert one.exit_code == 1, one.output
    last = " ".join(one.output[one.output.rindex("run failed: ") :].split())
    assert last.startswith(
        f"run failed: 1 node(s) failed: after_broken ({path}:{after_line}): MissingInputError: node 'after_broken' "
        "needs input 'broken', whose stored output has no usable rows; fix 'broken' and run `arcflow run --to "
        "after_broken`: all 3 input rows were quarantined"
    ), last
    assert last.endswith(f"recompute it with `arcflow run --from broken -f {path}`"), last


def _table_rows(output: str) -> dict[str, str]:
    """`arcflow status`'s table as node -> its cells, a cell wrapped over several lines joined with spaces."""
    rows: dict[str, list[list[str]]] = {}
    node = ""
    for line in output.splitlines():
        if line.count("│") < 3:
            continue
        cells = [c.strip() for c in line.split("│")[1:-1]]
        node = cells[0] or node
        rows.setdefault(node, []).append(cells)
    return {
        n: " │ ".join(" ".join(filter(None, col)) for col in zip(*lines, strict=True))
        for n, lines in rows.items()
    }


def test_node_over_an_all_quarantined_input_refuses_it(tmp_path: Path) -> None:
    path = _pipeline(tmp_path, "allq_node")
    spec = load_pipeline(str(path), [])
    engine = Engine(spec)
    try:
        reused, manifest = engine.run_node("broken")
        assert not reused and all_quarantined(manifest)
        # a partial quarantine is no failure; 0 rows in is not "all quarantined"
        assert not all_quarantined(engine.run_node("mixed")[1])
        assert engine.run_node("nothing")[1]["counts"]["kept"] == 0
        after = engine.run_node("after_nothing")[1]
        assert after["counts"]["in"] == 0 and not all_quarantined(after)
        with pytest.raises(MissingInputError) as err:
            engine.run_node("after_broken", forced=True)
    finally:
        engine.close()
    text = str(err.value)
    assert text.startswith(
        "node 'after_broken' needs input 'broken', whose stored output has no usable rows; fix 'broken' and run "
        "`arcflow run --to after_broken`: all 3 input rows were quarantined (jsonl_decode_error: 2, "
        "jsonl_not_object: 1; the first jsonl_decode_error: "
    ), text
    hint = f"recompute it with `arcflow run --from broken -f {path}`"
    assert text.endswith(hint) and f"`{sys.executable} -c " in text, text

    # `arcflow status`: the stored output is reused by a run, which fails there: failed, not up to date, with the
    # count and where to read the rows; its consumer is blocked by it; the others are up to date
    folder = tmp_path / "store" / "outputs" / manifest["fingerprint"] / "quarantine"
    status = CliRunner().invoke(app, ["status", "-f", str(path)], env={"COLUMNS": "400"})
    assert status.exit_code == 0, status.output
    rows = _table_rows(status.output)
    assert "failed (all 3 rows quarantined)" in rows["broken"] and "up_to_date" not in rows["broken"]
    assert f"`arcflow show broken -f {path}` lists the errors" in rows["broken"], rows["broken"]
    assert "(jsonl_decode_error: 2, jsonl_not_object: 1)" in rows["broken"], rows["broken"]
    assert f"the rows are in {folder}/part-*.parquet" in rows["broken"], rows["broken"]
    assert hint in rows["broken"], rows["broken"]
    assert "blocked by 'broken' (every row quarantined): a run fails there" in rows["after_broken"]
    assert "blocked by 'broken'" in rows["grandchild"], rows["grandchild"]
    for ok in ("mixed", "nothing", "after_nothing"):
        assert "up_to_date" in rows[ok] and "failed" not in rows[ok] and "blocked" not in rows[ok], rows[ok]
    # `arcflow plan` says what the run would meet, in status's words: not "reuse" but failed, with its reasons;
    # its consumers skipped, blocked by it; the others reused
    planned = CliRunner().invoke(app, ["plan", "-f", str(path)], env={"COLUMNS": "400"})
    assert planned.exit_code == 0, planned.output
    rows = _table_rows(planned.output)
    assert rows["broken"].split(" │ ")[2] == "failed (all 3 rows quarantined)", rows["broken"]
    assert "(jsonl_decode_error: 2, jsonl_not_object: 1)" in rows["broken"], rows["broken"]
    assert f"the rows are in {folder}/part-*.parquet" in rows["broken"] and hint in rows["broken"]
    for child in ("after_broken", "grandchild"):
        assert "skip (blocked)" in rows[child] and "blocked by 'broken'" in rows[child], rows[child]
    for ok in ("mixed", "nothing", "after_nothing"):
        assert rows[ok].split(" │ ")[2] == "reuse", rows[ok]
    entries = {
        e["node"]: e for e in json.loads(CliRunner().invoke(app, ["plan", "-f", str(path), "--json"]).output)
    }
    assert entries["broken"]["status"] == "all_quarantined" and hint in " ".join(entries["broken"]["reasons"])
    assert entries["grandchild"]["blocked_by"] == ["broken"] and entries["mixed"]["status"] == "up_to_date"
    # `--from broken` recomputes it (forced): no longer a failure foretold
    forced = CliRunner().invoke(app, ["plan", "-f", str(path), "--from", "broken"], env={"COLUMNS": "400"})
    assert "failed" not in _table_rows(forced.output)["broken"], forced.output
    # `--from after_broken`: 'broken' is outside the selection, so the run fails at after_broken on its input
    # (a MissingInputError, as the run says) and skips grandchild
    rows = _table_rows(
        CliRunner()
        .invoke(app, ["plan", "-f", str(path), "--from", "after_broken"], env={"COLUMNS": "400"})
        .output
    )
    assert set(rows) == {"after_broken", "grandchild"}, rows
    assert rows["after_broken"].split(" │ ")[2] == "fail (input unusable)", rows["after_broken"]
    assert (
        "input 'broken' quarantined every row it read, so a run fails here (MissingInputError)"
        in rows["after_broken"]
    )
    assert (
        "skip (blocked)" in rows["grandchild"]
        and "blocked by 'after_broken': a run fails there" in rows["grandchild"]
    )
    # `arcflow show` says so too, as text and as JSON; the consumer's says what blocks it
    shown = CliRunner().invoke(app, ["show", "broken", "-f", str(path)], env={"COLUMNS": "400"})
    assert shown.exit_code == 0 and "broken: failed: all 3 input rows were quarantined" in shown.output
    assert hint in " ".join(shown.output.split()), shown.output
    assert "is up to date" not in shown.output
    as_json = CliRunner().invoke(app, ["show", "broken", "-f", str(path), "--json"])
    assert json.loads(as_json.output)["status"] == "all_quarantined"
    assert (
        json.loads(CliRunner().invoke(app, ["show", "mixed", "-f", str(path), "--json"]).output)["status"]
        == "up_to_date"
    )
    consumer = CliRunner().invoke(app, ["show", "after_broken", "-f", str(path)], env={"COLUMNS": "400"})
    assert consumer.exit_code == 1 and "blocked by 'broken'" in consumer.output, consumer.output


def test_a_parquet_file_without_the_text_column_is_one_input_row(tmp_path: Path) -> None:
    """A file-level error (a Parquet file of 2 rows without a ``text`` column) is one quarantined record: the
    message counts it as 1 input row (singular) and says a file counts as one row; the first error is quoted."""
    (tmp_path / "pq").mkdir()
    pl.DataFrame({"id": ["a", "b"], "body": ["x", "y"]}).write_parquet(tmp_path / "pq" / "t.parquet")
    spec = {
        "name": "pqonly",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1},
        "nodes": {"pq": {"uses": "files", "params": {"paths": [str(tmp_path / "pq")]}}},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    engine = Engine(load_pipeline(str(path), []))
    try:
        manifest = engine.run_node("pq")[1]
        location = engine.store.location
    finally:
        engine.close()
    assert all_quarantined(manifest) and manifest["counts"]["in"] == 1, manifest["counts"]
    text = str(all_quarantined_error("pq", manifest, location, str(path)))
    assert text.startswith(
        "all 1 input row was quarantined (missing_text_field: 1; the first missing_text_field: no column 'text' "
        "(columns: id, body; set text_field)"
    ), text
    assert "(a file that cannot be read, or lacks the text column, counts as one input row)" in text, text
    assert failed_status("pq", manifest, location, str(path))[0] == "failed (all 1 row quarantined)"


@pytest.mark.timeout(300)
def test_a_failure_a_retry_cannot_change_is_not_retried(
    tmp_path: Path, client: SyncPrefectClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `retries: 2`, a node that quarantined every row, a node whose input has no usable rows and a node whose
    input lost a shard each fail on their first attempt, with their own message; a transient fault is still
    retried. The transient fault (a dropped connection on `mixed`'s first attempt) is injected: it cannot be
    produced on demand here; everything else is the real run."""
    path = _pipeline(tmp_path, "noretry")
    spec = yaml.safe_load(path.read_text())
    for node in spec["nodes"].values():
        node.update({"retries": 2, "retry_delay_s": 0})
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    real_run_node, attempts = Engine.run_node, []

    def flaky(self: Engine, node_id: str, *args: object, **kwargs: object) -> tuple[bool, dict]:
        attempts.append(node_id)
        if node_id == "mixed" and attempts.count("mixed") == 1:
            raise ConnectionError("connection reset by peer")
        return real_run_node(self, node_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Engine, "run_node", flaky)

    def task_runs() -> dict[str, tuple[str, int]]:
        latest = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest.id])))
        return {r.name: (r.state.name, r.run_count) for r in runs if r.state is not None}

    result = CliRunner().invoke(app, ["run", "-f", str(path)])
    assert result.exit_code == 1 and "AllQuarantinedError" in result.output, result.output
    runs = task_runs()
    assert runs["broken"] == ("Failed", 1), runs  # not 3: its stored output would fail again
    assert runs["mixed"] == ("Completed", 2), runs  # the dropped connection was retried
    assert attempts.count("broken") == 1 and attempts.count("mixed") == 2, attempts

    # an input with no usable rows: MissingInputError at once
    one = CliRunner().invoke(app, ["run", "-f", str(path), "--node", "after_broken"])
    assert one.exit_code == 1 and "MissingInputError: node 'after_broken' needs input 'broken'" in one.output
    assert task_runs()["after_broken"] == ("Failed", 1) and attempts.count("after_broken") == 1

    # an input shard deleted by hand: MissingInputError naming it and the fix, at once (not a FileNotFoundError
    # from a shard task, retried twice)
    spec_ = load_pipeline(str(path), [])
    engine = Engine(spec_)
    try:
        fingerprint = engine.store.read_refs("noretry")["mixed"]["fingerprint"]
        shard = Path(engine.store.output_dir(fingerprint)) / "part-00000.parquet"
    finally:
        engine.close()
    shard.unlink()
    lost = CliRunner().invoke(app, ["run", "-f", str(path), "--node", "nothing"])
    assert lost.exit_code == 1, lost.output
    flat = " ".join(lost.output.split())
    assert (
        f"MissingInputError: node 'nothing' needs input 'mixed', whose stored output lost 1 of its 1 shard(s): "
        f"{shard} does not exist; recompute it with `arcflow run --from mixed -f {path}`"
    ) in flat, flat
    assert task_runs()["nothing"] == ("Failed", 1) and attempts.count("nothing") == 2, (
        attempts
    )  # 1 + this one
    # the failed `--node` rerun removed nothing: 'nothing''s completed output and its ref are as they were, so
    # `status` does not call it missing
    engine = Engine(load_pipeline(str(path), []))
    try:
        kept = engine.store.read_refs("noretry")["nothing"]["fingerprint"]
        assert engine.store.manifest(kept) is not None and engine.store.has_output(kept)
    finally:
        engine.close()
    status = CliRunner().invoke(app, ["status", "-f", str(path)], env={"COLUMNS": "400"})
    assert status.exit_code == 0, status.output
    row = _table_rows(status.output)["nothing"]
    assert "up_to_date" in row and "stored output missing" not in row, row


def test_node_over_an_input_blocked_by_a_failed_node_names_that_node(tmp_path: Path) -> None:
    """raw -> boom (a datatrove step raising on every row: all quarantined) -> after -> after2. `plan --node after2`
    says the run fails there (its input 'after' was never built; before boom ran, plainly missing; after, blocked by
    boom) and the run's MissingInputError names boom and its fix; `plan --from raw` says boom fails again if raw
    comes out unchanged, and that after/after2 compute unless it does."""
    (tmp_path / "raw").mkdir()
    lines = [json.dumps({"id": f"r{i}", "text": f"BOOM row {i} with a few words"}) for i in range(3)]
    (tmp_path / "raw" / "a.jsonl").write_text("\n".join(lines) + "\n")
    user = "tests.tasks._datatrove_user_steps:FussyFilter"  # raises on documents containing BOOM
    spec = {
        "name": "blocked_input",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1},
        "nodes": {
            "raw": {"uses": "files", "params": {"paths": [str(tmp_path / "raw")]}},
            "boom": {"uses": "datatrove", "inputs": ["raw"], "params": {"step": user}},
            "after": {"uses": "filter", "inputs": ["boom"], "params": {"expr": "length(text) > 0"}},
            "after2": {"uses": "filter", "inputs": ["after"], "params": {"expr": "length(text) > 0"}},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    file = f"-f {path}"

    def plan(*flags: str) -> dict[str, str]:
        result = CliRunner().invoke(app, ["plan", "-f", str(path), *flags], env={"COLUMNS": "600"})
        assert result.exit_code == 0, result.output
        return _table_rows(result.output)

    # nothing ran yet: after2's input is plainly missing
    row = plan("--node", "after2")["after2"]
    assert row.split(" │ ")[2] == "fail (input missing)", row
    assert (
        "input 'after' has no stored output, so a run fails here (MissingInputError); run `arcflow run --to "
        f"after2 {file}` to build it first"
    ) in row, row

    engine = Engine(load_pipeline(str(path), []))
    try:
        engine.run_node("raw")
        assert all_quarantined(engine.run_node("boom")[1])
        with pytest.raises(MissingInputError) as err:
            engine.run_node("after2", forced=True)
    finally:
        engine.close()
    advice = (
        "a run skips 'after' because 'boom' upstream of it failed ('boom': all 3 input rows quarantined); fix that "
        f"cause (`arcflow show boom {file}` lists the errors), then run `arcflow run --to after2 {file}`, or "
        f"`arcflow run --from boom {file}` if the fix is outside what arcflow fingerprints"
    )
    assert str(err.value).startswith(
        f"node 'after2' needs input 'after', which has no stored output: {advice}"
    ), err.value
    assert "\n" not in str(err.value)  # one line: the run's failure summary keeps it whole

    # `plan --node after2` says the same as the run, not "compute / never run"
    row = plan("--node", "after2")["after2"]
    assert row.split(" │ ")[2] == "fail (input missing)", row
    assert f"input 'after' has no stored output, so a run fails here (MissingInputError): {advice}" in row, (
        row
    )
    entry = json.loads(
        CliRunner().invoke(app, ["plan", "-f", str(path), "--node", "after2", "--json"]).output
    )
    assert entry[0]["status"] == "input_missing" and entry[0]["blocked_by"] == ["boom"], entry

    # `--from raw`: raw may come out unchanged, and then boom's stored failure is reused
    rows = plan("--from", "raw")
    assert rows["raw"].split(" │ ")[2] == "compute", rows["raw"]
    assert (
        rows["boom"].split(" │ ")[2] == "compute if input changes; else fails again: all 3 rows quarantined"
    )
    assert f"`arcflow show boom {file}` lists the errors (value_error: 3)" in rows["boom"], rows["boom"]
    for child in ("after", "after2"):
        assert rows[child].split(" │ ")[2] == "compute (unless 'boom' fails again)", rows[child]
    entries = {
        e["node"]: e
        for e in json.loads(
            CliRunner().invoke(app, ["plan", "-f", str(path), "--from", "raw", "--json"]).output
        )
    }
    assert entries["boom"]["if_inputs_unchanged"] == "all_quarantined", entries["boom"]
    assert entries["after2"]["unless_fails_again"] == ["boom"], entries["after2"]
    # `--from boom` recomputes boom itself: no failure foretold
    rows = plan("--from", "boom")
    assert rows["boom"].split(" │ ")[2] == "compute" and "fails again" not in rows["after2"], rows
