"""`distill_labels`: label documents with a stronger "teacher" scorer, for a fastText student to learn from.

The teacher (default ``math_density``; ``edu_rubric`` for educational value in any language; any registered or
dotted-path scorer, see ``data_pipes.web.scorers``)
scores every document once (phase 1, the scores kept beside the output so a resumed run does not score again).
The top ``positive_fraction`` by global rank gets ``positive_label`` and the bottom ``negative_fraction`` gets
``negative_label`` in ``label_column``; ranks are exact, ties broken by a seeded id hash. The rest is dropped
as ``distill_labels_unlabelled``. A ``quality_train`` node with ``label_column`` then trains the student,
which scores a whole crawl at fastText speed where the teacher could not.

Report: labelled counts and score cut-offs, and a histogram of the teacher's scores with the cut-offs.

The driver holds no score per document: phase 1 returns each shard's t-digest and score range
(``data_pipes.web.quantiles``), a ``cutoffs`` pass returns only the (score, id hash) pairs near each cut-off (as
``quality_buckets``' exact percentiles: the same cut-offs as a full sort), and each output shard counts its
scores into the histogram's bins.
"""

from __future__ import annotations

import os
import time
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from data_pipes.io.shards import ShardResult, write_parquet_atomic, write_shard
from data_pipes.web import quality_buckets as qb
from data_pipes.web import quality_plots as plots
from data_pipes.web import quantiles
from data_pipes.web import score_summary as ss
from data_pipes.web.scorers import build_scorer, check_scorer, scorer_signature
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.quality_buckets import exact_cutoffs
from tasks.registry import register


class DistillLabelsParams(KindParams):
    teacher: str = Field("math_density", description="registered scorer or module:function")
    teacher_options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the teacher"
    )
    positive_fraction: float = Field(0.2, gt=0, lt=1, description="top share labelled positive")
    negative_fraction: float = Field(0.5, gt=0, lt=1, description="bottom share labelled negative")
    positive_label: str = Field("hq", pattern=r"^[A-Za-z0-9_\-]+$", description="label of the top share")
    negative_label: str = Field("lq", pattern=r"^[A-Za-z0-9_\-]+$", description="label of the bottom share")
    label_column: str = Field("label", description="column the labels go into")
    score_column: str = Field("teacher_score", description="column the teacher's score goes into")
    batch_size: int = Field(512, ge=1, description="documents per teacher call")
    seed: int = Field(0, description="seed of the id hash that breaks score ties")

    @model_validator(mode="after")
    def _fractions(self) -> DistillLabelsParams:
        if self.positive_fraction + self.negative_fraction > 1:
            raise ValueError(
                f"positive_fraction + negative_fraction = "
                f"{self.positive_fraction + self.negative_fraction} must be at most 1"
            )
        if self.positive_label == self.negative_label:
            raise ValueError("positive_label and negative_label must differ")
        return self


def _teacher_path(out_dir: str, index: int) -> str:
    return os.path.join(out_dir, "_teacher", f"part-{index:05d}.parquet")


class _Teach:
    """Phase 1: score one shard with the teacher (or reuse its stored scores); return their t-digest."""

    def __init__(self, params: DistillLabelsParams, out_dir: str, seed: int) -> None:
        self.params, self.out_dir, self.seed = params, out_dir, seed

    def __call__(self, item: tuple[int, str]) -> quantiles.ShardSummary:
        index, path = item
        target = _teacher_path(self.out_dir, index)
        if not os.path.exists(target):
            frame = pl.read_parquet(path, columns=["id", "text"])
            scorer = build_scorer(self.params.teacher, self.params.teacher_options)
            texts, size = frame["text"].to_list(), self.params.batch_size
            scores = [s for lo in range(0, len(texts), size) for s in scorer(texts[lo : lo + size])]
            write_parquet_atomic(
                pl.DataFrame({"id": frame["id"], "score": pl.Series(scores, dtype=pl.Float64)}).to_arrow(),
                target,
            )
        scores = pl.read_parquet(target, columns=["score"])["score"].drop_nans().to_numpy()
        return quantiles.summarise(scores)


