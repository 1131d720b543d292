"""The concat-and-chunk baseline that packing is measured against, and the shared fill statistics.

Concat-and-chunk (the GPT-2 / most pre-training scripts' default) lays the documents end to end in one stream
and cuts it every ``seq_len`` tokens: no padding except in the last row, but every document that crosses a cut
is split, including short ones. Computed from lengths only, on the same document copies BFD packs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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
    short_docs_split: int  # of those, copies of length <= seq_len (BFD: always 0)

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


def bfd_stats(copy_len: np.ndarray, item_len: np.ndarray, rows: int, seq_len: int) -> FillStats:
    """Fill and splits of a BFD packing: ``copy_len`` per document copy, ``item_len`` per packed item."""
    copy_len = np.asarray(copy_len, dtype=np.int64)
    copy_len = copy_len[copy_len > 0]
    total = int(np.asarray(item_len, dtype=np.int64).sum())
    split = copy_len > seq_len
    return FillStats(
        "bfd",
        seq_len,
        rows,
        total,
        rows * seq_len - total,
        total / (rows * seq_len) if rows else 1.0,
        len(copy_len),
        int(split.sum()),
        0,
    )
