"""benchmarks/scale.py's paired one-worker estimate: per-shard seconds read from a store and keyed by corpus file,
and the paired arithmetic (cost ratio per shard node on the shards both runs hold, global nodes scaled by
documents, occupancy) on synthetic results, with shards missing on either side."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks import scale


def _run(workers: int, docs: int, wall: float, nodes: dict, shard_seconds: dict | None) -> dict:
    entry = {
        "workers": workers,
        "docs": docs,
        "usage": {"wall_s": wall, "cpu_s": {"worker": 0.5 * workers * wall}},
        "nodes": nodes,
        "scheduler_cpu_s": None,
    }
    if shard_seconds is not None:
        entry["shard_seconds"] = shard_seconds
    return entry


def _node(wall: float, docs_in: int, shard_s: float) -> dict:
    return {"wall_s": wall, "shard_s": shard_s, "counts": {"in": docs_in}}


# the one-worker sample: part-00001, part-00003 (both in the big run) and part-00009 (not in it); part-00005's
# text shard has no seconds (0: never timed), so it is skipped too
BASE = _run(
    1,
    1000,
    30.0,
    {"text": _node(10.0, 1000, 9.0), "exact": _node(5.0, 400, 0.4)},
    {
        "text": {"part-00001": 2.0, "part-00003": 4.0, "part-00009": 3.0, "part-00005": 0.0},
        "exact": {"part-00001": 0.1, "part-00003": 0.1, "part-00009": 0.1, "part-00005": 0.1},
    },
)
# the big run, 2 workers on part-00000 .. part-00005
BIG = _run(
    2,
    1500,
    20.0,
    {"text": _node(9.0, 1500, 15.6), "exact": _node(4.0, 800, 0.6)},
    {
        "text": {
            "part-00000": 3.0,
            "part-00001": 3.0,
            "part-00002": 3.0,
            "part-00003": 6.0,
            "part-00005": 0.6,
        },
        "exact": {f"part-0000{i}": 0.1 for i in range(6)},
    },
)


def test_paired_estimate_pairs_the_shard_nodes_and_scales_the_global_ones() -> None:
    p = scale.paired_estimate(BIG, BASE)
    assert p is not None
    text = p["nodes"]["text"]
    # matched: part-00001 and part-00003 (part-00009 is not in the big run, part-00005 has no base seconds)
    assert (text["matched"], text["of"], text["paired"]) == (2, 4, True)
    assert text["r"] == pytest.approx((3.0 + 6.0) / (2.0 + 4.0))
    shards = 15.6 / 1.5  # the big run's shard-seconds at the sample's cost per shard
    assert text["t1_shards"] == pytest.approx(shards)
    assert text["t1"] == pytest.approx(10.0 * shards / 9.0)  # with the sample's time between its tasks
    assert text["occupancy"] == pytest.approx(15.6 / (2 * 9.0))
    assert text["eff"] == pytest.approx(text["t1"] / (2 * 9.0))
    exact = p["nodes"]["exact"]  # global: the sample's wall scaled by the documents entering it
    assert not exact["paired"] and exact["t1"] == pytest.approx(5.0 * 800 / 400)
    assert p["global"] == ["exact"]
    outside = 30.0 - 15.0
    assert p["t1"] == pytest.approx(outside + text["t1"] + 10.0)
    assert p["eff"] == pytest.approx(p["t1"] / (2 * 20.0))
    assert p["t1_shards"] == pytest.approx(outside + shards + 10.0)
    assert p["eff_shards"] == pytest.approx(p["t1_shards"] / 40.0)
    assert p["occupancy"] == pytest.approx((15.6 + 0.6) / 40.0)


def test_paired_estimate_of_the_baseline_itself_is_its_wall() -> None:
    p = scale.paired_estimate(BASE, BASE)
    assert p is not None and p["nodes"]["text"]["r"] == pytest.approx(1.0)
    assert p["t1"] == pytest.approx(30.0) and p["eff"] == pytest.approx(1.0)


def test_a_shard_node_with_no_shard_in_common_falls_back_to_documents() -> None:
    other = {**BASE, "shard_seconds": {"text": {"part-00099": 2.0}, "exact": {}}}
    p = scale.paired_estimate(BIG, other)
    assert p is not None
    text = p["nodes"]["text"]
    assert (text["paired"], text["matched"], text["of"]) == (False, 0, 1)
    assert text["t1"] == pytest.approx(10.0 * 1500 / 1000)
    assert p["global"] == ["text", "exact"]


def test_no_pairing_without_per_shard_seconds_or_for_a_stopped_run() -> None:
    old = {k: v for k, v in BASE.items() if k != "shard_seconds"}  # results of before they were kept
    assert scale.paired_estimate(BIG, old) is None
    stopped = {**BIG, "usage": {**BIG["usage"], "stopped": True}}
    assert scale.paired_estimate(stopped, BASE) is None


def test_tables_show_the_paired_efficiency_next_to_the_document_scaled_one() -> None:
    lines = scale.strong_markdown([BIG], BASE).splitlines()
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    row = [c.strip() for c in lines[2].strip("|").split("|")]
    cells = dict(zip(head, row, strict=True))
    p = scale.paired_estimate(BIG, BASE)
    assert p is not None
    assert cells["efficiency (paired)"] == f"**{p['eff']:.0%}**"
    assert cells["efficiency"].startswith("**") and cells["efficiency"].endswith("(est.)")  # kept
    assert cells["occupancy"] == f"{(15.6 + 0.6) / 40.0:.0%}"
    old = {k: v for k, v in BASE.items() if k != "shard_seconds"}
    assert scale.strong_markdown([BIG], old).splitlines()[2].split(" | ")[5] == "-"
    paired = scale.paired_markdown([BIG], BASE).splitlines()
    assert "1.50, 2/4" in paired[2] and "by documents" in paired[2]
    assert scale.paired_markdown([BIG], old) == ""


def _store(tmp: Path, first_docs: list[int]) -> Path:
    """A store with a `pages` node whose shard i starts with document first_docs[i], and a `text` node."""
    for node in ("pages", "text"):
        out = tmp / "outputs" / f"fp-{node}"
        out.mkdir(parents=True)
        (out / "manifest.json").write_text(json.dumps({"node": node}))
        shards = []
        for i, doc in enumerate(first_docs):
            name = f"part-{i:05d}.parquet"
            ids = [f"{node}:scale-0-{d:08d}" for d in range(doc, doc + 3)]
            pq.write_table(pa.table({"id": ids, "text": ["x"] * 3}), out / name)
            shards.append({"index": i, "file": name, "seconds": 1.0 + i + (node == "text")})
        (out / "shards.json").write_text(json.dumps(shards))
    return tmp


def test_shard_seconds_are_keyed_by_the_corpus_file(tmp_path: Path) -> None:
    files = [Path("corpus/part-00001.parquet"), Path("corpus/part-00003.parquet")]  # a sample: every 2nd
    store = _store(tmp_path, [250, 750])  # 250 documents per file
    got = scale.shard_seconds(store, files, docs_per_file=250)
    assert got == {
        "pages": {"part-00001": 1.0, "part-00003": 2.0},
        "text": {"part-00001": 2.0, "part-00003": 3.0},
    }


def test_shard_seconds_refuse_shards_of_other_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = [Path("corpus/part-00001.parquet"), Path("corpus/part-00003.parquet")]
    store = _store(tmp_path, [250, 500])  # the second shard holds part-00002's documents
    assert scale.shard_seconds(store, files, docs_per_file=250) == {}
    assert "pages shard 1 starts with pages:scale-0-00000500, not a document of part-00003" in (
        capsys.readouterr().out
    )
    assert (
        scale.shard_seconds(store, files[:1], docs_per_file=250) == {}
    )  # 2 shards for 1 file: every node out
