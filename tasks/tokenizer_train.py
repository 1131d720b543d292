"""`tokenizer_train`: a byte-level BPE trained on a seeded sample of the node's documents.

The sample is the documents with the smallest seeded hash of their id (a bottom-k sample: it depends on the
documents alone, never on sharding), up to ``sample_docs`` documents and ``text_chars`` characters, each
document cut to ``max_doc_chars``; the next ``heldout_docs`` in hash order measure compression. When the corpus
is no larger than the sample, ``heldout_share`` of it (at most ``heldout_docs``, the largest hashes) is held
out of the sample anyway; a held-out split smaller than asked is logged and reported as a warning. Texts are fed
to the trainer in hash order, which makes the result byte-identical across runs (see
``data_pipes.tokens.bpe_train``).

Output: the Hugging Face folder ``tokenizer/`` (``AutoTokenizer.from_pretrained`` loads it) beside a one-row
shard describing it (``tokenizer_dir``, ``sha256`` of tokenizer.json, vocabulary size, sample size, held-out
bytes per token); the row's hash is the node's content hash, so consumers are invalidated exactly when the
tokenizer changes. The sample's pass returns only the documents whose hash falls under a bound chosen from the
corpus's size (``key_bound``), so the driver holds about ``sample_docs + heldout_docs`` candidate rows whatever
the corpus, and picks the same documents as a sort of every key would. Accounting: ``in = kept`` = the documents the node read: the training sample and the
held-out documents that measure compression (the documents outside both are not read, so they are not counted),
``out = 1`` (the artifact row).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.tokens.bpe_train import TOKENIZER_FILE, bytes_per_token, save_hf_folder, train_bpe
from tasks.base import DataType, InputRef, Kind, KindParams, RunContext, ShardTask
from tasks.doc_map import hash_unit
from tasks.registry import register

TOKENIZER_DIR = "tokenizer"
log = logging.getLogger(__name__)


class TokenizerTrainParams(KindParams):
    vocab_size: int = Field(
        32768, ge=300, description="including the special tokens and the 256 byte symbols"
    )
    sample_docs: int = Field(50_000, ge=1, description="at most this many documents in the training sample")
    text_chars: int = Field(200_000_000, ge=1, description="at most this many characters in the sample")
    max_doc_chars: int = Field(100_000, ge=1, description="each sampled document cut to this many characters")
    heldout_docs: int = Field(200, ge=0, description="documents after the sample, for the compression figure")
    heldout_share: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="when no document is left after the sample, hold out this share of the corpus (0: none)",
    )
    min_frequency: int = Field(2, ge=1, description="a pair must occur this often to be merged")
    seed: int = Field(0, description="added to the node seed")


class _Keys:
    """Picklable pass 1: per input shard, the (hash key, row, chars) of its lowest-keyed documents, only those
    keyed below ``bound``."""

    def __init__(self, seed: int, k: int, bound: float = 1.0) -> None:
        self.seed, self.k, self.bound = seed, k, bound

    def __call__(self, path: str) -> pl.DataFrame:
        frame = pl.read_parquet(path, columns=["id", "text"])
        return (
            frame.select(
                hash_unit(frame.get_column("id"), self.seed).alias("key"),
                pl.col("id"),
                pl.int_range(pl.len(), dtype=pl.Int64).alias("row"),
                pl.col("text").str.len_chars().cast(pl.Int64).alias("chars"),
            )
            .filter(pl.col("key") < self.bound)
            .sort("key", "id")
            .head(self.k)
            .with_columns(pl.lit(path).alias("path"))
        )


def key_bound(documents: int, k: int) -> float:
    """A hash-key bound that about ``k + 6 sqrt(k) + 16`` of ``documents`` uniform keys fall under (1.0 when the
    corpus is no larger than that), so the driver gathers a few more than ``k`` candidate rows, not one per
    document; fewer than ``k`` under it happens with negligible probability, and then the bound doubles."""
    wanted = k + 6.0 * math.sqrt(k) + 16.0
    return 1.0 if documents <= wanted else wanted / documents


def lowest_keys(ctx: RunContext, paths: list[str], documents: int, seed: int, k: int) -> pl.DataFrame | None:
    """Every input row among the ``k`` lowest (key, id) of the corpus, plus a few more, from a pass over the
    shards: the same ``k`` rows as sorting all the keys, while the driver holds about ``k`` rows."""
    bound = key_bound(documents, k)
    while True:
        parts = ctx.map(_Keys(seed, k, bound), paths, phase="sample")
        keys = pl.concat(parts, how="vertical_relaxed") if parts else None
        if bound >= 1.0 or (keys is not None and keys.height >= k):
            return keys
        bound = min(1.0, 2.0 * bound)


def tokenizer_json(inp: InputRef) -> str:
    """The tokenizer.json of a tokenizer node's output."""
    row = pl.read_parquet(inp.shards[0], columns=["tokenizer_dir"]) if inp.shards else None
    folder = row.item(0, 0) if row is not None and row.height else TOKENIZER_DIR
    return os.path.join(inp.path, folder, TOKENIZER_FILE)


