"""Quality buckets: split documents by a score into named buckets, each seen a given number of epochs.

GLM-4.5 (arXiv 2508.06471) buckets web documents by quality score and up-samples the top bucket (3.2 epochs)
while the lowest is dropped. Buckets are given top first, each with a lower bound: a global percentile or a
score threshold; the last bucket takes the rest.

Percentiles are exact and deterministic: documents are ranked by ``(score, hash(id))``, the hash breaking
ties, so a bucket of "the top 10%" holds exactly ``n - ceil(0.9 n)`` documents even when many share a score,
and the same document lands in the same bucket however the corpus is sharded. ``percentile_cutoffs`` ranks
pairs held in memory (16 bytes each); the ``quality_buckets`` kind calls it only on the pairs near each cut-off,
found through merged per-shard t-digests (``data_pipes.web.quantiles``), so the driver does not hold the corpus.

Tokens are an estimate (no tokenizer is downloaded at run time): ``bytes_div_4`` (UTF-8 bytes / 4, close to
BPE tokenizers on English prose) or ``words`` (whitespace-separated words).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import polars as pl

TokenEstimate = Literal["bytes_div_4", "words"]
TOKEN_PROXY_TEXT = {
    "bytes_div_4": "UTF-8 bytes / 4 (a tokenizer-free estimate, close to BPE on English prose)",
    "words": "whitespace-separated words (a tokenizer-free estimate; BPE gives roughly 1.3x more)",
}
Cutoff = (
    tuple[float, int] | None
)  # (score, id hash) of the first document of a bucket; None: the bucket is empty


@dataclass(frozen=True)
class Bucket:
    name: str
    bound: float | None  # min_percentile or min_score; None for the last bucket (the rest)
    epochs: float
    drop: bool


def bucket_problems(buckets: Sequence[Bucket], method: str) -> list[tuple[int, str, str]]:
    """``[(bucket index, field, message)]``: unique names, bounds strictly decreasing, the last bucket
    covering the rest, epochs >= 0, dropped buckets with 0 epochs."""
    problems: list[tuple[int, str, str]] = []
    field = "min_percentile" if method == "percentile" else "min_score"
    if not buckets:
        return [(0, "name", "give at least one bucket")]
    seen: set[str] = set()
    previous: float | None = None
    for i, b in enumerate(buckets):
        if b.name in seen:
            problems.append((i, "name", f"bucket name {b.name!r} is used twice; names must be unique"))
        seen.add(b.name)
        if b.epochs < 0:
            problems.append((i, "epochs", f"epochs {b.epochs} must be >= 0"))
        if b.drop and b.epochs > 0:
            problems.append(
                (i, "epochs", f"bucket {b.name!r} is dropped, so its epochs must be 0 (got {b.epochs})")
            )
        last = i == len(buckets) - 1
        if b.bound is None:
            if not last:
                problems.append((i, field, f"only the last bucket may omit `{field}`; set it for {b.name!r}"))
            continue
        if method == "percentile" and not 0 <= b.bound <= 100:
            problems.append((i, field, f"{field} {b.bound} must be between 0 and 100"))
        if previous is not None and b.bound >= previous:
            problems.append(
                (
                    i,
                    field,
                    f"{field} {b.bound} must be below the previous bucket's {previous} "
                    "(list buckets from best to worst)",
                )
            )
        if last and method == "percentile" and b.bound != 0:
            problems.append(
                (
                    i,
                    field,
                    f"the last bucket must cover the rest: min_percentile 0 or omit it (got {b.bound})",
                )
            )
        if last and method == "threshold":
            problems.append((i, field, "the last bucket takes every remaining score: omit its `min_score`"))
        previous = b.bound
    return problems


def id_hashes(ids: pl.Series, seed: int) -> np.ndarray:
    """A seeded uint64 hash per id: the deterministic tie-breaker of the ranking."""
    return ids.hash(seed=seed).to_numpy()


def percentile_cutoffs(
    scores: np.ndarray, hashes: np.ndarray, percentiles: Sequence[float | Fraction]
) -> list[Cutoff]:
    """For each percentile p, the (score, hash) of the document at rank ``ceil(p n / 100)`` in ascending
    (score, hash) order: a document is at or above percentile p when its pair is >= that one. Exact rational
    arithmetic, so 60% of 100 is rank 60, not 61."""
    n = len(scores)
    order = np.lexsort((hashes, scores))
    out: list[Cutoff] = []
    for p in percentiles:
        k = math.ceil((p if isinstance(p, Fraction) else Fraction(str(p))) * n / 100)
        if k >= n:
            out.append(None)
        else:
            j = order[k]
            out.append((float(scores[j]), int(hashes[j])))
    return out


def at_or_above(scores: np.ndarray, hashes: np.ndarray, cutoff: Cutoff) -> np.ndarray:
    """Boolean mask of documents whose (score, hash) is >= ``cutoff``."""
    if cutoff is None:
        return np.zeros(len(scores), dtype=bool)
    score, h = cutoff
    return (scores > score) | ((scores == score) & (hashes >= np.uint64(h)))


def assign(
    scores: np.ndarray,
    hashes: np.ndarray | None,
    buckets: Sequence[Bucket],
    cutoffs: Sequence[Cutoff | float],
) -> np.ndarray:
    """The bucket index of each document: the first (best) bucket whose lower bound it reaches; the last
    bucket takes the rest. ``cutoffs`` are (score, hash) pairs (percentiles) or plain scores (thresholds)."""
    index = np.full(len(scores), len(buckets) - 1, dtype=np.int64)
    unassigned = np.ones(len(scores), dtype=bool)
    for i, cut in enumerate(cutoffs[: len(buckets) - 1]):
        if isinstance(cut, tuple) or cut is None:
            assert hashes is not None
            hit = at_or_above(scores, hashes, cut)
        else:
            hit = scores >= cut
        hit &= unassigned
        index[hit] = i
        unassigned &= ~hit
    return index


def token_estimate(texts: pl.Series, method: TokenEstimate) -> np.ndarray:
    """Estimated tokens per text (float64)."""
    texts = texts.fill_null("")
    if method == "words":
        return texts.str.count_matches(r"\S+").cast(pl.Float64).to_numpy()
    return (texts.str.len_bytes().cast(pl.Float64) / 4.0).to_numpy()


def mixture_table(
    buckets: Sequence[Bucket], docs: Sequence[int], tokens: Sequence[float], cutoffs: Sequence[Any]
) -> list[dict[str, Any]]:
    """One row per bucket: documents, tokens, epochs, effective tokens (tokens x epochs) and shares."""
    total_docs = sum(docs) or 1
    total_tokens = sum(tokens) or 1.0
    effective = [t * b.epochs if not b.drop else 0.0 for b, t in zip(buckets, tokens, strict=True)]
    total_eff = sum(effective) or 1.0
    rows = []
    for b, d, t, e, cut in zip(buckets, docs, tokens, effective, cutoffs, strict=True):
        rows.append(
            {
                "bucket": b.name,
                "lower_bound": "rest" if b.bound is None else b.bound,
                "score_bound": None if cut is None else round(cut, 6),
                "documents": int(d),
                "doc_share": round(d / total_docs, 4),
                "tokens": int(round(t)),
                "token_share": round(t / total_tokens, 4),
                "epochs": 0.0 if b.drop else b.epochs,
                "effective_tokens": int(round(e)),
                "mixture_share": round(e / total_eff, 4),
                "dropped": b.drop,
            }
        )
    return rows


def mixture_markdown(
    rows: Sequence[dict[str, Any]], method: str, proxy: TokenEstimate, score_column: str
) -> str:
    """The mixture table as markdown, headed by the token proxy in use."""
    lines = [
        f"**Tokens are estimated as {TOKEN_PROXY_TEXT[proxy]}** (`token_estimate: {proxy}`).",
        f"Buckets by {method} of `{score_column}`; effective tokens = tokens x epochs; "
        "mixture share = share of effective tokens.",
        "",
        "| bucket | bound | documents | doc share | tokens | epochs | effective tokens | mixture share |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        epochs = "dropped" if r["dropped"] else f"{r['epochs']:g}"
        lines.append(
            f"| {r['bucket']} | {r['lower_bound']} | {r['documents']:,} | {r['doc_share']:.1%} | "
            f"{r['tokens']:,} | {epochs} | {r['effective_tokens']:,} | {r['mixture_share']:.1%} |"
        )
    return "\n".join(lines) + "\n"
