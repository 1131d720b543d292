"""quality_score's report through the engine: built from per-shard parts, equal to the figures from all the scores.

files (standard-library docstrings, several shards) -> quality_score (math_density). The histogram's counts, the
mean, min, max and share are exact; p10, p50 and p90 within the digest's rank error plus one document; no shard
result carries more than six numbers.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import polars as pl
import yaml

from data_pipes.web import quantiles
from flows.engine import Engine
from flows.store import SHARDS
from flows.validate import load_pipeline

MODULES = ("statistics", "fractions", "decimal", "math", "json", "csv", "argparse", "heapq")


def _write_texts(folder: Path) -> None:
    folder.mkdir()
    n = 0
    for name in MODULES:
        for _, member in [
            (name, importlib.import_module(name)),
            *inspect.getmembers(importlib.import_module(name)),
        ]:
            doc = getattr(member, "__doc__", None)
            if isinstance(doc, str) and len(doc) > 60:
                (folder / f"{n:04d}.txt").write_text(doc)
                n += 1


def test_score_report_matches_the_scores(tmp_path: Path) -> None:
    _write_texts(tmp_path / "texts")
    nodes = {
        "docs": {"uses": "files", "params": {"paths": ["texts"], "shard_mb": 0.02}},
        "scored": {"uses": "quality_score", "inputs": ["docs"], "params": {"scorer": "math_density"}},
    }
    spec = {"name": "scores", "workdir": str(tmp_path / ".arcflow"), "nodes": nodes,
            "executor": {"n_workers": 1, "processes": False}}  # fmt: skip
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(tmp_path / "pipeline.yaml"))
    engine = Engine(pipeline)
    try:
        run = {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()
    out = tmp_path / ".arcflow" / "outputs" / run["scored"]["fingerprint"]
    assert run["scored"]["shards"] >= 3
    scores = pl.concat([pl.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))])[
        "quality_score"
    ].to_numpy()
    n = scores.size
    assert n == run["docs"]["counts"]["kept"] and n > 150

    report = next(r for r in run["scored"]["reports"] if r["title"] == "Score distribution")
    [table] = json.loads((out / report["table"]).read_text())
    assert table["documents"] == n and table["scorer"] == "math_density"
    assert table["mean"] == round(float(scores.mean()), 4)
    assert (table["min"], table["max"]) == (round(float(scores.min()), 4), round(float(scores.max()), 4))
    assert table["share_ge_0_5"] == round(float((scores >= 0.5).mean()), 4)
    ordered = np.sort(scores)
    slack = quantiles.SKETCH_RANK_ERROR + 1.0 / n + 1e-4  # the table rounds to 4 decimals
    for f, key in ((0.1, "p10"), (0.5, "p50"), (0.9, "p90")):
        below = np.searchsorted(ordered, table[key] - 1e-4, side="left") / n
        at_most = np.searchsorted(ordered, table[key] + 1e-4, side="right") / n
        assert below - slack <= f <= at_most + slack, (key, table[key])
    assert "t-digest" in (out / report["markdown"]).read_text()
    assert (out / report["png"]).read_bytes()[:4] == b"\x89PNG"

    # each shard carried six numbers to the driver (no scores, no digest); they add up to the node's documents
    entries = json.loads((out / SHARDS).read_text())
    extras = [e["extra"] for e in entries]
    assert all(set(e) == {"score_stats"} and len(e["score_stats"]) == 6 for e in extras)
    assert sum(e["score_stats"]["n"] for e in extras) == n
