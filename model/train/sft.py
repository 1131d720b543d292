"""SFT rows: chat records rendered with the one template (:mod:`model.train.chat`), tokenized with a loss mask on
the assistant tokens, and packed best-fit decreasing into ``seq_len`` rows (``data_pipes.tokens.bfd``, the code
``pack`` uses).

A rendered record ends with ``<|endoftext|>`` (which also ends its last assistant turn, so it carries loss). A
record is never split: one longer than ``seq_len`` is left out and counted as ``sft_too_long`` (the stage reports
it; lower nothing silently). Rows are in the packed_tokens format (docs/PACKED_TOKENS.md) plus ``loss_mask``
(list<int8>, 1 = this token is a training target), so :class:`model.train.data.PackedLoader` reads both kinds;
per segment ``doc_ids`` holds the record id, ``sources`` its ``domain``, ``buckets`` its ``mode`` and ``nodes`` the
shard file it came from.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipes.code.special_tokens import TOKENS
from data_pipes.io.atomic import atomic_path
from data_pipes.tokens.bfd import Items, pack_plan
from data_pipes.tokens.pack_rows import PACKED_SCHEMA
from model.train.chat import chat_token_mask, record_messages, render_chat
from model.train.validate import tokenizer_json_path

SFT_SCHEMA = PACKED_SCHEMA.append(pa.field("loss_mask", pa.list_(pa.int8())))  # packed rows + loss mask


@dataclass
class Doc:
    """One tokenized item to pack: ids, an optional per-token loss mask and its provenance."""

    ids: np.ndarray  # int32
    mask: np.ndarray | None  # int8, same length
    doc_id: str
    source: str = ""
    bucket: str = ""
    node: str = ""


@dataclass
class SftStats:
    records: int = 0
    packed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    tokens: int = 0
    loss_tokens: int = 0


def tokenize_chat(tok: object, record: dict, where: str, eos_id: int) -> Doc:
    """Render and tokenize one chat record; ``tok`` is a ``tokenizers.Tokenizer``."""
    messages, tools = record_messages(record, where)
    rendered = render_chat(messages, tools)
    enc = tok.encode(rendered.text, add_special_tokens=False)  # type: ignore[attr-defined]
    mask = chat_token_mask(enc.offsets, rendered.spans, n_after=1)
    ids = np.asarray([*enc.ids, eos_id], dtype=np.int32)
    return Doc(
        ids, mask, str(record.get("id")), str(record.get("domain") or ""), str(record.get("mode") or "")
    )


def read_chat_docs(files: Sequence[str], tokenizer: str, seq_len: int) -> tuple[list[Doc], SftStats]:
    """Every record of the chat ``files`` as a :class:`Doc` (in file and row order), minus those too long."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json_path(tokenizer))
    eos = tok.token_to_id(TOKENS.endoftext)
    if eos is None:
        raise ValueError(
            f"{tokenizer}: the tokenizer has no {TOKENS.endoftext} token; train it with the special tokens"
        )
    stats, docs = SftStats(), []
    for f in files:
        cols = [c for c in ("id", "messages", "tools", "domain", "mode") if c in pq.read_schema(f).names]
        if "messages" not in cols:
            raise ValueError(
                f"{f}: no messages column; data.chat must list chat shards (docs/CHAT_CONTRACT.md)"
            )
        for row, record in enumerate(pq.read_table(f, columns=cols).to_pylist()):
            stats.records += 1
            doc = tokenize_chat(tok, record, f"{f} row {row}", eos)
            doc.node = os.path.basename(f)
            if len(doc.ids) > seq_len:
                stats.dropped["sft_too_long"] = stats.dropped.get("sft_too_long", 0) + 1
                continue
            docs.append(doc)
    if not stats.records:
        raise ValueError(
            f"the chat shards {list(files)} hold no chat records; nothing to train on (list shards with records "
            "in data.chat)"
        )
    if not docs:
        raise ValueError(
            f"no chat record of {list(files)} fits seq_len {seq_len} ({stats.records} records, "
            f"{stats.dropped.get('sft_too_long', 0)} too long); raise data.seq_len"
        )
    stats.packed = len(docs)
    return docs, stats


def pack_docs(docs: Sequence[Doc], seq_len: int, seed: int, pad_id: int) -> pa.Table:
    """Best-fit-decreasing rows of ``docs`` (each at most ``seq_len``), shuffled by ``seed``. The table has
    ``loss_mask`` when every doc has a mask (SFT), else the plain packed_tokens columns."""
    lengths = np.array([len(d.ids) for d in docs], dtype=np.int64)
    if len(docs) == 0 or lengths.min() < 1 or lengths.max() > seq_len:
        raise ValueError(f"pack_docs needs documents of 1..{seq_len} tokens")
    items = Items(np.arange(len(docs)), np.zeros(len(docs), np.int64), lengths)
    order, offsets = pack_plan(items, seq_len, seed)
    with_mask = all(d.mask is not None for d in docs)
    rows: dict[str, list] = {name: [] for name in SFT_SCHEMA.names}
    for r in range(len(offsets) - 1):
        members = [docs[int(i)] for i in order[offsets[r] : offsets[r + 1]]]
        used = sum(len(d.ids) for d in members)
        ids = np.concatenate([d.ids for d in members] + [np.full(seq_len - used, pad_id, np.int32)])
        rows["seq_index"].append(r)
        rows["input_ids"].append(ids.astype(np.int32))
        rows["doc_lens"].append([len(d.ids) for d in members])
        rows["doc_starts"].append([0] * len(members))
        rows["doc_ids"].append([d.doc_id for d in members])
        rows["sources"].append([d.source for d in members])
        rows["buckets"].append([d.bucket for d in members])
        rows["nodes"].append([d.node for d in members])
        rows["n_pad"].append(seq_len - used)
        if with_mask:
            rows["loss_mask"].append(
                np.concatenate([d.mask for d in members] + [np.zeros(seq_len - used, np.int8)])  # type: ignore[misc]
            )
    schema = SFT_SCHEMA if with_mask else pa.schema([f for f in SFT_SCHEMA if f.name != "loss_mask"])
    if not with_mask:
        rows.pop("loss_mask")
    return pa.table({k: pa.array(v, schema.field(k).type) for k, v in rows.items()}, schema=schema)


def build_sft_shard(files: Sequence[str], tokenizer: str, seq_len: int, seed: int, out_path: str) -> SftStats:
    """Render, tokenize and pack the chat ``files`` into one packed shard at ``out_path`` (written atomically)."""
    docs, stats = read_chat_docs(files, tokenizer, seq_len)
    from tokenizers import Tokenizer

    pad = Tokenizer.from_file(tokenizer_json_path(tokenizer)).token_to_id(TOKENS.endoftext)
    table = pack_docs(docs, seq_len, seed, pad)
    stats.rows = table.num_rows
    stats.tokens = int(sum(len(d.ids) for d in docs))
    stats.loss_tokens = int(sum(int(d.mask.sum()) for d in docs if d.mask is not None))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with atomic_path(out_path) as tmp:
        pq.write_table(table, tmp)
    return stats
