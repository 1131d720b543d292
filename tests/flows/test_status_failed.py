"""`arcflow status`, `arcflow plan` and `arcflow show` after a run where a node raised (a ParamError: a filter
naming a missing column): the run record keeps the fingerprint it failed at and its one-line error; the node shows
as failed in its last run (its run, its YAML line, its error), its consumers as blocked by it (the words used for a
node whose stored output quarantined every row, and both named where both block a node); a node whose fingerprint
changed since its failed run (a fixed param, an input that changed, its code) will run; a fixed run clears it. A
run record written before the fingerprint and error were kept still loads and shows as before. The failing run goes
through the CLI with Prefect's ephemeral API, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _pipeline_util import load, run_all, write_corpus, write_pipeline
from typer.testing import CliRunner

from flows.cli import app
from flows.last_run import AT_ANOTHER_FINGERPRINT, ERROR_CHARS, OTHER_CHANGE, error_line
from flows.outcome import blocked_reason
from tests._prefect_home import seed_prefect_home

REPO = Path(__file__).resolve().parents[2]
BAD_EXPR = "length(no_such_column) > 1"
FIXED_EXPR = "length(text) > 1"
SKIPS = ": a run fails there and skips this node"
NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"]}},
    "bad": {"uses": "filter", "inputs": ["raw"], "params": {"expr": BAD_EXPR}},
    "after": {"uses": "filter", "inputs": ["bad"], "params": {"expr": "length(text) > 2"}},
    "last": {"uses": "filter", "inputs": ["after"], "params": {"expr": "length(text) > 3"}},
    "ok": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 4"}},
    # every line malformed: its stored output quarantines every row, which fails a run too
    "broken": {"uses": "files", "params": {"paths": ["broken"]}},
    "join": {"uses": "filter", "inputs": ["bad", "broken"], "params": {"expr": "length(text) > 5"}},
}


def _write(root: Path, bad_expr: str = BAD_EXPR) -> Path:
    nodes = json.loads(json.dumps(NODES))
    nodes["bad"]["params"]["expr"] = bad_expr
    return write_pipeline(root, nodes, name="stfail")


def _run_cli(root: Path, path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    # the ephemeral API, its database already migrated (tests/_prefect_home.py)
    env["PREFECT_HOME"] = str(seed_prefect_home(root / "prefect-home"))
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "-f", str(path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )


@pytest.fixture(scope="module")
def failed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline folder after one `arcflow run` where `bad` raised and `broken` quarantined every row."""
    root = tmp_path_factory.mktemp("stfail")
    write_corpus(root, n_files=2)
    (root / "broken").mkdir()
    (root / "broken" / "a.jsonl").write_text('{"id": "a1", "text": \n{not json}\n')
    path = _write(root)
    run = _run_cli(root, path)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"  bad ({path}:" in run.stderr and "ParamError" in run.stderr, run.stderr
    return root


def _copy(src: Path, dst: Path) -> Path:
    """The pipeline folder (store included) under ``dst``, its workdir pointing there: a moved checkout."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("prefect-home"))
    path = dst / "pipeline.yaml"
    path.write_text(path.read_text().replace(str(src), str(dst)))
    return path


def _cli(args: list[str], path: Path) -> str:
    result = CliRunner().invoke(app, [*args, "-f", str(path)], env={"COLUMNS": "1000"})
    assert result.exit_code == 0, result.output
    return result.output


def _rows(output: str) -> dict[str, list[str]]:
    """The cells of each table row by node (one line a row at this width)."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in NODES:
            rows[cells[0]] = cells
    return rows


def _status(path: Path, *extra: str) -> dict[str, tuple[str, str]]:
    """node -> (status, why) of `arcflow status` (the wide table: node, kind, status, why, kept, fingerprint)."""
    return {n: (c[2], c[3]) for n, c in _rows(_cli(["status", *extra], path)).items()}


def _plan(path: Path, *extra: str) -> dict[str, tuple[str, str]]:
    """node -> (action, first line of why) of `arcflow plan`."""
    return {n: (c[2], c[3]) for n, c in _rows(_cli(["plan", *extra], path)).items()}


def _line_of(path: Path, node: str) -> int:
    return path.read_text().splitlines().index(f"  {node}:") + 1


def _run_id(root: Path) -> str:
    (record,) = (root / ".arcflow" / "runs").glob("*/run.json")
    return record.parent.name


def _record(root: Path) -> tuple[Path, dict]:
    """The run record (``run.json``) of the one run in ``root``'s store, and what it holds."""
    (record,) = (root / ".arcflow" / "runs").glob("*/run.json")
    return record, json.loads(record.read_text())


