"""`pack`'s `method: concat_chunk`: the copies laid end to end in a seeded order and cut every seq_len tokens.

The plan is checked on lengths (every token of every copy lands once, rows full except the last, the same figures
as the length-only `concat_chunk_stats`), then the kind through the engine on real documents: each document's
tokens come back whole when its pieces are put together, the rows are full, and the accounting balances.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from tokenizers import Tokenizer

from data_pipes.tokens.baseline import bfd_stats, concat_chunk_stats
from data_pipes.tokens.concat_chunk import concat_chunk_plan
from flows.engine import Engine
from flows.validate import load_pipeline

SEQ = 128


def test_plan_covers_every_token_once_and_fills_rows() -> None:
    lens = np.array([30, 250, 70, 100, 99, 1, 40, 0, 201, 60])
    repeats = np.array([1, 2, 1, 1, 3, 1, 0, 2, 1, 2])
    items, order, offsets = concat_chunk_plan(lens, repeats, 100, seed=5)
    copies = np.repeat(lens, repeats)
    copies = copies[copies > 0]
    rows = len(offsets) - 1
    assert rows == -(-int(copies.sum()) // 100)
    fill = np.add.reduceat(items.length[order], offsets[:-1])
    assert (fill[:-1] == 100).all() and 0 < fill[-1] <= 100
    # each copy's pieces are consecutive, start at 0 and add up to the document's length
    first = np.flatnonzero(items.start == 0)
    per_copy = np.add.reduceat(items.length, first)
    assert sorted(per_copy.tolist()) == sorted(copies.tolist())
    assert (items.length[1:][items.start[1:] > 0] > 0).all()
    assert (items.doc[first] >= 0).all() and (lens[items.doc] > 0).all()
    st = bfd_stats(items, order, offsets, 100, method="concat_chunk")
    base = concat_chunk_stats(per_copy, 100)  # the same stream order, from lengths alone
    assert st.method == "concat_chunk"
    assert (st.rows, st.tokens, st.pad, st.docs, st.docs_split, st.short_docs_split) == (
        base.rows, base.tokens, base.pad, base.docs, base.docs_split, base.short_docs_split,
    )  # fmt: skip
    assert st.short_docs_split > 0  # short copies are cut: what BFD avoids
    # seeded: the same seed gives the same plan, another seed another order
    again = concat_chunk_plan(lens, repeats, 100, seed=5)[0]
    assert (again.doc == items.doc).all() and (again.start == items.start).all()
    other = concat_chunk_plan(lens, repeats, 100, seed=6)[0]
    assert not (len(other.doc) == len(items.doc) and (other.doc == items.doc).all())


def test_empty_plan() -> None:
    items, order, offsets = concat_chunk_plan(np.array([0, 5]), np.array([1, 0]), 64, seed=0)
    assert len(items) == 0 and len(order) == 0 and offsets.tolist() == [0]


def _run(root: Path) -> dict[str, dict]:
    nodes = {
        "docs": {
            "uses": "demo_corpus",
            "params": {"parts": ["stdlib_code", "licenses"], "max_items_per_part": 15, "items_per_shard": 10},
        },
        "tok": {
            "uses": "tokenizer_train",
            "inputs": ["docs"],
            "params": {"vocab_size": 400, "sample_docs": 30},
        },
        "chunked": {
            "uses": "pack",
            "inputs": ["tok", "docs"],
            "params": {"seq_len": SEQ, "method": "concat_chunk", "rows_per_shard": 50},
        },
    }
    spec = {
        "name": "cc",
        "workdir": str(root / ".arcflow"),
        "nodes": nodes,
        "executor": {"n_workers": 1, "processes": False},
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))
    engine = Engine(pipeline)
    try:
        return {n: engine.run_node(n)[1] for n in pipeline.order}
    finally:
        engine.close()


def _frame(root: Path, manifest: dict) -> pl.DataFrame:
    out = root / ".arcflow" / "outputs" / manifest["fingerprint"]
    return pl.concat([pl.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))])


def test_kind_concat_chunk_rows(tmp_path: Path) -> None:
    m = _run(tmp_path)
    tok_row = _frame(tmp_path, m["tok"]).row(0, named=True)
    out_tok = tmp_path / ".arcflow" / "outputs" / m["tok"]["fingerprint"] / tok_row["tokenizer_dir"]
    tok = Tokenizer.from_file(str(out_tok / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    rows = _frame(tmp_path, m["chunked"]).sort("seq_index")
    assert (rows["input_ids"].list.len() == SEQ).all()
    assert (rows["n_pad"][:-1] == 0).all()  # every row full but the last
    # each document's pieces, in order of their offsets, give back its tokens (+ EOS)
    pieces: dict[str, list[tuple[int, list[int]]]] = {}
    for ids, lens, doc_ids, starts in rows.select(
        "input_ids", "doc_lens", "doc_ids", "doc_starts"
    ).iter_rows():
        pos = 0
        for n, d, s in zip(lens, doc_ids, starts, strict=True):
            pieces.setdefault(d, []).append((s, ids[pos : pos + n]))
            pos += n
    docs = _frame(tmp_path, m["docs"])
    for doc_id, text in zip(docs["id"], docs["text"], strict=True):
        ids = tok.encode(text, add_special_tokens=False).ids
        if not ids:
            continue  # dropped as pack_empty
        want = [*ids, eos]
        got = [t for _s, part in sorted(pieces[doc_id], key=lambda p: p[0]) for t in part]
        assert got == want, doc_id
    c = m["chunked"]["counts"]
    assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"] == docs.height
    report = json.loads(
        (
            tmp_path / ".arcflow" / "outputs" / m["chunked"]["fingerprint"] / "reports" / "packing.json"
        ).read_text()
    )
    assert report[0]["method"] == "concat_chunk" and report[0]["pad"] < SEQ
    assert report[0]["short_docs_split"] > 0
