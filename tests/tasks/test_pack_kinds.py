"""`tokenizer_train` and `pack` through the engine on the demo corpus.

Checks: the tokenizer folder loads; every token of every input document appears in the packed rows exactly
``repeats`` times (the ``epochs`` column x the input weight); no document <= seq_len is split; rows are
exactly seq_len; the accounting balances; same seed gives the same bytes with 1 or 2 workers; context-level
FIM keeps seq_len and doc_lens.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import polars as pl
import pytest
import yaml
from tokenizers import Tokenizer

from data_pipes.tokens.mix import repeat_counts
from flows.engine import Engine
from flows.validate import load_pipeline
from tasks import registry
from tasks.base import KindParams, ShardTask
from tasks.doc_map import DocumentMapKind, hash_unit

SEQ = 256
EPOCHS = [0.0, 1.0, 2.0, 3.0, 1.5]  # by id hash; 0 drops, 1.5 draws


class _TestEpochs(DocumentMapKind):
    """Adds an ``epochs`` column and a ``bucket`` from a hash of the id, as quality buckets would."""

    name: ClassVar[str] = "test_epochs"
    max_inputs: ClassVar[int | None] = 1

    def process(self, frame: pl.DataFrame, params: KindParams, seed: int, task: ShardTask):  # type: ignore[override]
        pick = (hash_unit(frame.get_column("id"), 3) * len(EPOCHS)).cast(pl.Int64)
        out = frame.with_columns(
            pick.map_elements(lambda i: EPOCHS[i], return_dtype=pl.Float64).alias("epochs"),
            pick.cast(pl.String).alias("bucket"),
        )
        return out, out.clear().with_columns(pl.lit("x").alias("reason"))


def _pipeline(
    root: Path, workers: int, fim: str = "none", seed: int = 0, group_tokens: int | None = None
) -> dict[str, dict]:
    nodes = {
        "code": {
            "uses": "demo_corpus",
            "params": {"parts": ["stdlib_code"], "max_items_per_part": 40, "items_per_shard": 15},
        },
        "lic": {
            "uses": "demo_corpus",
            "params": {"parts": ["licenses"], "max_items_per_part": 25, "items_per_shard": 10},
        },
        "tiered": {"uses": "test_epochs", "inputs": ["code"]},
        "tok": {
            "uses": "tokenizer_train",
            "inputs": ["code", "lic"],
            "params": {"vocab_size": 600, "sample_docs": 50, "heldout_docs": 10},
        },
        "packed": {
            "uses": "pack",
            "inputs": ["tok", "tiered", "lic"],
            "params": {
                "seq_len": SEQ,
                "weights": {"lic": 2.0},
                "rows_per_shard": 40,
                "seed": seed,
                "fim": {"mode": fim, "rate": 0.9},
                **({"plan_group_tokens": group_tokens} if group_tokens else {}),
            },
        },
    }
    spec = {
        "name": "p",
        "workdir": str(root / ".arcflow"),
        "nodes": nodes,
        "executor": {"n_workers": workers, "processes": False},
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))
    engine = Engine(pipeline)
    manifests = {}
    try:
        for n in pipeline.order:
            manifests[n] = engine.run_node(n)[1]
    finally:
        engine.close()
    return manifests


def _out(root: Path, manifest: dict) -> Path:
    return root / ".arcflow" / "outputs" / manifest["fingerprint"]


def _rows(root: Path, manifest: dict) -> pl.DataFrame:
    out = _out(root, manifest)
    return pl.concat([pl.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))])


@pytest.fixture(scope="module", autouse=True)
def epochs_kind() -> Iterator[None]:
    registry.kind_names()  # load the real kinds first, so ours is the only addition
    registry.register(_TestEpochs)
    try:
        yield
    finally:
        registry._KINDS.pop(_TestEpochs.name, None)


@pytest.fixture(scope="module")
def one(tmp_path_factory: pytest.TempPathFactory, epochs_kind: None) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("pack1")
    return root, _pipeline(root, 1)


@pytest.fixture(scope="module")
def grouped(tmp_path_factory: pytest.TempPathFactory, epochs_kind: None) -> tuple[Path, dict[str, dict]]:
    """The same node packed in plan groups of about 8,000 tokens (several groups, each packed on its own)."""
    root = tmp_path_factory.mktemp("pack-groups")
    return root, _pipeline(root, 2, group_tokens=8_000)


def test_tokenizer_node(one: tuple[Path, dict]) -> None:
    root, m = one
    row = _rows(root, m["tok"]).row(0, named=True)
    read = row["sample_docs"] + row["heldout_docs"]  # the training sample and the held-out documents
    assert row["sample_docs"] == 50 and m["tok"]["counts"] == {
        "in": read,
        "kept": read,
        "dropped": 0,
        "quarantined": 0,
        "out": 1,
    }
    folder = _out(root, m["tok"]) / row["tokenizer_dir"]
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tok.get_vocab_size() == row["vocab_size"] == 600
    assert row["heldout_bytes_per_token"] > 1.5
    text = "import os\nprint('héllo')\n"
    assert tok.decode(tok.encode(text).ids) == text
    assert (folder / "tokenizer_config.json").exists() and (folder / "special_tokens_map.json").exists()


@pytest.mark.parametrize("packing", ["one", "grouped"])
def test_every_token_appears_exactly_repeats_times(packing: str, request: pytest.FixtureRequest) -> None:
    root, m = request.getfixturevalue(packing)
    tok_row = _rows(root, m["tok"]).row(0, named=True)
    tok = Tokenizer.from_file(str(_out(root, m["tok"]) / tok_row["tokenizer_dir"] / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    seed = m["packed"]["seed"]
    rows = _rows(root, m["packed"])
    assert rows.height > 0 and (rows["input_ids"].list.len() == SEQ).all()
    assert (rows["doc_lens"].list.sum() + rows["n_pad"] == SEQ).all()
    # expected: each input document's tokens (+ EOS) x its repeat count
    want: dict[str, Counter] = {}
    repeats: dict[str, int] = {}
    for node, weight in (("tiered", 1.0), ("lic", 2.0)):
        docs = _rows(root, m[node])
        epochs = docs["epochs"].to_numpy() if "epochs" in docs.columns else np.ones(docs.height)
        counts = repeat_counts(docs["id"].to_list(), epochs, weight, node, seed)
        for doc_id, text, r in zip(docs["id"], docs["text"], counts.tolist(), strict=True):
            ids = tok.encode(text, add_special_tokens=False).ids
            if not ids:
                r = 0
            repeats[doc_id] = r
            want[doc_id] = Counter({t: c * r for t, c in Counter([*ids, eos]).items()}) if r else Counter()
    assert {0, 1, 2, 3} <= set(repeats.values())  # the epochs column and the weight took effect
    got: dict[str, Counter] = {d: Counter() for d in want}
    for ids, lens, doc_ids, starts in rows.select(
        "input_ids", "doc_lens", "doc_ids", "doc_starts"
    ).iter_rows():
        pos = 0
        for n, d, s in zip(lens, doc_ids, starts, strict=True):
            got[d].update(ids[pos : pos + n])
            pos += n
            full = sum(want[d].values()) // repeats[d]
            assert full > SEQ or (n == full and s == 0), f"document {d} of {full} tokens was split"
    assert got == want
    n_long = sum(1 for d in want if repeats[d] and sum(want[d].values()) // repeats[d] > SEQ)
    assert n_long > 0  # the corpus has documents longer than seq_len, which were chunked
    # the report's split counts, measured by the node, against copies counted here from the documents
    long_copies = sum(r for d, r in repeats.items() if r and sum(want[d].values()) // r > SEQ)
    copy_lens = [sum(want[d].values()) // r for d, r in repeats.items() if r for _ in range(r)]
    bfd, base = json.loads((_out(root, m["packed"]) / "reports" / "packing.json").read_text())
    assert bfd["docs"] == base["docs"] == len(copy_lens)
    assert bfd["docs_split"] == long_copies and bfd["short_docs_split"] == 0
    assert base["short_docs_split"] > 0 and base["docs_split"] >= long_copies


@pytest.mark.parametrize("packing", ["one", "grouped"])
def test_accounting_and_report(packing: str, request: pytest.FixtureRequest) -> None:
    root, m = request.getfixturevalue(packing)
    c = m["packed"]["counts"]
    assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"]
    assert c["out"] == _rows(root, m["packed"]).height
    n_docs = sum(m[n]["counts"]["out"] for n in ("tiered", "lic"))
    rows = _rows(root, m["packed"])
    assert c["in"] == n_docs and c["kept"] == rows["doc_ids"].explode().n_unique()
    assert set(m["packed"]["drop_reasons"]) <= {"pack_epochs_zero", "pack_empty"}
    assert m["packed"]["drop_reasons"].get("pack_epochs_zero", 0) > 0
    report = json.loads((_out(root, m["packed"]) / "reports" / "packing.json").read_text())
    bfd, base = report
    assert bfd["method"] == "bfd" and base["method"] == "concat_chunk"
    assert bfd["tokens"] == base["tokens"]
    assert bfd["fill"] > 0.95


def test_plan_groups_pack_each_group_and_fill_stays_close(
    one: tuple[Path, dict], grouped: tuple[Path, dict]
) -> None:
    """Several plan groups: the report says so, every group's rows are whole, and fill stays within the few
    part-filled rows each extra group can leave (here at most two rows per group: 6 groups left 6 extra rows
    over 1,914)."""
    (root1, m1), (root2, m2) = one, grouped
    md = (_out(root2, m2["packed"]) / "reports" / "packing.md").read_text()
    assert (
        "plan groups" in md
        and "plan groups" not in (_out(root1, m1["packed"]) / "reports" / "packing.md").read_text()
    )
    groups = int(md.split(" plan groups")[0].rsplit(" ", 1)[-1])
    assert groups > 1
    single = json.loads((_out(root1, m1["packed"]) / "reports" / "packing.json").read_text())[0]
    split = json.loads((_out(root2, m2["packed"]) / "reports" / "packing.json").read_text())[0]
    assert split["tokens"] == single["tokens"] and split["docs"] == single["docs"]
    assert single["rows"] <= split["rows"] <= single["rows"] + 2 * groups
    assert m2["packed"]["counts"] == m1["packed"]["counts"] | {"out": split["rows"]}


def test_same_bytes_with_two_workers(one: tuple[Path, dict], tmp_path: Path) -> None:
    root, m = one
    two = _pipeline(tmp_path, 2)
    assert two["packed"]["content_hash"] == m["packed"]["content_hash"]
    assert two["tok"]["content_hash"] == m["tok"]["content_hash"]


def test_context_fim_keeps_length(one: tuple[Path, dict], tmp_path: Path) -> None:
    root, m = one
    fim = _pipeline(tmp_path, 1, fim="context")
    plain, rows = _rows(root, m["packed"]), _rows(tmp_path, fim["packed"])
    assert rows["doc_lens"].to_list() == plain["doc_lens"].to_list()
    assert (rows["input_ids"].list.len() == SEQ).all()
    changed = sum(
        a != b for a, b in zip(rows["input_ids"].to_list(), plain["input_ids"].to_list(), strict=True)
    )
    assert changed > rows.height // 2
    tok = Tokenizer.from_file(str(_out(root, m["tok"]) / "tokenizer" / "tokenizer.json"))
    pre = tok.token_to_id("<|fim_prefix|>")
    assert sum(row.count(pre) for row in rows["input_ids"].to_list()) > 0
