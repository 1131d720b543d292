"""Phase 3 of packing: one output shard's rows from its plan, in the packed-tokens format
(docs/PACKED_TOKENS.md).

Each row is ``seq_len`` token ids (the segments back to back, then padding), the segment lengths and their
provenance. Token arrays are memory-mapped, so a shard reads only the documents it holds. With context-level
FIM, each row is rearranged per segment after packing (``data_pipes.code.fim_context``), keeping its length
and ``doc_lens``; the row's generator is seeded by ``(seed, row index)``, so the result is independent of
sharding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

PACKED_SCHEMA = pa.schema(
    [
        ("seq_index", pa.int64()),
        ("input_ids", pa.list_(pa.int32())),
        ("doc_lens", pa.list_(pa.int32())),
        ("doc_starts", pa.list_(pa.int32())),
        ("doc_ids", pa.list_(pa.string())),
        ("sources", pa.list_(pa.string())),
        ("buckets", pa.list_(pa.string())),
        ("nodes", pa.list_(pa.string())),
        ("n_pad", pa.int32()),
    ]
)


@dataclass(frozen=True)
class ContextFim:
    """Context-level FIM settings and the sentinel ids of the tokenizer."""

    rate: float
    spm_rate: float
    prefix: int
    middle: int
    suffix: int
    eot: int | None


def _list(values: pa.Array, offsets: np.ndarray) -> pa.ListArray:
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), values)


def build_rows(
    segs: pl.DataFrame,
    token_files: dict[int, np.ndarray],
    n_rows: int,
    seq_len: int,
    pad_id: int,
    row_base: int,
    seed: int,
    fim: ContextFim | None = None,
) -> pa.Table:
    """The rows ``row_base .. row_base + n_rows`` of the node; ``segs`` is the shard's plan (row-local ``row``
    numbers, in row order) and ``token_files`` maps a work-file index to its (memory-mapped) tokens."""
    ids = np.full((n_rows, seq_len), pad_id, dtype=np.int32)
    fill = [0] * n_rows
    rows = segs.get_column("row").to_numpy() - row_base
    for r, f, o, n in zip(
        rows.tolist(), segs["file"].to_list(), segs["offset"].to_list(), segs["length"].to_list(), strict=True
    ):
        p = fill[r]
        ids[r, p : p + n] = token_files[f][o : o + n]
        fill[r] = p + n
    seg_off = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_rows))])
    lengths = segs.get_column("length").to_numpy().astype(np.int32)
    if fim is not None:
        _context_fim(ids, lengths, seg_off, row_base, seed, fim)
    row_off = np.arange(n_rows + 1, dtype=np.int64) * seq_len
    columns = {
        "seq_index": pa.array(np.arange(row_base, row_base + n_rows, dtype=np.int64)),
        "input_ids": _list(pa.array(ids.reshape(-1)), row_off),
        "doc_lens": _list(pa.array(lengths), seg_off),
        "doc_starts": _list(pa.array(segs.get_column("doc_start").to_numpy().astype(np.int32)), seg_off),
        "doc_ids": _list(segs.get_column("id").to_arrow().cast(pa.string()), seg_off),
        "sources": _list(segs.get_column("source").to_arrow().cast(pa.string()), seg_off),
        "buckets": _list(segs.get_column("bucket").to_arrow().cast(pa.string()), seg_off),
        "nodes": _list(segs.get_column("node").to_arrow().cast(pa.string()), seg_off),
        "n_pad": pa.array(seq_len - np.asarray(fill, dtype=np.int32), pa.int32()),
    }
    return pa.table(columns, schema=PACKED_SCHEMA)


def _context_fim(
    ids: np.ndarray, lengths: np.ndarray, seg_off: np.ndarray, row_base: int, seed: int, fim: ContextFim
) -> None:
    from data_pipes.code.fim_context import FimIds, fim_context

    fim_ids = FimIds(fim.prefix, fim.middle, fim.suffix, fim.eot)
    for r in range(ids.shape[0]):
        rng = np.random.default_rng([seed, row_base + r])
        doc_lens = lengths[seg_off[r] : seg_off[r + 1]].tolist()
        ids[r] = fim_context(ids[r], doc_lens, fim_ids, rng, fim.rate, fim.spm_rate)
