"""The multilingual quality DAG of docs/QUALITY.md validates with `arcflow validate` (the files it reads made here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "QUALITY.md"


def test_quality_doc_snippet_validates(tmp_path: Path) -> None:
    snippet = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert snippet, f"{DOC} has no yaml block"
    row = json.dumps({"id": "a", "text": "Ein Satz. Another sentence."}) + "\n"
    for name in ("crawl/part.jsonl", "eval/good.jsonl", "eval/bad.jsonl"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(row, encoding="utf-8")
    path = tmp_path / "pipeline.yaml"
    path.write_text(snippet.group(1), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", "-f", str(path)])
    assert result.exit_code == 0, result.output
    for kind in ("distill_labels", "quality_train", "quality_buckets"):
        assert kind in snippet.group(1)
    assert "teacher: edu_rubric" in snippet.group(1) and "group_by: lang" in snippet.group(1)
