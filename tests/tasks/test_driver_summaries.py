"""Nodes whose summaries used to gather a value per document onto the driver, now built from per-shard parts.

files (standard-library docstrings, several shards), then through the engine:
- quality_score (math_density): the histogram's counts, the mean, min, max and share are exact; p10, p50 and p90
  within the digest's rank error plus one document; no shard result carries more than six numbers;
- distill_labels: exact top and bottom shares through digest brackets (the counts a full sort gives, ties at
  score 0 included), and the histogram counted per shard equals the histogram of all teacher scores.
And tokenizer_train's bottom-k sample pass (``lowest_keys``), run directly with an in-process map in place of the
cluster: the same rows as sorting every key, while far fewer rows come back.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from data_pipes.web import quality_plots as plots
from data_pipes.web import quantiles
from flows.engine import Engine
from flows.store import SHARDS
from flows.validate import load_pipeline
from tasks.base import RunContext
from tasks.doc_map import hash_unit
from tasks.tokenizer_train import key_bound, lowest_keys

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


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("summaries")
    _write_texts(root / "texts")
    nodes = {
        "docs": {"uses": "files", "params": {"paths": ["texts"], "shard_mb": 0.02}},
        "scored": {"uses": "quality_score", "inputs": ["docs"], "params": {"scorer": "math_density"}},
        "distill": {
            "uses": "distill_labels",
            "inputs": ["docs"],
            "params": {"positive_fraction": 0.2, "negative_fraction": 0.5},
        },
    }
    spec = {"name": "scores", "workdir": str(root / ".arcflow"), "nodes": nodes,
            "executor": {"n_workers": 1, "processes": False}}  # fmt: skip
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))
    engine = Engine(pipeline)
    try:
        return root, {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()


def _output(root: Path, manifest: dict) -> Path:
    return root / ".arcflow" / "outputs" / manifest["fingerprint"]


def _rows(folder: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("part-*.parquet"))], how="diagonal")


def test_score_report_matches_the_scores(run: tuple[Path, dict[str, dict]]) -> None:
    root, run = run
    out = _output(root, run["scored"])
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


def test_distill_labels_exact_shares_and_histogram(run: tuple[Path, dict[str, dict]]) -> None:
    root, run = run
    out = _output(root, run["distill"])
    labelled = _rows(out)
    every = pl.concat([labelled, _rows(out / "excluded")], how="diagonal")
    n = run["docs"]["counts"]["kept"]
    assert every.height == n and (every["teacher_score"] == 0).sum() > 10  # ties at the cut-off's score
    counts = dict(labelled.group_by("label").len().iter_rows())
    assert counts == {"hq": n - math.ceil(0.8 * n), "lq": math.ceil(0.5 * n)}
    scores = {k: labelled.filter(pl.col("label") == k)["teacher_score"] for k in ("hq", "lq")}
    rest = every.filter(pl.col("label").is_null())["teacher_score"]
    assert scores["hq"].min() >= rest.max() >= rest.min() >= scores["lq"].max()
    entries = json.loads((out / SHARDS).read_text())
    summed = np.sum([e["extra"]["histogram"] for e in entries], axis=0).tolist()
    assert summed == plots.histogram(every["teacher_score"].to_numpy())[0]


class _InProcess:
    """``ctx.map`` run in this process, in item order (the engine's contract), counting the rows returned."""

    def __init__(self) -> None:
        self.returned = 0

    def __call__(self, fn, items, *, phase=None, unit="shards"):  # type: ignore[no-untyped-def]
        out = [fn(item) for item in items]
        self.returned += sum(o.height for o in out)
        return out


def _keys_ctx(mapper: _InProcess) -> RunContext:
    return RunContext("tok", None, [], "", 0, map=mapper, run_shards=None)  # type: ignore[arg-type]


def test_tokenizer_sample_pass_gathers_few_rows(tmp_path: Path) -> None:
    _write_texts(tmp_path / "docs")
    docs = sorted((tmp_path / "docs").glob("*.txt"))
    paths = []
    for i in range(0, len(docs), 40):
        part = docs[i : i + 40]
        path = tmp_path / f"part-{i:05d}.parquet"
        pl.DataFrame({"id": [d.name for d in part], "text": [d.read_text() for d in part]}).write_parquet(
            path
        )
        paths.append(str(path))
    n, k, seed = len(docs), 30, 7
    every = pl.concat([pl.read_parquet(p).with_columns(pl.lit(p).alias("path")) for p in paths])
    every = every.with_columns(hash_unit(every["id"], seed).alias("key")).sort("key", "id")
    assert key_bound(n, k) < 0.4 and key_bound(k, k) == 1.0
    for documents in (n, 20 * n):  # 20 x: the first bound is too low and must double until k rows come back
        mapper = _InProcess()
        got = lowest_keys(_keys_ctx(mapper), paths, documents, seed, k)
        assert got is not None and got.height >= k
        assert got.sort("key", "id").head(k).select("id", "path").equals(every.head(k).select("id", "path"))
        if documents == n:  # what reached the driver: about k + 6 sqrt(k) + 16 rows, not one per document
            assert mapper.returned < n / 2, (mapper.returned, n)
