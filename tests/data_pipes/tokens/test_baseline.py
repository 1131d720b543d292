"""The fill statistics measure where items landed: split copies are counted, not assumed.

`bfd_stats` is checked on a real BFD packing (no short copy split, every long copy split) and on a packing
that cuts one token stream every ``seq_len`` tokens, built here as items, where short copies are split; on
the latter it must agree with `concat_chunk_stats`, which computes the same figures from lengths alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from data_pipes.tokens.baseline import bfd_stats, concat_chunk_stats
from data_pipes.tokens.bfd import Items, pack_plan, split_items


def _stream_packing(copy_len: list[int], seq_len: int) -> tuple[Items, np.ndarray, np.ndarray]:
    """Concat-and-chunk as a packing: each copy is cut at every row boundary it crosses."""
    doc, start, length, row = [], [], [], []
    pos = 0
    for d, n in enumerate(copy_len):
        off = 0
        while off < n:
            take = min(n - off, seq_len - pos % seq_len)
            doc.append(d), start.append(off), length.append(take), row.append(pos // seq_len)
            off += take
            pos += take
    items = Items(np.array(doc), np.array(start), np.array(length))
    rows = np.array(row)
    order = np.argsort(rows, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(rows))])
    return items, order, offsets


def test_bfd_packing_splits_only_long_copies() -> None:
    seq_len = 100
    lens = np.array([30, 250, 70, 100, 99, 1, 40, 201, 60, 55])
    repeats = np.array([1, 2, 1, 1, 3, 1, 0, 1, 2, 1])
    items = split_items(lens, repeats, seq_len)
    order, offsets = pack_plan(items, seq_len, seed=3)
    st = bfd_stats(items, order, offsets, seq_len)
    copies = np.repeat(lens, repeats)
    assert st.docs == len(copies) == 13
    assert st.tokens == int(copies.sum()) and st.rows == len(offsets) - 1
    assert st.pad == st.rows * seq_len - st.tokens
    assert st.docs_split == 3  # the two copies of 250 and the one of 201: no other copy is longer than 100
    assert st.short_docs_split == 0


def test_short_splits_are_measured_when_a_packing_makes_them() -> None:
    seq_len = 100
    lens = [30, 80, 50, 250, 10, 95, 5]
    items, order, offsets = _stream_packing(lens, seq_len)
    st = bfd_stats(items, order, offsets, seq_len)
    # by hand: stream 0-30 | 30-110 (cut at 100) | 110-160 | 160-410 (cut) | 410-420 | 420-515 (cut) | 515-520
    assert st.docs_split == 3 and st.short_docs_split == 2
    base = concat_chunk_stats(np.array(lens), seq_len)
    assert (st.rows, st.tokens, st.pad, st.docs, st.docs_split, st.short_docs_split) == (
        base.rows,
        base.tokens,
        base.pad,
        base.docs,
        base.docs_split,
        base.short_docs_split,
    )


def test_stream_packing_agrees_with_concat_chunk_on_random_lengths() -> None:
    rng = np.random.default_rng(0)
    lens = rng.integers(1, 700, size=500).tolist()
    items, order, offsets = _stream_packing(lens, 256)
    st, base = bfd_stats(items, order, offsets, 256), concat_chunk_stats(np.array(lens), 256)
    assert st.short_docs_split == base.short_docs_split > 0
    assert st.docs_split == base.docs_split and st.rows == base.rows
    bfd_items = split_items(np.array(lens), np.ones(len(lens), dtype=np.int64), 256)
    bfd = bfd_stats(bfd_items, *pack_plan(bfd_items, 256, seed=0), 256)
    assert bfd.short_docs_split == 0 and bfd.docs_split == sum(n > 256 for n in lens)


def test_a_packing_that_drops_items_is_refused() -> None:
    items = split_items(np.array([10, 20]), np.array([1, 1]), 64)
    with pytest.raises(ValueError, match="cover every item"):
        bfd_stats(items, np.array([0]), np.array([0, 1]), 64)
