"""Best-fit-decreasing bin packing of token items into sequences (Ding et al. 2024, arXiv 2404.10830).

Documents longer than the sequence length are first cut into ``seq_len`` chunks (the remainder is an ordinary
item); the items are then sorted by length, longest first, and each goes into the open bin with the *smallest*
remaining capacity that still fits it, or into a new bin. No item is ever split again, so a document of length
<= ``seq_len`` always lands whole in one sequence.

Data structure: the bins are grouped by remaining capacity, and the set of non-empty capacities is a two-level
bitmask (64-bit words over capacities, plus one integer with a bit per non-empty word), so "smallest capacity
>= s" is a shift and a lowest-set-bit on small integers: O(1) big-integer operations per item, independent of
the number of open bins. Departures from the paper: the paper's segment tree over capacities gives the same
bins in O(log L); ties between bins of equal capacity go to the most recently opened-or-updated bin (LIFO),
and ties in the length sort keep the items' input order, so the result is a pure function of the item list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Items:
    """Packing items: a chunk ``[start, start + length)`` of document ``doc`` (a doc-table index)."""

    doc: np.ndarray  # int64
    start: np.ndarray  # int64, token offset of the chunk inside its document
    length: np.ndarray  # int64, 1..seq_len

    def __len__(self) -> int:
        return len(self.doc)


def split_items(doc_len: np.ndarray, repeats: np.ndarray, seq_len: int) -> Items:
    """Each document ``repeats[i]`` times, each copy cut into ``seq_len`` chunks plus a remainder (documents
    <= ``seq_len`` stay whole). Items keep the documents' order, copies of one document adjacent."""
    doc_len = np.asarray(doc_len, dtype=np.int64)
    repeats = np.asarray(repeats, dtype=np.int64)
    keep = (repeats > 0) & (doc_len > 0)
    docs = np.repeat(np.nonzero(keep)[0], repeats[keep])
    lens = doc_len[docs]
    n_chunks = (lens + seq_len - 1) // seq_len
    item_doc = np.repeat(docs, n_chunks)
    first = np.cumsum(n_chunks) - n_chunks  # index of each copy's first chunk
    chunk = np.arange(len(item_doc), dtype=np.int64) - np.repeat(first, n_chunks)
    start = chunk * seq_len
    length = np.minimum(seq_len, doc_len[item_doc] - start)
    return Items(item_doc, start, length)


def best_fit_decreasing(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """The bin of every item (``int64``, bins numbered in opening order). Every length must be in
    ``1..capacity``."""
    n = len(lengths)
    lengths = np.asarray(lengths, dtype=np.int64)
    if n and (int(lengths.min()) < 1 or int(lengths.max()) > capacity):
        raise ValueError(f"item lengths must be in 1..{capacity}; split longer documents first")
    order = np.argsort(-lengths, kind="stable")
    sizes = lengths[order].tolist()
    placed = [0] * n
    n_full = int(np.searchsorted(-lengths[order], -capacity, side="right"))  # full items open their own bins
    placed[:n_full] = range(n_full)
    n_bins = n_full
    words = [0] * (
        (capacity >> 6) + 1
    )  # bit (c & 63) of words[c >> 6]: some open bin has remaining capacity c
    top = 0  # bit w: words[w] is non-zero
    at: dict[int, list[int]] = {}  # remaining capacity -> open bins with it (a stack)
    for i in range(n_full, n):
        s = sizes[i]
        w = s >> 6
        m = words[w] >> (s & 63)
        if m:
            c = s + (m & -m).bit_length() - 1
        else:
            t = top >> (w + 1)
            if t:
                w = w + (t & -t).bit_length()
                x = words[w]
                c = (w << 6) + (x & -x).bit_length() - 1
            else:
                c = 0
        if c:
            stack = at[c]
            b = stack.pop()
            if not stack:
                w = c >> 6
                words[w] &= ~(1 << (c & 63))
                if not words[w]:
                    top &= ~(1 << w)
            rest = c - s
        else:
            b = n_bins
            n_bins += 1
            rest = capacity - s
        placed[i] = b
        if rest:
            stack = at.get(rest)
            if stack:
                stack.append(b)
            else:
                at[rest] = [b]
                w = rest >> 6
                if not words[w]:
                    top |= 1 << w
                words[w] |= 1 << (rest & 63)
    bins = np.empty(n, dtype=np.int64)
    bins[order] = placed
    return bins


def pack_plan(items: Items, seq_len: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """BFD, then a seeded shuffle of the bins. Returns ``(item_order, row_offsets)``: the items of output row
    ``r`` are ``item_order[row_offsets[r]:row_offsets[r + 1]]``, longest first."""
    bins = best_fit_decreasing(items.length, seq_len)
    n_bins = int(bins.max()) + 1 if len(bins) else 0
    row_of_bin = np.random.default_rng(seed).permutation(n_bins)
    rows = row_of_bin[bins] if len(bins) else bins
    # within a row: longest first, then input order (the placement order of BFD)
    item_order = np.lexsort((np.arange(len(rows)), -items.length, rows))
    counts = np.bincount(rows, minlength=n_bins)
    row_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return item_order, row_offsets