def _as_before(root: Path) -> dict:
    """Rewrite the run record as a run wrote it before the fingerprint and error of a failed node were kept;
    returns the record as it was."""
    record, data = _record(root)
    old = json.loads(json.dumps(data))
    for entry in old["nodes"].values():
        if entry["state"] != "Completed":
            entry["fingerprint"] = None
            entry.pop("error", None)
    record.write_text(json.dumps(old))
    return data


@pytest.mark.timeout(300)
def test_status_and_plan_show_the_failed_node_and_block_its_consumers(failed_store: Path) -> None:
    path, run_id = failed_store / "pipeline.yaml", _run_id(failed_store)
    # the run record keeps the failed node's fingerprint (the one a run computes it at now) and its error line
    nodes = _record(failed_store)[1]["nodes"]
    entries = {e["node"]: e for e in json.loads(_cli(["plan", "--json"], path))}
    assert nodes["bad"]["state"] == "Failed" and nodes["bad"]["fingerprint"] == entries["bad"]["fingerprint"]
    error = nodes["bad"]["error"]
    assert error.startswith(f"ParamError: {path}:") and "nodes.bad.params.expr: filter expression" in error
    assert "no_such_column" in error and "\n" not in error and len(error) <= ERROR_CHARS, error
    assert nodes["after"] == {"state": "Skipped", "fingerprint": None, "content_hash": None}, nodes
    assert "error" not in nodes["raw"] and nodes["raw"]["fingerprint"] == entries["raw"]["fingerprint"]
    status = _status(path)

    label, why = status["bad"]
    assert label == "failed (last run)", status  # its error next to it
    assert why.startswith(f"failed in run {run_id} ({path}:{_line_of(path, 'bad')}): {error}; "), why
    assert "unchanged since (same fingerprint): a run fails there again" in why and "never run" not in why, (
        why
    )
    for consumer in ("after", "last"):  # skipped in that run: blocked, in the all-quarantined case's words
        assert status[consumer][0] == "blocked", status
        assert status[consumer][1].startswith(f"blocked by 'bad' (failed in the last run){SKIPS}"), status
    assert blocked_reason(["broken"]).endswith(f"(every row quarantined){SKIPS}")
    assert status["broken"][0].startswith("failed (all "), status  # its own words, as before
    # blocked by both kinds of failure: each named with its cause
    assert status["join"][0] == "blocked", status
    expected = f"blocked by 'bad' (failed in the last run), 'broken' (every row quarantined){SKIPS}"
    assert status["join"][1].startswith(expected), status
    assert status["raw"][0] == status["ok"][0] == "up_to_date", status

    # plan agrees: bad is computed and fails again, its consumers are skipped
    plan = _plan(path)
    assert plan["bad"][0] == "compute; fails again unless fixed", plan
    assert plan["after"][0] == plan["last"][0] == plan["join"][0] == "skip (blocked)", plan
    assert plan["after"][1].startswith(f"blocked by 'bad' (failed in the last run){SKIPS}"), plan
    entries = {e["node"]: e for e in json.loads(_cli(["plan", "--json"], path))}
    assert entries["bad"]["failed_last_run"] == {"run": run_id, "state": "Failed", "error": error}, entries
    assert entries["last"]["blocked_by"] == ["bad"] and entries["join"]["blocked_by"] == ["bad", "broken"]
    # --from raw: bad fails again only if raw comes out unchanged; its consumers run unless it does
    plan = _plan(path, "--from", "raw")
    assert "unchanged since but for input 'raw'" in plan["bad"][1], plan
    assert plan["after"][0] == "compute (unless 'bad' fails again)", plan
    # --node after: its input was never built because bad failed; the plan names that run
    out = json.loads(_cli(["plan", "--json", "--node", "after"], path))
    assert out[0]["status"] == "input_missing", out
    assert any(r.startswith(f"input 'bad' failed in run {run_id}") for r in out[0]["reasons"]), out