@register
class TokenizerTrain(Kind):
    name: ClassVar[str] = "tokenizer_train"
    Params = TokenizerTrainParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS,)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    output_type: ClassVar[DataType] = DataType.TOKENIZER
    packages = ("tokenizers", "polars")
    description = "byte-level BPE (HF tokenizers) on a seeded sample of documents, saved as a HF folder"
    phases: ClassVar[tuple[str, ...]] = ("sample", "train")

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: TokenizerTrainParams = ctx.params  # type: ignore[assignment]
        seed = ctx.seed + params.seed
        paths = [p for inp in ctx.inputs for p in inp.shards]
        k = params.sample_docs + params.heldout_docs
        documents = sum(sum(inp.rows) for inp in ctx.inputs)
        keys = lowest_keys(ctx, paths, documents, seed, k) if paths else None
        if keys is None or keys.height == 0:
            raise ValueError(f"node {ctx.node_id!r}: its inputs hold no documents to train a tokenizer on")
        keys = keys.sort("key", "id").with_columns(pl.col("chars").clip(upper_bound=params.max_doc_chars))
        budget = (keys.get_column("chars").cum_sum() - keys.get_column("chars")) < params.text_chars
        n_sample = min(params.sample_docs, int(budget.sum()))
        note = None
        if params.heldout_docs and keys.height - n_sample < params.heldout_docs:
            left = keys.height - n_sample
            if left == 0 and keys.height >= 2 and params.heldout_share > 0:
                # the corpus is no larger than the sample: hold out a share of it anyway (the largest keys)
                n_held = min(params.heldout_docs, max(1, round(keys.height * params.heldout_share)))
                n_sample = keys.height - n_held
                note = (
                    f"the corpus ({keys.height} documents) is no larger than sample_docs ({params.sample_docs}): "
                    f"{n_held} documents ({params.heldout_share:.0%}, at most heldout_docs) were held out of the "
                    f"training sample to measure compression"
                )
            else:
                note = (
                    f"only {left} documents are left after the training sample for the held-out split "
                    f"(heldout_docs {params.heldout_docs}); bytes per token is measured on those"
                    + (" and is 0.0: nothing to measure" if left == 0 else "")
                )
        sample, heldout = keys.head(n_sample), keys.slice(n_sample, params.heldout_docs)
        payload = {
            "sample": sample.select("path", "row").rows(),
            "heldout": heldout.select("path", "row").rows(),
        }
        results = ctx.run_shards([ShardTask(0, payload, label="train")])
        self.summarize(ctx, results)
        if note:
            log.warning("node %r: %s", ctx.node_id, note)
            ctx.add_report("Tokenizer held-out split", markdown=f"**Warning**: {note}.")
        return results

    def run_shard(
        self, params: TokenizerTrainParams, task: ShardTask, out_dir: str, seed: int
    ) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        sample = _read_texts(task.payload["sample"], params.max_doc_chars)
        heldout = _read_texts(task.payload["heldout"], params.max_doc_chars)
        tok = train_bpe(sample, params.vocab_size, min_frequency=params.min_frequency, length=len(sample))
        path = save_hf_folder(tok, os.path.join(out_dir, TOKENIZER_DIR))
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
        stats = {
            "tokenizer_dir": TOKENIZER_DIR,
            "sha256": digest,
            "vocab_size": tok.get_vocab_size(),
            "sample_docs": len(sample),
            "sample_chars": sum(map(len, sample)),
            "heldout_docs": len(heldout),
            "heldout_bytes_per_token": round(bytes_per_token(tok, heldout), 4),
        }
        return write_shard(
            out_dir,
            0,
            pl.DataFrame([stats]),
            rows_in=len(sample) + len(heldout),  # both read: the sample trains, the held-out ones measure
            kept_in=len(sample) + len(heldout),
            started=started,
            extra=stats,
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        if results:
            ctx.add_report("Tokenizer", table=[results[0].extra])


def _read_texts(picks: list[tuple[str, int]], max_chars: int) -> list[str]:
    """Texts of ``(shard path, row)`` picks, in the picks' order, each cut to ``max_chars``."""
    by_path: dict[str, list[int]] = {}
    for path, row in picks:
        by_path.setdefault(path, []).append(row)
    found: dict[tuple[str, int], str] = {}
    for path, rows in by_path.items():
        texts = pl.read_parquet(path, columns=["text"]).get_column("text")[rows].fill_null("").to_list()
        found.update(((path, r), t[:max_chars]) for r, t in zip(rows, texts, strict=True))
    return [found[(p, r)] for p, r in picks]
