"""Tokenization of document shards into flat token arrays (phase 1 of packing).

A shard's documents become two arrays: ``tokens`` (int32, every document's ids back to back) and ``offsets``
(int64, ``len(docs) + 1`` entries; document ``i`` is ``tokens[offsets[i]:offsets[i+1]]``). Flat arrays keep
the per-document Python cost to one list conversion, and saved as ``.npy`` they memory-map, so every packing
shard can read any document's tokens without loading the node's whole token set.

``encode_batch_fast`` (no offsets or alignment tracking) runs in large batches on tokenizers' own thread pool.
Special tokens written into the text upstream (FIM sentinels, chat roles) are recognised as single ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np
from tokenizers import Tokenizer

from data_pipes.io.atomic import atomic_path

BATCH_DOCS = 4096


def encode_flat(
    tok: Tokenizer, texts: Sequence[str], batch_docs: int = BATCH_DOCS
) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens int32, offsets int64)`` of ``texts``; no special tokens are added around documents."""
    lengths = np.zeros(len(texts) + 1, dtype=np.int64)
    parts: list[np.ndarray] = []
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    for start in range(0, len(texts), batch_docs):
        batch = list(texts[start : start + batch_docs])
        ids = [e.ids for e in encode(batch, add_special_tokens=False)]
        lengths[start + 1 : start + 1 + len(ids)] = [len(x) for x in ids]
        if ids:
            n = int(lengths[start + 1 : start + 1 + len(ids)].sum())
            parts.append(np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=n))
    offsets = np.cumsum(lengths)
    tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
    return tokens, offsets


def save_npy_atomic(path: str, array: np.ndarray) -> None:
    """``np.save`` to a temporary name, then rename: a reader sees the whole array or none."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
