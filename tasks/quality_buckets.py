"""`quality_buckets`: assign each document a quality ``bucket`` and its ``epochs`` from a score column.

Buckets are listed best first, by global percentile (``method: percentile``, exact and tie-broken by a seeded
id hash) or by score threshold (``method: threshold``); the last bucket takes the rest. Every document gets
``bucket`` (string) and ``epochs`` (float) columns, so downstream mixing repeats it that many times; a bucket
with ``drop: true`` sends its documents to the exclusions with reason ``quality_bucket_<name>``. A document
without a score is quarantined (``quality_buckets_missing_score``).

Phase 1 reads only the id and score columns of every shard (``ctx.map``): the global cut-offs and the
histogram come from it. Phase 2 writes the shards. Reports: the mixture table (documents, estimated tokens,
epochs, effective tokens and shares per bucket; the token proxy is named in its header) and a score histogram
with the boundaries.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.web import quality_buckets as qb
from data_pipes.web import quality_plots as plots
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.registry import register


class BucketParams(KindParams):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="bucket name (snake_case)")
    min_percentile: float | None = Field(None, description="percentile method: lower bound, 0-100")
    min_score: float | None = Field(None, description="threshold method: lowest score of the bucket")
    epochs: float | None = Field(None, description="times the bucket is seen (default 1; 0 when dropped)")
    drop: bool = Field(False, description="drop the bucket's documents (reason quality_bucket_<name>)")

    def bucket(self, method: str) -> qb.Bucket:
        bound = self.min_percentile if method == "percentile" else self.min_score
        epochs = self.epochs if self.epochs is not None else (0.0 if self.drop else 1.0)
        return qb.Bucket(self.name, bound, float(epochs), self.drop)


class QualityBucketsParams(KindParams):
    score_column: str = Field("quality_score", description="the score to bucket by")
    method: Literal["percentile", "threshold"] = Field(
        "percentile", description="global percentiles or scores"
    )
    buckets: list[BucketParams] = Field(description="best first; the last takes the rest")
    token_estimate: qb.TokenEstimate = Field("bytes_div_4", description="token proxy: bytes_div_4 or words")
    seed: int = Field(0, description="seed of the id hash that breaks score ties")

    def resolved(self) -> list[qb.Bucket]:
        return [b.bucket(self.method) for b in self.buckets]


def _read_scores(path: str, column: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Phase 1: (scores, id hashes) of a shard's scored rows."""
    names = list(pl.read_parquet_schema(path))
    if column not in names:
        raise ValueError(
            f"{path}: no column {column!r} (columns: {names}); put a quality_score node "
            "before this one or set `score_column`"
        )
    frame = pl.read_parquet(path, columns=["id", column]).filter(
        pl.col(column).cast(pl.Float64).is_not_nan().fill_null(False)
    )
    return frame[column].cast(pl.Float64).to_numpy(), qb.id_hashes(frame["id"], seed)


