"""`arcflow validate`, `schema`, `graph` and `kinds` through the real typer app."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app

GOOD = textwrap.dedent("""\
    name: cli_demo
    sources:
      docs: {paths: [a.txt]}
    nodes:
      demo:
        uses: demo_corpus
        params: {parts: [licenses], max_items_per_part: 2}
      mixed:
        uses: union
        inputs: [docs, demo]
      long:
        uses: filter
        inputs: mixed
        params: {expr: "length(text) >= 5", reason: filter_too_short}
      few:
        uses: sample
        inputs: [long]
        params: {fraction: 0.5, limit: 10}
    schedules:
      - cron: "0 3 * * *"
        nodes: [few]
    """)

BROKEN = textwrap.dedent("""\
    name: cli_demo
    sources:
      docs: {paths: [a.txt]}
    nodes:
      long:
        uses: filtr
        inputs: [docs]
      few:
        uses: sample
        inputs: [lng]
        params: {fraction: 1.5}
    """)


def _write(tmp_path: Path, text: str) -> str:
    (tmp_path / "a.txt").write_text("a real document\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return str(path)


def _flat(text: str) -> str:
    """Output with rich's line wrapping undone, so a problem can be matched as one line."""
    return " ".join(text.split())


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_validate_ok(tmp_path: Path, runner: CliRunner) -> None:
    file = _write(tmp_path, GOOD)
    result = runner.invoke(app, ["validate", "--file", file])
    assert result.exit_code == 0, result.output
    assert "pipeline 'cli_demo', 5 nodes, 4 edges" in _flat(result.stdout)


def test_validate_reports_every_problem_with_file_and_line(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, BROKEN)
    monkeypatch.chdir(tmp_path)  # a short relative path, as users type it
    file = "pipeline.yaml"
    result = runner.invoke(app, ["validate", "-f", file])
    assert result.exit_code == 2
    assert result.stdout == ""
    err = _flat(result.stderr)
    assert f"{file} is invalid (3 problem(s)):" in err
    expected = [
        f"{file}:6: nodes.long.uses: unknown kind 'filtr' (did you mean 'filter'",
        f"{file}:10: nodes.few.inputs[0]: input 'lng' is not a node or source (did you mean 'long'?)",
        f"{file}:11: nodes.few.params.fraction: Input should be less than or equal to 1 (got 1.5)",
    ]
    positions = [err.index(line) for line in expected]
    assert positions == sorted(positions)  # in file order


