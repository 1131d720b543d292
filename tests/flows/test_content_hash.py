"""A node's content hash covers every byte it outputs, whatever the output type.

One test per output type builds a real output folder with the project's own writers (document shards with
exclusions and quarantine, WARC files, a trained HF tokenizer folder, reports, a trained fastText model, a
checkpoint-like HF folder with safetensors) and shows that flipping any one byte of any output file changes the
content hash, while bookkeeping and scratch (manifest, shard list, markers, ``_work/``, temporary files) do not.
Then the issue's regression, through the engine: pages that change under ``--force --node demo`` change
``demo_crawl``'s content hash, so ``web_warc`` is recomputed and holds the new pages.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest

from data_pipes.io.shards import write_shard
from data_pipes.io.warc_writer import WarcPage, write_warc
from flows.engine import Engine, select
from flows.store import Store, content_hash_of, hash_files, output_files
from tests.flows._pipeline_util import load, write_pipeline

FP = "f" * 64


def _store(tmp_path: Path) -> tuple[Store, Path]:
    store = Store(str(tmp_path / "store"))
    out = Path(store.output_dir(FP))
    out.mkdir(parents=True)
    return store, out


def _flip(path: Path, offset: int) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :])
    return data


def assert_every_byte_counts(store: Store, out: Path, expected_files: set[str]) -> None:
    """The output's files are ``expected_files`` (at least), and a flipped byte at the start, the middle or the
    end of any of them changes the content hash; restoring it restores the hash."""
    files = set(output_files(str(out)))
    assert expected_files <= files, sorted(expected_files - files)
    base = store.hash_output(FP)
    assert base == content_hash_of(hash_files(str(out))) and len(base) == 64
    for rel in sorted(files):
        path = out / rel
        size = path.stat().st_size
        assert size > 0, rel
        for offset in sorted({0, size // 2, size - 1}):
            original = _flip(path, offset)
            assert store.hash_output(FP) != base, f"flipping byte {offset} of {rel} left the hash unchanged"
            path.write_bytes(original)
        assert store.hash_output(FP) == base
    # bookkeeping, scratch and temporaries are not output
    for rel in (
        "manifest.json",
        "shards.json",
        "_markers/part-00000.json",
        "_work/cache.jsonl",
        "x.tmp-1-ab",
    ):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text("bookkeeping or scratch: " + rel)
    assert store.hash_output(FP) == base
    # a file that appears or disappears is a change too
    (out / "extra.bin").write_bytes(b"\0")
    assert store.hash_output(FP) != base
    os.remove(out / "extra.bin")
    assert store.hash_output(FP) == base


def test_documents_with_exclusions_and_quarantine(tmp_path: Path) -> None:
    store, out = _store(tmp_path)
    kept = pl.DataFrame({"id": ["a", "b"], "text": ["alpha beta", "gamma delta"]})
    dropped = pl.DataFrame({"id": ["c"], "text": ["x"], "reason": ["filter_too_short"]})
    bad = pl.DataFrame({"id": ["d"], "error": ["decode_error: bad bytes"]})
    result = write_shard(str(out), 0, kept, rows_in=4, dropped=dropped, quarantined=bad)
    assert (result.kept, result.dropped, result.quarantined) == (2, 1, 1)
    expected = {"part-00000.parquet", "excluded/part-00000.parquet", "quarantine/part-00000.parquet"}
    assert_every_byte_counts(store, out, expected)


def test_warc_files(tmp_path: Path) -> None:
    store, out = _store(tmp_path)
    pages = [
        WarcPage(f"doc{i}", f"https://example.org/{i}", f"<html><p>page {i}</p></html>") for i in range(3)
    ]
    write_warc(str(out / "warc" / "part-00000.warc.gz"), pages)
    # the index table alone (what the old content hash covered) does not change when the pages do
    table = pl.DataFrame({"id": [p.doc_id for p in pages], "file": ["warc/part-00000.warc.gz"] * 3})
    write_shard(str(out), 0, table, rows_in=3)
    assert_every_byte_counts(store, out, {"warc/part-00000.warc.gz", "part-00000.parquet"})


def test_tokenizer_folder(tmp_path: Path) -> None:
    from data_pipes.tokens.bpe_train import min_vocab_size, save_hf_folder, train_bpe

    store, out = _store(tmp_path)
    texts = ["def add(a, b):\n    return a + b\n", "The quick brown fox jumps over the lazy dog."] * 20
    tok = train_bpe(texts, vocab_size=min_vocab_size() + 40)
    save_hf_folder(tok, str(out / "tokenizer"))
    expected = {
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/special_tokens_map.json",
    }
    assert_every_byte_counts(store, out, expected)


def test_report_data(tmp_path: Path) -> None:
    from tasks.base import RunContext

    store, out = _store(tmp_path)
    ctx = RunContext("n", None, [], str(out), 0, map=lambda *a, **k: [], run_shards=lambda *a, **k: [])  # type: ignore[arg-type]
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(64))  # the bytes a plot would be; the hash reads bytes only
    ctx.add_report("Score histogram", markdown="# scores\n\n| bin | n |\n|---|---|\n| 0.1 | 3 |\n", png=png)
    ctx.add_report("Mixture", table=[{"bucket": "top", "docs": 3, "epochs": 3.2}])
    write_shard(str(out), 0, pl.DataFrame({"id": ["a"]}), rows_in=1)
    expected = {"reports/score-histogram.md", "reports/score-histogram.png", "reports/mixture.json"}
    assert_every_byte_counts(store, out, expected)


def test_model_folder(tmp_path: Path) -> None:
    from data_pipes.web import quality_fasttext as qf

    store, out = _store(tmp_path)
    lines = [("hq", "a clear explanation of the module and its functions")] * 10
    lines += [("lq", "copyright notice all rights reserved warranty")] * 10
    config = qf.TrainConfig(epoch=2, dim=8, bucket=1000)
    qf.train(lines, str(out / "model.bin"), config)
    (out / "metrics.json").write_text(json.dumps({"f1": 1.0}))
    assert_every_byte_counts(store, out, {"model.bin", "metrics.json"})


def test_checkpoint_like_folder(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    store, out = _store(tmp_path)
    ckpt = out / "checkpoint"
    ckpt.mkdir()
    save_file(
        {"embed.weight": np.arange(64, dtype=np.float32).reshape(8, 8)}, str(ckpt / "model.safetensors")
    )
    (ckpt / "config.json").write_text(json.dumps({"model_type": "glm4_moe", "hidden_size": 8}))
    (ckpt / "optimizer" / "rank-0").mkdir(parents=True)
    (ckpt / "optimizer" / "rank-0" / "state.pt").write_bytes(bytes(range(256)))
    expected = {
        "checkpoint/model.safetensors",
        "checkpoint/config.json",
        "checkpoint/optimizer/rank-0/state.pt",
    }
    assert_every_byte_counts(store, out, expected)


def test_empty_output_and_scratch_only_output_hash_alike(tmp_path: Path) -> None:
    store, out = _store(tmp_path)
    empty = store.hash_output(FP)
    (out / "_work").mkdir()
    (out / "_work" / "embeddings.npy").write_bytes(b"scratch")
    assert store.hash_output(FP) == empty


# ---- the regression through the engine --------------------------------------------------------------
def _crawl_pipeline(root: Path) -> Path:
    nodes = {
        "demo": {"uses": "demo_corpus", "params": {"parts": ["pydoc_html"], "max_items_per_part": 3}},
        "demo_crawl": {"uses": "warc_write", "inputs": ["demo"]},
        "web_warc": {"uses": "warc", "inputs": ["demo_crawl"]},
    }
    return write_pipeline(root, nodes, name="crawl")


def _run(path: Path, **selection: object) -> dict[str, bool]:
    pipeline = load(path)
    engine = Engine(pipeline)
    sel = select(pipeline, **selection)  # type: ignore[arg-type]
    out = {}
    try:
        for node in sel.nodes:
            out[node], _ = engine.run_node(node, forced=node in sel.forced)
    finally:
        engine.close()
    return out


def test_changed_pages_reach_web_warc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--force --node demo` changes the pages; `demo_crawl` keeps the same index table (ids, urls, record ids),
    but its WARC bytes changed, so its content hash changes and `web_warc` is recomputed with the new pages
    instead of being reused by early cut-off."""
    import tasks.demo_corpus as demo_kind

    path = _crawl_pipeline(tmp_path)
    assert not any(_run(path).values())
    refs = Store(str(tmp_path / ".arcflow")).read_refs("crawl")
    before = {n: (r["fingerprint"], r["content_hash"]) for n, r in refs.items()}

    render = demo_kind.render_demo_items

    def edited(items: list) -> list[dict]:
        return [
            {**r, "text": r["text"].replace("</body>", "<p>EDITED PAGE</p></body>")} for r in render(items)
        ]

    monkeypatch.setattr(demo_kind, "render_demo_items", edited)  # the executor runs threads in this process
    assert _run(path, node="demo", force=True) == {"demo": False}
    reused = _run(path)
    assert reused == {"demo": True, "demo_crawl": False, "web_warc": False}

    store = Store(str(tmp_path / ".arcflow"))
    after = {n: (r["fingerprint"], r["content_hash"]) for n, r in store.read_refs("crawl").items()}
    assert after["demo"][0] == before["demo"][0] and after["demo"][1] != before["demo"][1]
    assert after["demo_crawl"][0] != before["demo_crawl"][0]
    assert after["demo_crawl"][1] != before["demo_crawl"][1]  # the WARC bytes changed
    # the index table is the same bytes as before: only the WARC files tell the two outputs apart
    old_table = store.output_dir(before["demo_crawl"][0]) + "/part-00000.parquet"
    new_table = store.output_dir(after["demo_crawl"][0]) + "/part-00000.parquet"
    assert Path(old_table).read_bytes() == Path(new_table).read_bytes()
    texts = pl.read_parquet(store.output_dir(after["web_warc"][0]) + "/part-*.parquet")["text"].to_list()
    assert len(texts) == 3 and all("EDITED PAGE" in t for t in texts)
    engine = Engine(load(path))
    try:
        assert {p.node: p.status for p in engine.plan()} == dict.fromkeys(after, "up_to_date")
    finally:
        engine.close()
