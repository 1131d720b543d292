"""A quality_score scorer that returns NaN or an infinity for some documents: those rows are quarantined with the
scorer and the value named, the rest are scored and the counts add up; when every row is non-finite the node's
manifest is all-quarantined (which fails the run, flows/outcome.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.engine import Engine
from flows.outcome import all_quarantined
from flows.validate import load_pipeline

SCORER = '''
import math


def nanny(texts):
    """NaN for a text mentioning "broken", infinity for "overflow", else the share of letters."""
    out = []
    for t in texts:
        if "broken" in t:
            out.append(math.nan)
        elif "overflow" in t:
            out.append(math.inf)
        else:
            out.append(sum(c.isalpha() for c in t) / max(len(t), 1))
    return out
'''
TEXTS = {
    "d1": "The river runs past the old mill.",
    "d2": "This page is broken beyond repair.",
    "d3": "Bread, cheese and honey at the market.",
    "d4": "A counter overflow ruins the total.",
}


def _run(root: Path, texts: dict[str, str]) -> tuple[dict, Path]:
    (root / "docs.jsonl").write_text(
        "".join(json.dumps({"id": k, "text": v}) + "\n" for k, v in texts.items())
    )
    spec = {
        "name": "nonfinite",
        "workdir": str(root / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "docs": {
                "uses": "files",
                "params": {"paths": [str(root / "docs.jsonl")], "format": "jsonl", "id_field": "id"},
            },
            "scored": {"uses": "quality_score", "inputs": ["docs"], "params": {"scorer": "nanscorer:nanny"}},
        },
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    engine = Engine(load_pipeline(str(path)))
    try:
        engine.run_node("docs")
        manifest = engine.run_node("scored")[1]
    finally:
        engine.close()
    return manifest, root / "store" / "outputs" / manifest["fingerprint"]


@pytest.fixture()
def scorer_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "nanscorer.py").write_text(SCORER)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("nanscorer", None)


def test_non_finite_rows_are_quarantined_and_the_rest_scored(scorer_module: Path) -> None:
    manifest, out = _run(scorer_module, TEXTS)
    c = manifest["counts"]
    assert (c["in"], c["kept"], c["dropped"], c["quarantined"]) == (4, 2, 0, 2)
    kept = pl.read_parquet(sorted(out.glob("part-*.parquet")))
    assert sorted(kept["id"].to_list()) == ["docs:d1", "docs:d3"]
    assert kept["quality_score"].is_finite().all()
    bad = pl.read_parquet(sorted((out / "quarantine").glob("part-*.parquet"))).sort("id")
    assert bad["id"].to_list() == ["docs:d2", "docs:d4"]
    assert bad["error"].to_list() == [
        "quality_score_non_finite: scorer 'nanscorer:nanny' returned nan",
        "quality_score_non_finite: scorer 'nanscorer:nanny' returned inf",
    ]
    assert not all_quarantined(manifest)
    # `arcflow show` prints the score distribution (one wide row, so one line per field), not only its path
    shown = CliRunner().invoke(app, ["show", "scored", "-f", str(scorer_module / "pipeline.yaml")])
    assert shown.exit_code == 0, shown.output
    mean = round(kept["quality_score"].mean(), 4)
    for field in (
        "documents",
        "mean",
        "min",
        "max",
        "share_ge_0_5",
        "p10",
        "p50",
        "p90",
        "quality_score_non_finite",
    ):
        assert field in shown.output, field
    assert str(mean) in shown.output


def test_every_row_non_finite_is_all_quarantined(scorer_module: Path) -> None:
    manifest, _ = _run(scorer_module, {"d2": TEXTS["d2"], "d4": TEXTS["d4"]})
    assert manifest["counts"]["quarantined"] == manifest["counts"]["in"] == 2
    assert all_quarantined(manifest)