def test_validate_set_override(tmp_path: Path, runner: CliRunner) -> None:
    file = _write(tmp_path, GOOD)
    ok = runner.invoke(app, ["validate", "-f", file, "--set", "nodes.few.params.fraction=0.2"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(
        app,
        ["validate", "-f", file, "--set", "nodes.few.params.fraction=2", "--set", "nodes.few.params.limit"],
    )
    assert bad.exit_code == 2
    err = _flat(bad.stderr)
    assert "(2 problem(s))" in err
    assert "--set: nodes.few.params.fraction: Input should be less than or equal to 1 (got 2)" in err
    assert "--set: nodes.few.params.limit: 'nodes.few.params.limit' has no '='" in err


def test_validate_missing_file(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["validate", "-f", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "pipeline file not found" in _flat(result.stderr)


def test_schema_is_json_schema_with_params_per_kind(runner: CliRunner) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    node = schema["$defs"]["NodeSpec"]
    assert {"demo_corpus", "files", "filter", "sample", "union"} <= set(node["properties"]["uses"]["enum"])
    (sample_rule,) = [r for r in node["allOf"] if r["if"]["properties"]["uses"] == {"const": "sample"}]
    params = sample_rule["then"]["properties"]["params"]
    assert set(params["properties"]) == {"fraction", "limit", "seed"}
    assert params["additionalProperties"] is False
    assert "paths" in schema["properties"]["sources"]["additionalProperties"]["properties"]


def test_schema_validates_pipelines_like_the_loader(runner: CliRunner) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(runner.invoke(app, ["schema"]).stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    good = yaml.safe_load(GOOD)
    assert [e.message for e in validator.iter_errors(good)] == []

    def errors(node: dict) -> list[str]:
        doc = {**good, "nodes": {**good["nodes"], "few": node}}
        return [e.message for e in validator.iter_errors(doc)]

    assert errors({"uses": "sample", "inputs": ["long"], "params": {"fraction": 0.5, "fracton": 1}})
    assert errors({"uses": "sample", "inputs": ["long"], "params": {"fraction": 1.5}})
    assert errors({"uses": "samplr", "inputs": ["long"]})
    assert errors({"uses": "sample", "input": ["long"]})
    assert errors({"uses": "filter", "inputs": "long", "params": {"expr": "true"}}) == []
    assert errors({"inputs": "long"})  # `uses` is required


def test_schema_for_one_kind(runner: CliRunner) -> None:
    result = runner.invoke(app, ["schema", "--kind", "filter"])
    assert result.exit_code == 0
    assert set(json.loads(result.stdout)["properties"]) == {"expr", "reason"}
    bad = runner.invoke(app, ["schema", "--kind", "filtr"])
    assert bad.exit_code == 2
    assert "did you mean 'filter'" in _flat(bad.stderr)


def test_graph_mermaid(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["graph", "-f", _write(tmp_path, GOOD)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  docs["docs<br/>files"]' in lines
    assert '  few["few<br/>sample"]' in lines
    edges = [ln.strip() for ln in lines if "-->" in ln]
    assert sorted(edges) == sorted(["docs --> mixed", "demo --> mixed", "mixed --> long", "long --> few"])


def test_graph_dot(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["graph", "-f", _write(tmp_path, GOOD), "--format", "dot"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith('digraph "cli_demo" {\n  rankdir=LR;')
    assert out.rstrip().endswith("}")
    assert '  long [label="long\\n(filter)", shape=box];' in out
    assert "  mixed -> long;" in out and "  long -> few;" in out


def test_graph_bad_format_and_broken_file(tmp_path: Path, runner: CliRunner) -> None:
    assert runner.invoke(app, ["graph", "-f", _write(tmp_path, GOOD), "--format", "png"]).exit_code == 2
    assert runner.invoke(app, ["graph", "-f", _write(tmp_path, BROKEN)]).exit_code == 2


def test_kinds_lists_the_registry(runner: CliRunner) -> None:
    result = runner.invoke(app, ["kinds"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    for kind in ("demo_corpus", "files", "filter", "sample", "union"):
        assert kind in out
    assert "(source)" in out and "documents" in out


# ---- CLI polish: flags, --version, selections, status / plan / show on a real store ----------------------------
LONG = "a_rather_long_node_name_for_narrow_terminals"


def _project(tmp_path: Path, n_files: int = 6) -> str:
    """A small pipeline with a source of ``n_files`` files (one shard each) and a long-named sample node."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(n_files):
        (data / f"{i}.txt").write_text(f"document number {i}\n")
    spec = {
        "name": "polish",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "sources": {"docs": {"paths": ["data"], "shard_mb": 0.000001}},
        "nodes": {
            LONG: {"uses": "sample", "inputs": ["docs"], "params": {"fraction": 0.5}},
            "few": {"uses": "sample", "inputs": [LONG], "params": {"limit": 2}},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _run(file: str, overrides: list[str] | None = None) -> None:
    from flows.engine import Engine
    from flows.validate import load_pipeline

    engine = Engine(load_pipeline(file, overrides or []))
    try:
        for node in engine.pipeline.order:
            engine.run_node(node)
    finally:
        engine.close()


def test_version(runner: CliRunner) -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"arcflow {version('arcflow')}"


def test_flags_are_flags_in_help_and_on_the_command_line(tmp_path: Path, runner: CliRunner) -> None:
    help_text = runner.invoke(app, ["plan", "--help"], env={"COLUMNS": "100"}).stdout
    assert "--force" in help_text and "--json" in help_text
    assert "<bool>" not in help_text
    assert "<str>" in help_text  # options that take a value still say what they take
    file = _write(tmp_path, GOOD)
    assert runner.invoke(app, ["plan", "-f", file, "--force", "--json"]).exit_code == 0
    assert runner.invoke(app, ["plan", "-f", file, "--force", "true"]).exit_code == 2


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--node", "few", "--from", "few"], "--node few cannot be combined with --from"),
        (["--node", "few", "--to", "long"], "--node few cannot be combined with --to"),
        (["--from", "few", "--to", "long"], "selects nothing: long is not downstream of few"),
        (["--node", "lnog"], "--node 'lnog': no such node; did you mean 'long'?"),
        (["--from", "mixd"], "--from 'mixd': no such node; did you mean 'mixed'?"),
        (["--to", "long,fwe"], "--to 'fwe': no such node; did you mean 'few'?"),
    ],
)
def test_bad_selections_exit_2(tmp_path: Path, runner: CliRunner, args: list[str], said: str) -> None:
    result = runner.invoke(app, ["plan", "-f", _write(tmp_path, GOOD), *args])
    assert result.exit_code == 2
    err = _flat(result.stderr)
    assert said in err
    assert "demo" not in err  # a suggestion, not the list of every node


def test_show_unknown_node_suggests(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["show", "mixedd", "-f", _write(tmp_path, GOOD)])
    assert result.exit_code == 2
    assert "show 'mixedd': no such node; did you mean 'mixed'?" in _flat(result.stderr)


def test_set_typo_points_at_the_command_line(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(
        app, ["validate", "-f", _write(tmp_path, GOOD), "--set", "nodes.few.parms.limit=1"]
    )
    assert result.exit_code == 2
    assert "--set: nodes.few.parms: unknown key 'parms' (did you mean 'params'?)" in _flat(result.stderr)


def test_status_partial_and_at_80_columns(tmp_path: Path, runner: CliRunner) -> None:
    from flows.store import Store

    file = _project(tmp_path)
    _run(file)
    # many reasons at 80 columns: the node's name whole on its line, its reasons within three lines
    sets = [
        f"nodes.{LONG}.params.fraction=0.25",
        f"nodes.{LONG}.params.seed=9",
        f"nodes.{LONG}.params.limit=5",
    ]
    changed = runner.invoke(app, ["status", "-f", file, *(f"--set={s}" for s in sets)], env={"COLUMNS": "80"})
    assert changed.exit_code == 0, changed.output
    lines = changed.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    (at,) = [i for i, line in enumerate(lines) if line.startswith(LONG)]
    reasons = []
    for line in lines[at + 1 :]:  # the indented lines under the node's line
        if not line.startswith(" "):
            break
        reasons.append(line)
    assert 1 <= len(reasons) <= 3, changed.stdout
    assert "param fraction: 0.5 -> 0.25" in _flat(changed.stdout)
    # a run killed after 4 of its 6 shards: partial, not "missing / never run"
    store = Store(str(tmp_path / "store"))
    out = Path(store.output_dir(store.read_refs("polish")["docs"]["fingerprint"]))
    (out / "manifest.json").unlink()
    for marker in sorted((out / "_markers").glob("part-*.json"))[4:]:
        marker.unlink()
    result = runner.invoke(app, ["status", "-f", file], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "docs  partial (4/6 shards)" in result.stdout
    assert "never run" not in result.stdout and "missing" not in result.stdout
    wide = runner.invoke(app, ["status", "-f", file], env={"COLUMNS": "200"})
    assert "partial (4/6 shards)" in wide.stdout and "4/6 shards done" in wide.stdout
    assert "`arcflow run` resumes with the rest" in _flat(wide.stdout)
    # while a run holds the store (its lock file names a live pid): the rest is being computed now
    lock = tmp_path / "store" / "lock"
    lock.write_text(f"arcflow pid {os.getpid()} since 2026-12-01 06:00:00\n")
    live = runner.invoke(app, ["status", "-f", file], env={"COLUMNS": "200"})
    assert f"a run is computing the rest now (arcflow pid {os.getpid()}" in _flat(live.stdout), live.stdout
    assert store.run_in_progress() == f"arcflow pid {os.getpid()} since 2026-12-01 06:00:00"
    lock.write_text("arcflow pid 999999999 since 2026-12-01 06:00:00\n")  # a run killed with -9: its pid gone
    assert store.run_in_progress() is None
    assert "resumes with the rest" in _flat(
        runner.invoke(app, ["status", "-f", file], env={"COLUMNS": "200"}).stdout
    )


def test_status_partial_after_a_stopped_first_run(tmp_path: Path, runner: CliRunner) -> None:
    from flows.store import Store

    file = _project(tmp_path)
    _run(file)
    # the store as the very first run leaves it when killed after 4 of 6 shards of `docs`: no refs, no manifest
    store = Store(str(tmp_path / "store"))
    out = Path(store.output_dir(store.read_refs("polish")["docs"]["fingerprint"]))
    for path in (tmp_path / "store" / "refs").glob("*.json"):
        path.unlink()
    (out / "manifest.json").unlink()
    for marker in sorted((out / "_markers").glob("part-*.json"))[4:]:
        marker.unlink()
    result = runner.invoke(app, ["status", "-f", file], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.startswith("docs  partial (4/6 shards)")]
    assert "4/6 shards done" in lines[at + 1] and "never run" not in lines[at + 1], result.stdout


def test_plan_shows_every_param_change_uncut(tmp_path: Path, runner: CliRunner) -> None:
    file = _project(tmp_path)
    _run(file)
    result = runner.invoke(
        app, ["plan", "-f", file, "--set", f"nodes.{LONG}.params.fraction=0.125"], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    flat = _flat(result.stdout.replace("│", " "))
    assert "param fraction: 0.5 -> 0.125" in flat


def test_param_changes_name_the_changed_leaf() -> None:
    from flows.param_diff import param_changes

    old = {"buckets": [{"top": 0.2, "epochs": 3}, {"top": 0.5, "epochs": 1}, {"top": 1.0, "epochs": 1}]}
    new = {"buckets": [{"top": 0.2, "epochs": 3}, {"top": 0.5, "epochs": 1}, {"top": 1.0, "epochs": 2}]}
    assert param_changes(old, new) == ["buckets.2.epochs: 1 -> 2"]
    assert param_changes({"a": 1}, {"a": 1, "b": "x"}) == ['b: (unset) -> "x"']


def test_show_says_what_it_shows(tmp_path: Path, runner: CliRunner) -> None:
    file = _project(tmp_path)
    experiment = [f"nodes.{LONG}.params.fraction=0.25", "nodes.few.params.limit=3"]
    _run(file, experiment)  # only a --set experiment has run: the store holds its outputs
    after = runner.invoke(app, ["show", "few", "-f", file], env={"COLUMNS": "200"})
    assert after.exit_code == 0, after.output
    text = _flat(after.stdout)
    assert "few: stale; showing its last stored output, which a run would not reuse" in text
    assert "reused from the store" not in text
    assert "a run with other params than this pipeline's" in text
    assert "limit: 2 -> 3" in text
    source = runner.invoke(
        app, ["show", "docs", "-f", file]
    )  # path params compare as the manifest keeps them
    assert "up to date" in _flat(source.stdout) and "other params" not in source.stdout
    same = runner.invoke(app, ["show", "few", "-f", file, *(f"--set={s}" for s in experiment)])
    assert same.exit_code == 0, same.output
    assert "few: its stored output is up to date" in _flat(same.stdout)
    assert "other params" not in same.stdout
