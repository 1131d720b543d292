"""Concat-and-chunk packing (the GPT-2 / most pre-training scripts' default) as a real packing method of ``pack``.

The document copies are put in a seeded order, laid end to end in one stream and cut every ``seq_len`` tokens:
every row is full except the last, and every copy that crosses a cut is split, short ones included (the second
piece of a split copy starts mid-document, without its beginning in context). Each row still records its
segments (``doc_lens``, ``doc_starts``), so training masks attention at document boundaries exactly as it does
for best-fit-decreasing rows; what differs from BFD is only where the documents are cut. It exists to measure
BFD against (``benchmarks/loss_sanity.py``); ``pack``'s default stays ``bfd``.
"""

from __future__ import annotations

import numpy as np

from data_pipes.tokens.bfd import Items


def concat_chunk_plan(
    doc_len: np.ndarray, repeats: np.ndarray, seq_len: int, seed: int | list[int]
) -> tuple[Items, np.ndarray, np.ndarray]:
    """The items (document pieces) of a concat-and-chunk packing and where they land, in the form ``pack_plan``
    returns: the items of row ``r`` are ``item_order[row_offsets[r]:row_offsets[r + 1]]``, in stream order. Each
    document appears ``repeats[i]`` times; copies are shuffled with ``seed`` before they are concatenated, so the
    repeats of one document are spread over the stream."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    doc_len = np.asarray(doc_len, dtype=np.int64)
    repeats = np.asarray(repeats, dtype=np.int64)
    keep = (repeats > 0) & (doc_len > 0)
    copies = np.repeat(np.nonzero(keep)[0], repeats[keep])
    copies = copies[np.random.default_rng(seed).permutation(len(copies))]
    lens = doc_len[copies]
    end = np.cumsum(lens)
    begin = end - lens
    first_row, last_row = begin // seq_len, (end - 1) // seq_len
    n_pieces = last_row - first_row + 1
    item_copy = np.repeat(np.arange(len(copies), dtype=np.int64), n_pieces)
    piece = np.arange(len(item_copy), dtype=np.int64) - np.repeat(np.cumsum(n_pieces) - n_pieces, n_pieces)
    row = first_row[item_copy] + piece
    lo = np.maximum(begin[item_copy], row * seq_len)
    hi = np.minimum(end[item_copy], (row + 1) * seq_len)
    items = Items(copies[item_copy], lo - begin[item_copy], hi - lo)
    n_rows = int(last_row[-1]) + 1 if len(copies) else 0
    row_offsets = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n_rows))]).astype(np.int64)
    return items, np.arange(len(item_copy), dtype=np.int64), row_offsets