class _ReadScores:
    def __init__(self, column: str, seed: int) -> None:
        self.column, self.seed = column, seed

    def __call__(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        return _read_scores(path, self.column, self.seed)


@register
class QualityBuckets(DocumentMapKind):
    name: ClassVar[str] = "quality_buckets"
    Params = QualityBucketsParams
    max_inputs: ClassVar[int | None] = 1
    packages = ("polars", "numpy")
    description = "quality buckets by global percentile or threshold, each with its epochs; mixture report"
    phases: ClassVar[tuple[str, ...]] = ("scores", "write")

    def check_params(self, params: QualityBucketsParams) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        wrong = "min_score" if params.method == "percentile" else "min_percentile"
        for i, b in enumerate(params.buckets):
            if getattr(b, wrong) is not None:
                problems.append(
                    (("buckets", i, wrong), f"`{wrong}` does not apply to method {params.method!r}")
                )
        for i, fld, msg in qb.bucket_problems(params.resolved(), params.method):
            problems.append((("buckets", i, fld), msg))
        return problems

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: QualityBucketsParams = ctx.params  # type: ignore[assignment]
        tasks = self.plan_shards(ctx)
        read = ctx.map(
            _ReadScores(params.score_column, ctx.seed + params.seed),
            [t.payload["path"] for t in tasks],
            phase="scores",
        )
        scores = np.concatenate([s for s, _ in read]) if read else np.zeros(0)
        hashes = np.concatenate([h for _, h in read]) if read else np.zeros(0, dtype=np.uint64)
        buckets = params.resolved()
        if params.method == "percentile":
            cutoffs: list[Any] = qb.percentile_cutoffs(scores, hashes, [b.bound or 0 for b in buckets[:-1]])
        else:
            cutoffs = [b.bound for b in buckets[:-1]]
        ctx.extra["scores"], ctx.extra["cutoffs"] = scores, cutoffs
        tasks = [ShardTask(t.index, {**t.payload, "cutoffs": cutoffs}, t.label) for t in tasks]
        results = ctx.run_shards(tasks)
        self.summarize(ctx, results)
        return results

    def run_shard(
        self, params: QualityBucketsParams, task: ShardTask, out_dir: str, seed: int
    ) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        col = params.score_column
        if col not in frame.columns:
            raise ValueError(f"{task.payload['path']}: no column {col!r}; columns are {frame.columns}")
        missing = frame[col].is_null() | frame[col].cast(pl.Float64).is_nan().fill_null(True)
        bad = frame.filter(missing).with_columns(
            pl.lit(f"quality_buckets_missing_score: {col} is null or NaN").alias("error")
        )
        frame = frame.filter(~missing)
        buckets = params.resolved()
        scores = frame[col].cast(pl.Float64).to_numpy()
        index = qb.assign(
            scores, qb.id_hashes(frame["id"], seed + params.seed), buckets, task.payload["cutoffs"]
        )
        names = np.array([b.name for b in buckets], dtype=object)[index]
        epochs = np.array([b.epochs for b in buckets], dtype=np.float64)[index]
        dropped_mask = np.array([b.drop for b in buckets], dtype=bool)[index]
        out = frame.with_columns(
            pl.Series("bucket", names.tolist(), dtype=pl.String),
            pl.Series("epochs", epochs, dtype=pl.Float64),
        )
        tokens = qb.token_estimate(out["text"], params.token_estimate)
        per_bucket = {
            b.name: [int((index == i).sum()), float(tokens[index == i].sum())] for i, b in enumerate(buckets)
        }
        keep = pl.Series(~dropped_mask)
        kept = out.filter(keep)
        dropped = out.filter(~keep).with_columns(("quality_bucket_" + pl.col("bucket")).alias("reason"))
        return write_shard(
            out_dir,
            task.index,
            kept,
            rows_in=frame.height + bad.height,
            dropped=dropped,
            quarantined=bad,
            started=started,
            extra={"buckets": per_bucket},
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        params: QualityBucketsParams = ctx.params  # type: ignore[assignment]
        buckets = params.resolved()
        docs = [sum(r.extra.get("buckets", {}).get(b.name, [0, 0])[0] for r in results) for b in buckets]
        tokens = [sum(r.extra.get("buckets", {}).get(b.name, [0, 0])[1] for r in results) for b in buckets]
        cutoffs = ctx.extra.get("cutoffs", [])
        seen = [c[0] if isinstance(c, tuple) else c for c in cutoffs] + [None]
        rows = qb.mixture_table(buckets, docs, tokens, seen)
        md = qb.mixture_markdown(rows, params.method, params.token_estimate, params.score_column)
        ctx.add_report("Mixture", markdown=md, table=rows)
        scores = ctx.extra.get("scores", np.zeros(0))
        counts, edges = plots.histogram(scores)
        lines = [(float(s), b.name) for s, b in zip(seen, buckets, strict=False) if s is not None]
        png = plots.histogram_png(
            counts,
            edges,
            title=f"{ctx.node_id}: {params.score_column} and bucket bounds",
            xlabel=params.score_column,
            lines=lines,
        )
        ctx.add_report("Score histogram", png=png)
