"""`arcflow validate`, `schema`, `graph` and `kinds` through the real typer app."""

from __future__ import annotations

import json
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
