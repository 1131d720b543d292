"""`arcflow gc --set workdir=...` collects the store the override names (as `run --set workdir=...` wrote it),
not the pipeline file's own workdir."""

from __future__ import annotations

from pathlib import Path

from _pipeline_util import load, run_all, write_corpus, write_pipeline
from typer.testing import CliRunner

from flows.cli import app


def test_gc_takes_set_like_run(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=2)
    nodes = {
        "raw": {"uses": "files", "params": {"paths": ["data"]}},
        "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 10"}},
    }
    pipeline = str(write_pipeline(tmp_path, nodes))
    other = tmp_path / "other-store"
    runner = CliRunner()
    for expr in (
        "length(text) > 10",
        "length(text) > 20",
    ):  # the second run leaves the first `long` unreferenced
        run_all(load(Path(pipeline), [f"workdir={other}", f"nodes.long.params.expr={expr}"]))
    stored = sorted(p.name for p in (other / "outputs").iterdir())
    assert len(stored) == 3
    result = runner.invoke(app, ["gc", "-f", pipeline, "--set", f"workdir={other}"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "removed 1 output(s)" in result.output, result.output
    assert len(list((other / "outputs").iterdir())) == 2
    assert not (tmp_path / ".arcflow").exists()  # the file's own workdir was never touched
