"""Phase 1 of packing, one document shard at a time: (optional document-level FIM), tokenize, append the
end-of-text id, decide each document's appearance count, and write the node's work files.

Per input shard ``k`` the work folder ``<out_dir>/_work`` gets ``tokens-k.npy`` (int32, the documents' ids
back to back, end-of-text included) and then ``meta-k.parquet`` (one row per document: ``id``, ``source``,
``bucket`` (the ``bucket`` column, else the code ``tier``), ``epochs``, ``node``, ``weight``, ``offset``,
``n_tokens``, ``repeats``, ``reason``). The meta file is written last, so it
is the shard's completion marker: a rerun after a crash skips the shards that have one.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from data_pipes.io.shards import write_parquet_atomic
from data_pipes.tokens.bpe_train import EOS_TOKEN, load_tokenizer
from data_pipes.tokens.mix import repeat_counts
from data_pipes.tokens.tokenize import BATCH_DOCS, encode_flat, save_npy_atomic

WORK_DIR = "_work"
DROP_EMPTY = "pack_empty"
DROP_EPOCHS_ZERO = "pack_epochs_zero"


@dataclass(frozen=True)
class TokenizeJob:
    """One input shard to tokenize (picklable: it travels to a Dask worker)."""

    index: int  # position of the shard among all the node's input shards
    path: str
    node: str  # the input node the shard belongs to
    weight: float
    tokenizer: str  # tokenizer.json path
    out_dir: str
    seed: int
    append_eos: bool = True
    fim_document_rate: float = 0.0  # > 0: document-level FIM before tokenization
    spm_rate: float = 0.5
    batch_docs: int = BATCH_DOCS


def work_paths(out_dir: str, index: int) -> tuple[str, str]:
    folder = os.path.join(out_dir, WORK_DIR)
    return os.path.join(folder, f"tokens-{index:05d}.npy"), os.path.join(folder, f"meta-{index:05d}.parquet")


@functools.lru_cache(maxsize=4)
def cached_tokenizer(path: str) -> Tokenizer:
    return load_tokenizer(path)


def _read_docs(path: str) -> pl.DataFrame:
    names = set(pq.read_schema(path).names)
    missing = {"id", "text"} - names
    if missing:
        raise ValueError(f"{path}: not a document shard, missing column(s) {sorted(missing)}")
    cols = [c for c in ("id", "text", "source", "bucket", "tier", "epochs") if c in names]
    frame = pl.read_parquet(path, columns=cols)
    if "source" not in names:
        frame = frame.with_columns(pl.lit("").alias("source"))
    # the quality bucket (web) or, for code files and repository samples, the code tier
    group = "bucket" if "bucket" in names else "tier" if "tier" in names else None
    bucket = pl.col(group).cast(pl.String).fill_null("") if group else pl.lit("")
    epochs = pl.col("epochs").cast(pl.Float64).fill_null(1.0) if "epochs" in names else pl.lit(1.0)
    return frame.with_columns(bucket.alias("bucket"), epochs.alias("epochs"))


def _fim_texts(texts: list[str], ids: list[str], seed: int, rate: float, spm_rate: float) -> list[str]:
    from data_pipes.code.fim import apply_fim

    return [apply_fim(t, i, seed, rate, spm_rate).text for t, i in zip(texts, ids, strict=True)]


def tokenize_shard(job: TokenizeJob) -> dict:
    """Tokenize one input shard into its work files (skipped when they exist); returns its counts."""
    tokens_path, meta_path = work_paths(job.out_dir, job.index)
    if os.path.exists(meta_path):
        meta = pl.read_parquet(meta_path, columns=["n_tokens"])
        return {
            "index": job.index,
            "docs": meta.height,
            "tokens": int(meta["n_tokens"].sum()),
            "seconds": 0.0,
            "reused": True,
        }
    started = time.perf_counter()
    frame = _read_docs(job.path)
    ids = frame.get_column("id").to_list()
    texts = frame.get_column("text").fill_null("").to_list()
    if job.fim_document_rate > 0:
        texts = _fim_texts(texts, ids, job.seed, job.fim_document_rate, job.spm_rate)
    tok = cached_tokenizer(job.tokenizer)
    tokens, offsets = encode_flat(tok, texts, job.batch_docs)
    raw_len = np.diff(offsets)
    if job.append_eos:
        eos = tok.token_to_id(EOS_TOKEN)
        tokens = np.insert(tokens, offsets[1:], np.int32(eos))
        offsets = offsets + np.arange(len(offsets), dtype=np.int64)
    repeats = repeat_counts(ids, frame.get_column("epochs").to_numpy(), job.weight, job.node, job.seed)
    reason = np.where(raw_len == 0, DROP_EMPTY, np.where(repeats <= 0, DROP_EPOCHS_ZERO, ""))
    meta = frame.select("id", "source", "bucket", "epochs").with_columns(
        pl.lit(job.node).alias("node"),
        pl.lit(float(job.weight)).alias("weight"),
        pl.Series("offset", offsets[:-1], dtype=pl.Int64),
        pl.Series("n_tokens", np.diff(offsets), dtype=pl.Int64),
        pl.Series("repeats", np.where(reason == "", repeats, 0), dtype=pl.Int64),
        pl.Series("reason", reason, dtype=pl.String).replace("", None),
    )
    save_npy_atomic(tokens_path, tokens.astype(np.int32, copy=False))
    write_parquet_atomic(meta.to_arrow(), meta_path)
    return {
        "index": job.index,
        "docs": meta.height,
        "tokens": int(tokens.size),
        "seconds": round(time.perf_counter() - started, 6),
        "reused": False,
    }
