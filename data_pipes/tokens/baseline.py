"""The concat-and-chunk baseline that packing is measured against, and the shared fill statistics.

Concat-and-chunk (the GPT-2 / most pre-training scripts' default) lays the documents end to end in one stream
and cuts it every ``seq_len`` tokens: no padding except in the last row, but every document that crosses a cut
is split, including short ones. Computed from lengths only, on the same document copies BFD packs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from data_pipes.tokens.bfd import Items


@dataclass(frozen=True)
class FillStats:
    method: str
    seq_len: int
    rows: int
    tokens: int  # real (non-pad) tokens
    pad: int
    fill: float  # tokens / (rows * seq_len)
    docs: int  # document copies packed
    docs_split: int  # copies cut into more than one row
    short_docs_split: int  # of those, copies of length <= seq_len (measured; BFD's should be 0)

    def row(self) -> dict:
        return asdict(self)


def concat_chunk_stats(copy_len: np.ndarray, seq_len: int) -> FillStats:
    """Fill and splits of concatenating ``copy_len`` (one entry per document copy, in stream order) and
    cutting every ``seq_len`` tokens."""
    copy_len = np.asarray(copy_len, dtype=np.int64)
    copy_len = copy_len[copy_len > 0]
    end = np.cumsum(copy_len)
    start = end - copy_len
    total = int(end[-1]) if len(end) else 0
    rows = -(-total // seq_len)
    split = (start // seq_len) != ((end - 1) // seq_len)
    return FillStats(
        "concat_chunk",
        seq_len,
        rows,
        total,
        rows * seq_len - total,
        total / (rows * seq_len) if rows else 1.0,
        len(copy_len),
        int(split.sum()),
        int((split & (copy_len <= seq_len)).sum()),
    )


def bfd_stats(
    items: Items, item_order: np.ndarray, row_offsets: np.ndarray, seq_len: int, method: str = "bfd"
) -> FillStats:
    """Fill and splits of a packing (labelled ``method``), measured on where its items landed: the items of row
    ``r`` are ``item_order[row_offsets[r]:row_offsets[r + 1]]`` (what ``pack_plan`` and ``concat_chunk_plan``
    return).

    A document copy is the run of consecutive items from one ``start == 0`` item up to the next (``split_items``
    keeps a copy's chunks adjacent, the first at offset 0). A copy is split when its items lie in more than one
    row; it is a short split when, besides, the copy is no longer than ``seq_len`` (BFD never does that, a
    packer that cuts a stream does)."""
    length = np.asarray(items.length, dtype=np.int64)
    item_order = np.asarray(item_order, dtype=np.int64)
    row_offsets = np.asarray(row_offsets, dtype=np.int64)
    rows = len(row_offsets) - 1
    if len(item_order) != len(length) or (rows >= 0 and int(row_offsets[-1]) != len(length)):
        raise ValueError(
            f"the packing places {int(row_offsets[-1]) if rows >= 0 else 0} of {len(length)} items; "
            "item_order and row_offsets must cover every item once"
        )
    total = int(length.sum())
    if len(length) == 0:
        return FillStats(method, seq_len, rows, 0, rows * seq_len, 1.0 if not rows else 0.0, 0, 0, 0)
    item_row = np.empty(len(length), dtype=np.int64)
    item_row[item_order] = np.repeat(np.arange(rows, dtype=np.int64), np.diff(row_offsets))
    first = np.flatnonzero(np.asarray(items.start) == 0)
    if len(first) == 0 or first[0] != 0:
        raise ValueError("items must start with a copy's first chunk (start == 0)")
    copy_len = np.add.reduceat(length, first)
    split = np.minimum.reduceat(item_row, first) != np.maximum.reduceat(item_row, first)
    return FillStats(
        method,
        seq_len,
        rows,
        total,
        rows * seq_len - total,
        total / (rows * seq_len) if rows else 1.0,
        len(first),
        int(split.sum()),
        int((split & (copy_len <= seq_len)).sum()),
    )
