"""Stages that would silently do nothing say so: `fim` whose formats match no row, and `tokenizer_train` whose
corpus leaves nothing for the held-out split (it holds out a share anyway)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import polars as pl
import pytest
import yaml

from flows.engine import Engine
from flows.validate import load_pipeline


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 7))) for _ in range(n))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict], list[logging.LogRecord]]:
    root = tmp_path_factory.mktemp("noop")
    rng = random.Random(0)
    docs = [{"id": f"d{k}", "text": _words(rng, 200)} for k in range(20)]
    (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    nodes = {
        "docs": {"uses": "files", "params": {"paths": ["docs.jsonl"], "id_field": "id"}},
        "fim": {"uses": "fim", "inputs": ["docs"]},  # default formats ["code"]: files rows are not code
        "fim_all": {"uses": "fim", "inputs": ["docs"], "params": {"formats": None}},
        "tok": {
            "uses": "tokenizer_train",
            "inputs": ["docs"],
            "params": {"vocab_size": 300, "sample_docs": 50},
        },
    }
    spec = {"name": "noop", "workdir": str(root / ".arcflow"), "nodes": nodes}
    spec["executor"] = {"n_workers": 1, "processes": False}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))
    engine = Engine(pipeline)
    handler = logging.Handler(logging.WARNING)
    records: list[logging.LogRecord] = []
    handler.emit = records.append  # type: ignore[method-assign]
    for name in ("tasks.fim", "tasks.tokenizer_train"):
        logging.getLogger(name).addHandler(handler)
    try:
        manifests = {n: engine.run_node(n)[1] for n in pipeline.order}
    finally:
        engine.close()
        for name in ("tasks.fim", "tasks.tokenizer_train"):
            logging.getLogger(name).removeHandler(handler)
    return root, manifests, records


def _reports(root: Path, manifest: dict) -> Path:
    return root / ".arcflow" / "outputs" / manifest["fingerprint"] / "reports"


def test_fim_that_transforms_nothing_warns(
    run: tuple[Path, dict[str, dict], list[logging.LogRecord]],
) -> None:
    root, manifests, records = run
    md = (_reports(root, manifests["fim"]) / "fim-modes.md").read_text()
    assert "FIM transformed none of 20 documents" in md and "'jsonl': 20" in md and "formats: null" in md
    fim_logs = [r.getMessage() for r in records if r.name == "tasks.fim"]
    assert len(fim_logs) == 1 and "'fim'" in fim_logs[0]  # the node with formats: null transformed some
    assert not (_reports(root, manifests["fim_all"]) / "fim-modes.md").exists()


def test_tokenizer_holds_out_a_share_of_a_small_corpus(
    run: tuple[Path, dict[str, dict], list[logging.LogRecord]],
) -> None:
    root, manifests, records = run
    out = _reports(root, manifests["tok"]).parent
    row = pl.read_parquet(out / "part-00000.parquet").row(0, named=True)
    assert row["sample_docs"] == 18 and row["heldout_docs"] == 2  # 10% of 20, out of the training sample
    assert row["heldout_bytes_per_token"] > 1.0
    assert manifests["tok"]["counts"]["in"] == manifests["tok"]["counts"]["kept"] == 20  # every document read
    note = (_reports(root, manifests["tok"]) / "tokenizer-held-out-split.md").read_text()
    assert "no larger than sample_docs (50)" in note
    assert any(r.name == "tasks.tokenizer_train" and "2 documents" in r.getMessage() for r in records)