@pytest.mark.timeout(300)
def test_a_changed_fingerprint_will_run_and_an_old_run_record_shows_as_before(
    failed_store: Path, tmp_path: Path
) -> None:
    root = tmp_path / "moved"
    path = _copy(failed_store, root)  # fingerprints and path params do not depend on the folder
    run_id = _run_id(root)
    record, data = _record(root)
    fingerprint = {e["node"]: e for e in json.loads(_cli(["plan", "--json"], path))}["bad"]["fingerprint"]
    assert fingerprint and data["nodes"]["bad"]["fingerprint"] == fingerprint
    assert _status(path)["bad"][0] == "failed (last run)"

    # failed at another fingerprint with the same kind, params and inputs: what a change of its code or of a
    # package leaves (a run computes it again), and its consumers are not blocked
    other = json.loads(json.dumps(data))
    other["nodes"]["bad"]["fingerprint"] = "0" * 64
    record.write_text(json.dumps(other))
    status = _status(path)
    assert status["bad"] == (
        "missing",
        f"{AT_ANOTHER_FINGERPRINT} (run {run_id}; since then: {OTHER_CHANGE})",
    )
    assert status["after"] == status["last"] == ("missing", "never run"), status
    assert _plan(path)["bad"][0] == "compute" and _plan(path)["after"][0] == "compute"

    # a run record from before the fingerprint and error were kept: it loads, and shows as it did
    _as_before(root)
    label, why = _status(path)["bad"]
    assert label == "failed (last run)", why
    assert why.startswith(
        f"failed in run {run_id} ({path}:{_line_of(path, 'bad')}); `arcflow run --node bad"
    ), why
    assert "unchanged since (kind, params, inputs)" in why, why
    entries = {e["node"]: e for e in json.loads(_cli(["plan", "--json"], path))}
    assert entries["bad"]["failed_last_run"] == {"run": run_id, "state": "Failed", "error": None}, entries

    # its input changes (one more page, computed without Prefect, so no run record): not failed any more
    (root / "data" / "zzz_extra.txt").write_text("one more page of plain text for the corpus")
    run_all(load(path), node="raw")
    status = _status(path)  # the old record: what changed, from the run's config and input hashes
    assert status["bad"] == (
        "missing",
        f"not computed since it failed in run {run_id}; since then: input 'raw' changed",
    )
    assert status["after"] == ("missing", "never run"), status  # not blocked: bad may work now
    record.write_text(json.dumps(data))  # the record as a run writes it now: the fingerprint decides
    status = _status(path)
    expected = f"{AT_ANOTHER_FINGERPRINT} (run {run_id}; since then: input 'raw' changed)"
    assert status["bad"] == ("missing", expected), status
    assert status["after"] == ("missing", "never run"), status


@pytest.mark.timeout(60)
def test_show_gives_the_failed_run_its_time_and_error(failed_store: Path) -> None:
    path, run_id = failed_store / "pipeline.yaml", _run_id(failed_store)
    data = _record(failed_store)[1]
    bad = data["nodes"]["bad"]

    def show(node: str, *extra: str) -> str:
        result = CliRunner().invoke(app, ["show", node, "-f", str(path), *extra], env={"COLUMNS": "1000"})
        assert result.exit_code == 1, result.output  # no stored output to show
        return " ".join(result.output.split())

    where = f"({path}:{_line_of(path, 'bad')})"
    head = f"bad has no stored output: last run failed: run {run_id}, ended {data['finished_at']} {where}"
    assert show("bad") == (
        f"{head} at fingerprint {bad['fingerprint'][:12]}: {bad['error']}; "
        "unchanged since (same fingerprint): a run fails there again until it is fixed"
    )
    assert show("after") == f"after has no stored output: blocked by 'bad' (failed in the last run){SKIPS}"
    assert show("join") == (
        f"join has no stored output: blocked by 'bad' (failed in the last run), 'broken' (every row "
        f"quarantined){SKIPS}"
    )
    fixed = show("bad", "--set", f"nodes.bad.params.expr={FIXED_EXPR}")
    assert fixed.startswith(f"{head} at fingerprint {bad['fingerprint'][:12]}: {bad['error']}; "), fixed
    assert fixed.endswith(
        f"{AT_ANOTHER_FINGERPRINT} (run {run_id}; since then: param expr: {json.dumps(BAD_EXPR)} -> "
        f"{json.dumps(FIXED_EXPR)})"
    ), fixed


@pytest.mark.timeout(60)
def test_a_param_changed_since_it_failed_counts_even_with_its_input_recomputed_first(
    failed_store: Path,
) -> None:
    path, run_id = failed_store / "pipeline.yaml", _run_id(failed_store)
    plan = _plan(path, "--from", "raw", "--set", f"nodes.bad.params.expr={FIXED_EXPR}")
    assert plan["bad"][1].startswith(f"{AT_ANOTHER_FINGERPRINT} (run {run_id}; since then: param expr:"), plan
    assert plan["after"][0] == "compute", plan  # not "unless 'bad' fails again"


