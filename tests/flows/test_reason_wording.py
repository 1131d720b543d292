"""`arcflow show` and `arcflow status` say the same of a node whose stored output quarantined every row: a run
reuses it and fails there until the node's input, params or code change."""

from __future__ import annotations

from pathlib import Path

from _pipeline_util import load, run_all, write_pipeline
from typer.testing import CliRunner

from flows.cli import app

UNTIL = "until its input, params or code change"


def test_show_and_status_agree_on_what_clears_an_all_quarantined_node(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jsonl").write_text('{"id": "a1", "text": \n{not json}\n')
    path = write_pipeline(tmp_path, {"broken": {"uses": "files", "params": {"paths": ["broken"]}}})
    run_all(load(path))  # the engine stores the output; the run's verdict on it is the Prefect layer's
    wide = {"COLUMNS": "400"}
    show = CliRunner().invoke(app, ["show", "broken", "-f", str(path)], env=wide)
    status = CliRunner().invoke(app, ["status", "-f", str(path)], env=wide)
    for result in (show, status):
        assert " ".join(result.output.split()).count(UNTIL) == 1, result.output