@register
class DistillLabels(DocumentMapKind):
    name: ClassVar[str] = "distill_labels"
    Params = DistillLabelsParams
    packages = ("polars", "numpy")
    description = "label the top/bottom shares by a teacher scorer, to train a fastText student on"
    phases: ClassVar[tuple[str, ...]] = ("score", "cutoffs", "write")

    def check_params(self, params: DistillLabelsParams) -> list[tuple[tuple[str | int, ...], str]]:
        problem = check_scorer(params.teacher)
        return [(("teacher",), problem)] if problem else []

    def signature(self, params: DistillLabelsParams) -> str:
        return scorer_signature(params.teacher)

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: DistillLabelsParams = ctx.params  # type: ignore[assignment]
        tasks = self.plan_shards(ctx)
        summaries = ctx.map(
            _Teach(params, ctx.out_dir, ctx.seed),
            [(t.index, t.payload["path"]) for t in tasks],
            phase="score",
        )
        n = sum(s.n for s in summaries)
        top = Fraction(100) - Fraction(str(params.positive_fraction)) * 100
        bottom = Fraction(str(params.negative_fraction)) * 100
        teacher = [_teacher_path(ctx.out_dir, t.index) for t in tasks]
        seed = ctx.seed + params.seed
        digest = {"": quantiles.merge(summaries)}
        found, _ = exact_cutoffs(ctx, teacher, "score", seed, None, digest, {"": n}, [top, bottom])
        pos_cut, neg_cut = found[""]
        lo = min((s.lo for s in summaries if s.n), default=0.0)
        hi = max((s.hi for s in summaries if s.n), default=1.0)
        edges = plots.histogram(np.array([lo, hi]) if n else np.zeros(0))[1]
        ctx.extra.update(cutoffs=(pos_cut, neg_cut), edges=edges)
        tasks = [
            ShardTask(t.index, {**t.payload, "cutoffs": (pos_cut, neg_cut), "edges": edges}, t.label)
            for t in tasks
        ]
        results = ctx.run_shards(tasks)
        self.summarize(ctx, results)
        return results

    def run_shard(self, params: DistillLabelsParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        stored = pl.read_parquet(_teacher_path(out_dir, task.index))
        if stored["id"].to_list() != frame["id"].to_list():
            raise RuntimeError(
                f"teacher scores of shard {task.index} do not match its input; remove {out_dir}"
            )
        scores = stored["score"].to_numpy()
        hashes = qb.id_hashes(frame["id"], seed + params.seed)
        pos_cut, neg_cut = task.payload["cutoffs"]
        positive = qb.at_or_above(scores, hashes, pos_cut)
        negative = ~qb.at_or_above(scores, hashes, neg_cut) & ~positive
        labels = np.where(positive, params.positive_label, np.where(negative, params.negative_label, None))
        out = frame.with_columns(
            pl.Series(params.score_column, scores, dtype=pl.Float64),
            pl.Series(params.label_column, labels.tolist(), dtype=pl.String),
        )
        keep = pl.Series(positive | negative)
        kept = out.filter(keep)
        dropped = out.filter(~keep).with_columns(pl.lit("distill_labels_unlabelled").alias("reason"))
        extra = {
            "positive": int(positive.sum()),
            "negative": int(negative.sum()),
            "histogram": ss.bin_counts(scores[~np.isnan(scores)], task.payload["edges"]),
        }
        return write_shard(
            out_dir, task.index, kept, rows_in=frame.height, dropped=dropped, started=started, extra=extra
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        params: DistillLabelsParams = ctx.params  # type: ignore[assignment]
        pos_cut, neg_cut = ctx.extra.get("cutoffs", (None, None))
        row = {
            "teacher": params.teacher,
            "documents": sum(r.rows_in for r in results),
            params.positive_label: sum(r.extra.get("positive", 0) for r in results),
            params.negative_label: sum(r.extra.get("negative", 0) for r in results),
            "unlabelled": sum(r.dropped for r in results),
            "positive_min_score": None if pos_cut is None else round(pos_cut[0], 6),
            "negative_below_score": None if neg_cut is None else round(neg_cut[0], 6),
        }
        lines = [
            (c[0], name)
            for c, name in ((pos_cut, params.positive_label), (neg_cut, params.negative_label))
            if c is not None
        ]
        edges = ctx.extra.get("edges") or plots.histogram(np.zeros(0))[1]
        counts = np.zeros(len(edges) - 1, dtype=np.int64)
        for r in results:  # each shard counted its scores into the bins: no score reaches the driver
            counts += np.asarray(r.extra.get("histogram") or np.zeros(len(counts)), dtype=np.int64)
        png = plots.histogram_png(
            counts.tolist(),
            edges,
            title=f"{ctx.node_id}: teacher {params.teacher}",
            xlabel=params.score_column,
            lines=lines,
        )
        ctx.add_report("Distilled labels", table=[row], png=png)