@pytest.mark.timeout(60)
def test_a_node_that_fails_before_its_fingerprint_is_known_keeps_its_error_only(
    failed_store: Path, tmp_path: Path
) -> None:
    from flows.engine import Engine, select
    from flows.errors import MissingInputError

    path = _copy(failed_store, tmp_path / "early")
    engine = Engine(load(path))
    try:
        run_dir = engine.record_run_start("0123456789", select(engine.pipeline, node="after"))
        with pytest.raises(MissingInputError) as caught:  # its input 'bad' has no output: no fingerprint
            engine.run_node("after", forced=True)
        engine.record_run_end(run_dir, {"after": "Failed"}, {"after": error_line(caught.value, "after")})
    finally:
        engine.close()
    entry = json.loads((Path(run_dir) / "run.json").read_text())["nodes"]["after"]
    assert entry["fingerprint"] is None and entry["content_hash"] is None, entry
    assert entry["error"] == error_line(caught.value, "after")
    assert entry["error"].startswith("MissingInputError: ") and "'bad'" in entry["error"], entry
    status = _status(path)  # matched on kind, params and inputs; still blocked by bad, which fails first
    assert status["after"][0] == "blocked" and status["bad"][0] == "failed (last run)", status


def test_error_line_is_the_first_line_trimmed() -> None:
    exc = ValueError("node 'bad': the first   line\n  the second line\n")
    assert error_line(exc, "bad") == "ValueError: the first line"
    assert error_line("\n  Crashed: the worker died \n more", "bad") == "Crashed: the worker died"
    assert error_line(RuntimeError(), "bad") == "RuntimeError" and error_line(None) is None
    long = error_line(KeyError("x" * 5000))  # a pathological message stays bounded
    assert (
        long is not None and len(long) == ERROR_CHARS and long.endswith("…") and long.startswith("KeyError: ")
    )


@pytest.mark.timeout(300)
def test_a_fixed_param_clears_the_failure_and_a_fixed_run_completes(
    failed_store: Path, tmp_path: Path
) -> None:
    path = _copy(failed_store, tmp_path / "fixed")
    run_id = _run_id(tmp_path / "fixed")
    fix = f"nodes.bad.params.expr={FIXED_EXPR}"

    status = _status(path, "--set", fix)
    label, why = status["bad"]
    assert label == "missing", status  # its params changed since it failed: a run computes it again
    assert why.startswith(f"{AT_ANOTHER_FINGERPRINT} (run {run_id}; since then: param expr:"), why
    assert BAD_EXPR in why and FIXED_EXPR in why and "never run" not in why, why
    assert status["after"] == status["last"] == ("missing", "never run"), status
    # join is still blocked by broken alone: the words `status` said before for such a node
    assert status["join"] == ("blocked", f"{blocked_reason(['broken'])}; never run"), status
    assert _plan(path, "--set", fix)["after"][0] == "compute"

    path.write_text(path.read_text().replace(BAD_EXPR, FIXED_EXPR))
    run = _run_cli(tmp_path / "fixed", path)
    assert run.returncode == 1, run.stdout + run.stderr  # broken still quarantines every row
    assert "ParamError" not in run.stderr, run.stderr
    status = _status(path)
    assert {n: status[n][0] for n in ("raw", "bad", "after", "last", "ok")} == dict.fromkeys(
        ("raw", "bad", "after", "last", "ok"), "up_to_date"
    ), status
    assert status["join"][0] == "blocked" and status["join"][1].startswith(blocked_reason(["broken"])), status


#: a filter expression naming a missing column, long enough that its error's advice ends well past 300 characters
LONG_EXPR = " and ".join(["length(no_such_column) > 1", *(f"length(text) > {i}" for i in range(30))])


@pytest.mark.timeout(300)
def test_a_long_error_is_said_whole_by_the_run_show_and_the_run_record(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=1)
    nodes = {"raw": NODES["raw"], "bad": {"uses": "filter", "inputs": ["raw"], "params": {"expr": LONG_EXPR}}}
    path = write_pipeline(tmp_path, nodes, name="longerr")
    run = _run_cli(tmp_path, path)
    assert run.returncode == 1, run.stdout + run.stderr
    error = _record(tmp_path)[1]["nodes"]["bad"]["error"]
    assert len(error) > 400 and not error.endswith("…"), error  # whole: the cut was at 300
    tail = error[-60:]  # the end of the message (what to change), in every place a user reads it
    assert tail in " ".join(run.stderr.split()), run.stderr
    result = CliRunner().invoke(app, ["show", "bad", "-f", str(path)], env={"COLUMNS": "1000"})
    assert tail in " ".join(result.output.split()), result.output
    # the status table cuts it to its cell, saying where it is whole
    result = CliRunner().invoke(app, ["status", "-f", str(path)], env={"COLUMNS": "100"})
    flat = " ".join(result.output.replace("│", " ").split())
    assert "… (whole: arcflow show bad)" in flat, result.output
