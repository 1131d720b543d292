"""`quality_buckets`: assign each document a quality ``bucket`` and its ``epochs`` from a score column.

Buckets are listed best first, by global percentile (``method: percentile``, exact and tie-broken by a seeded
id hash) or by score threshold (``method: threshold``); the last bucket takes the rest. Every document gets
``bucket`` (string) and ``epochs`` (float) columns, so downstream mixing repeats it that many times; a bucket
with ``drop: true`` sends its documents to the exclusions with reason ``quality_bucket_<name>``. A document
without a score is quarantined (``quality_buckets_missing_score``).

Phase 1 reads only the score column of every shard (``ctx.map``, consecutive shards grouped per task) and returns a t-digest of it; the driver merges
them (``data_pipes.web.quantiles``). With ``percentiles: exact`` (the default) a second pass returns only the
(score, id hash) pairs near each cut-off, so the cut-offs are exact while the driver holds a small share of the
documents; ``percentiles: sketch`` takes the digest's quantiles directly (constant memory, rank error stated in
that module). With ``group_by`` (e.g. ``lang``) the percentiles are taken within each value of that column, so
every language gets its own cut-offs and a "Buckets per <column>" report. Phase 3 writes the shards, each also counting its scores into the histogram's global bins. Reports: the mixture table (documents, estimated tokens,
epochs, effective tokens and shares per bucket; the token proxy is named in its header) and a score histogram
with the boundaries. With ``rehydrate`` (FineWeb-2's rehydration, ``data_pipes.dedup.rehydrate``) each document's
epochs are multiplied by the weight of its duplicate-cluster size (``dup_cluster_size``, written by the dedup
kinds), and a "Rehydration" report shows documents and tokens per size range.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field

from data_pipes.dedup import rehydrate as rh
from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.web import quality_buckets as qb
from data_pipes.web import quality_plots as plots
from data_pipes.web import quantiles
from tasks._groups import groups as shard_groups
from tasks._timing import timed
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
    percentiles: Literal["exact", "sketch"] = Field(
        "exact",
        description="percentile method: exact cut-offs (t-digest brackets, then the pairs near each cut-off) or "
        "the digest's quantiles alone (one pass, constant driver memory, about 0.1 point of rank error)",
    )
    group_by: str | None = Field(
        None,
        description="percentiles within each value of this column (e.g. `lang`: every language gets its own "
        "cut-offs, so one language's score scale does not starve another); a null value is its own group",
    )
    token_estimate: qb.TokenEstimate = Field("bytes_div_4", description="token proxy: bytes_div_4 or words")
    seed: int = Field(0, description="seed of the id hash that breaks score ties")
    rehydrate: rh.RehydrateParams | None = Field(
        None,
        description="up-sample by duplicate-cluster size (FineWeb-2 rehydration): epochs x the weight of the "
        "document's `dup_cluster_size` range; `{}` or `{weights: fineweb2}` for FineWeb-2's weights",
    )

    def resolved(self) -> list[qb.Bucket]:
        return [b.bucket(self.method) for b in self.buckets]


def _read_scores(
    path: str, column: str, seed: int | None, group_by: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(scores, id hashes, groups) of a shard's scored rows; no hashes (nor id column read) when ``seed`` is
    None; groups are the ``group_by`` column's values as strings ("" for null, all "" without ``group_by``)."""
    names = list(pl.read_parquet_schema(path))
    for needed in [column] + ([group_by] if group_by else []):
        if needed not in names:
            hint = "put a quality_score node before this one or set `score_column`"
            if needed == group_by:
                hint = "put a langid node before this one or set `group_by`"
            raise ValueError(f"{path}: no column {needed!r} (columns: {names}); {hint}")
    columns = ([] if seed is None else ["id"]) + [column] + ([group_by] if group_by else [])
    frame = pl.read_parquet(path, columns=columns).filter(
        pl.col(column).cast(pl.Float64).is_not_nan().fill_null(False)
    )
    hashes = None if seed is None else qb.id_hashes(frame["id"], seed)
    groups = (
        frame[group_by].cast(pl.String).fill_null("").to_numpy().astype(str)
        if group_by
        else np.full(frame.height, "", dtype="<U1")
    )
    return frame[column].cast(pl.Float64).to_numpy(), hashes, groups


class _Summarise:
    """Phase 1: a shard's score digest per group."""

    def __init__(self, column: str, group_by: str | None) -> None:
        self.column, self.group_by = column, group_by

    def __call__(self, paths: list[str]) -> list[dict[str, quantiles.ShardSummary]]:
        return [self.one(p) for p in paths]

    def one(self, path: str) -> dict[str, quantiles.ShardSummary]:
        scores, _, groups = _read_scores(path, self.column, None, self.group_by)
        return {str(g): quantiles.summarise(scores[groups == g]) for g in np.unique(groups)}


class _Brackets:
    """Phase 2 (exact percentiles): per group, a shard's counts above, and pairs inside, each bracket."""

    def __init__(
        self, column: str, seed: int, group_by: str | None, wanted: dict[str, list[quantiles.Bracket]]
    ) -> None:
        self.column, self.seed, self.group_by, self.wanted = column, seed, group_by, wanted

    def __call__(self, paths: list[str]) -> list[dict[str, list[quantiles.BracketPart]]]:
        return [self.one(p) for p in paths]

    def one(self, path: str) -> dict[str, list[quantiles.BracketPart]]:
        scores, hashes, groups = _read_scores(path, self.column, self.seed, self.group_by)
        assert hashes is not None
        out = {}
        for g, wanted in self.wanted.items():
            mask = groups == g
            out[g] = quantiles.bracket_parts(scores[mask], hashes[mask], wanted)
        return out


def exact_cutoffs(
    ctx: RunContext,
    paths: list[str],
    column: str,
    seed: int,
    group_by: str | None,
    digests: dict[str, Any],
    sizes: dict[str, int],
    percents: list[Any],
) -> tuple[dict[str, list[Any]], int]:
    """Exact (score, hash) cut-offs per group through digest brackets (``column`` of the shards at ``paths``, ties
    broken by the id hash of ``seed``); also the most pairs held for one cut-off. ``distill_labels`` uses it too."""
    ranks = {g: [quantiles.rank(p, sizes[g]) for p in percents] for g in digests}
    cutoffs: dict[str, list[Any]] = {g: [None] * len(percents) for g in digests}
    pending = {g: [i for i, k in enumerate(ranks[g]) if k < sizes[g]] for g in digests}
    delta, held = quantiles.DELTA, 0
    while any(pending.values()):
        wanted = {
            g: quantiles.brackets(digests[g], sizes[g], [ranks[g][i] for i in todo], delta)
            for g, todo in pending.items()
            if todo
        }
        task = _Brackets(column, seed, group_by, wanted)
        per_shard = [
            r for group in ctx.map(task, shard_groups(paths), phase="cutoffs", unit="tasks") for r in group
        ]
        ctx.timings["cutoff_passes"] = ctx.timings.get("cutoff_passes", 0.0) + 1
        missed: dict[str, list[int]] = {}
        for g, todo in pending.items():
            for j, i in enumerate(todo):
                parts = [shard[g][j] for shard in per_shard]
                held = max(held, quantiles.bracket_memory(parts))
                cut = quantiles.resolve(sizes[g], wanted[g][j], parts)
                if cut is None:
                    if delta >= 1:  # the whole range was in the bracket: cannot miss
                        raise RuntimeError(
                            f"percentile cut-off at rank {ranks[g][i]} of {sizes[g]} not found"
                        )
                    missed.setdefault(g, []).append(i)
                else:
                    cutoffs[g][i] = cut
        pending, delta = missed, delta * 4
    return cutoffs, held


def _edges(summaries: list[quantiles.ShardSummary]) -> list[float]:  # all groups' summaries
    """The histogram's global bins: the score range ([0, 1] when the scores fit in it)."""
    lo = min((s.lo for s in summaries if s.n), default=0.0)
    hi = max((s.hi for s in summaries if s.n), default=1.0)
    return plots.histogram(np.array([lo, hi]))[1]


def _counts(scores: np.ndarray, edges: list[float] | None) -> list[int]:
    """A shard's scores counted into the global bins (clipped to the range, as the plot shows them)."""
    if not edges:
        return []
    return np.histogram(np.clip(scores, edges[0], edges[-1]), bins=np.asarray(edges))[0].tolist()


def _rehydrate(frame: pl.DataFrame, params: rh.RehydrateParams, path: str) -> tuple[np.ndarray, Any]:
    """Each row's repeat weight from its cluster size, and a function giving the shard's ``{range: [documents,
    tokens]}`` of the rows kept (for the Rehydration report)."""
    if params.column not in frame.columns:
        raise ValueError(
            f"{path}: no column {params.column!r} for `rehydrate` (columns: {frame.columns}); put a dedup_minhash "
            "or dedup_exact node before this one, or set `rehydrate.column`"
        )
    sizes = frame[params.column].cast(pl.Int64).fill_null(1).to_numpy()
    weights = params.weight_map()
    index = rh.range_index(sizes, weights)

    def counts(tokens: np.ndarray, dropped: np.ndarray) -> dict[str, list[float]]:
        return {
            label: [int(((index == i) & ~dropped).sum()), float(tokens[(index == i) & ~dropped].sum())]
            for i, (label, _, _) in enumerate(params.ranges())
        }

    return rh.weights_for(sizes, weights), counts


@register
class QualityBuckets(DocumentMapKind):
    name: ClassVar[str] = "quality_buckets"
    Params = QualityBucketsParams
    max_inputs: ClassVar[int | None] = 1
    packages = ("polars", "numpy")
    description = "quality buckets by global percentile or threshold, each with its epochs; mixture report"
    phases: ClassVar[tuple[str, ...]] = ("scores", "cutoffs", "write")

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
        paths = [t.payload["path"] for t in tasks]
        with timed(ctx, "scores_s"):
            summarise = _Summarise(params.score_column, params.group_by)
            per_shard = [
                r
                for group in ctx.map(summarise, shard_groups(paths), phase="scores", unit="tasks")
                for r in group
            ]
        with timed(ctx, "digests_s"):  # on the driver: merging the shards' digests
            groups = sorted({g for shard in per_shard for g in shard})
            digests = {g: quantiles.merge([s[g] for s in per_shard if g in s]) for g in groups}
            sizes = {g: sum(s[g].n for s in per_shard if g in s) for g in groups}
        summaries = [summary for shard in per_shard for summary in shard.values()]
        n = sum(sizes.values())
        buckets = params.resolved()
        percents = [b.bound or 0 for b in buckets[:-1]]
        if params.method == "threshold":
            cutoffs: dict[str, list[Any]] = {g: [b.bound for b in buckets[:-1]] for g in groups}
        elif params.percentiles == "sketch":
            cutoffs = {g: quantiles.sketch_cutoffs(digests[g], sizes[g], percents) for g in groups}
            ctx.extra["cutoff_note"] = (
                f"Percentile cut-offs from a merged t-digest ({quantiles.CENTROIDS} centroids; rank error "
                f"about {quantiles.SKETCH_RANK_ERROR:.1%} of the documents, plus documents tied at a cut-off)."
            )
        else:
            with timed(ctx, "cutoffs_s"):
                cutoffs, held = exact_cutoffs(
                    ctx,
                    paths,
                    params.score_column,
                    ctx.seed + params.seed,
                    params.group_by,
                    digests,
                    sizes,
                    percents,
                )
            ctx.extra["cutoff_note"] = (
                f"Percentile cut-offs are exact: t-digest brackets, then the (score, id hash) pairs near each "
                f"cut-off; the driver held at most {held:,} pairs for one cut-off ({held / max(n, 1):.2%} of "
                f"{n:,} scored documents)."
            )
        if params.group_by:
            ctx.extra["group_sizes"] = sizes
        ctx.extra["cutoffs"], ctx.extra["n_scored"] = cutoffs, n
        edges = _edges(summaries)
        ctx.extra["edges"] = edges
        tasks = [
            ShardTask(t.index, {**t.payload, "cutoffs": cutoffs, "edges": edges}, t.label) for t in tasks
        ]
        with timed(ctx, "write_s"):
            results = ctx.run_shards(tasks)
        with timed(ctx, "report_s"):
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
        hashes = qb.id_hashes(frame["id"], seed + params.seed)
        groups = (
            frame[params.group_by].cast(pl.String).fill_null("").to_numpy().astype(str)
            if params.group_by
            else np.full(frame.height, "", dtype="<U1")
        )
        index = np.zeros(frame.height, dtype=np.int64)
        by_group: dict[str, dict[str, int]] = {}
        for g in np.unique(groups):
            mask = groups == g
            index[mask] = qb.assign(scores[mask], hashes[mask], buckets, task.payload["cutoffs"][str(g)])
            by_group[str(g)] = {b.name: int((index[mask] == i).sum()) for i, b in enumerate(buckets)}
        names = np.array([b.name for b in buckets], dtype=object)[index]
        epochs = np.array([b.epochs for b in buckets], dtype=np.float64)[index]
        weight = np.ones(frame.height)
        if params.rehydrate is not None:
            weight, rehydration = _rehydrate(frame, params.rehydrate, task.payload["path"])
            epochs = epochs * weight
        dropped_mask = np.array([b.drop for b in buckets], dtype=bool)[index]
        out = frame.with_columns(
            pl.Series("bucket", names.tolist(), dtype=pl.String),
            pl.Series("epochs", epochs, dtype=pl.Float64),
        )
        tokens = qb.token_estimate(out["text"], params.token_estimate)
        per_bucket = {
            b.name: [
                int((index == i).sum()),
                float(tokens[index == i].sum()),
                float((tokens * weight)[index == i].sum()),
            ]
            for i, b in enumerate(buckets)
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
            extra={
                "buckets": per_bucket,
                "histogram": _counts(scores, task.payload.get("edges")),
                **({"groups": by_group} if params.group_by else {}),
                **({"rehydration": rehydration(tokens, dropped_mask)} if params.rehydrate else {}),
            },
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        params: QualityBucketsParams = ctx.params  # type: ignore[assignment]
        buckets = params.resolved()
        docs = [sum(r.extra.get("buckets", {}).get(b.name, [0, 0])[0] for r in results) for b in buckets]
        tokens = [sum(r.extra.get("buckets", {}).get(b.name, [0, 0])[1] for r in results) for b in buckets]
        by_group = ctx.extra.get("cutoffs", {})
        cutoffs = next(iter(by_group.values()), []) if len(by_group) == 1 else []
        seen = [c[0] if isinstance(c, tuple) else c for c in cutoffs] + [None]
        seen += [None] * (len(buckets) - len(seen))
        rows = qb.mixture_table(buckets, docs, tokens, seen)
        if params.rehydrate is not None:  # effective tokens: tokens x each document's weight x epochs
            weighted = [
                sum(r.extra.get("buckets", {}).get(b.name, [0, 0, 0])[2] for r in results) for b in buckets
            ]
            effective = [w * row["epochs"] for w, row in zip(weighted, rows, strict=True)]
            for row, e in zip(rows, effective, strict=True):
                row["effective_tokens"] = int(round(e))
                row["mixture_share"] = round(e / (sum(effective) or 1.0), 4)
        md = qb.mixture_markdown(rows, params.method, params.token_estimate, params.score_column)
        if params.rehydrate is not None:
            md += (
                f"\nRehydrated: epochs and effective tokens include the weight of each document's "
                f"`{params.rehydrate.column}` range (see the Rehydration report).\n"
            )
            self._rehydration_report(ctx, params.rehydrate, results)
        if ctx.extra.get("cutoff_note"):
            md += "\n" + ctx.extra["cutoff_note"] + "\n"
        ctx.add_report("Mixture", markdown=md, table=rows)
        if params.group_by:
            self._group_report(ctx, params, buckets, results, by_group)
        edges = ctx.extra.get("edges") or plots.histogram(np.zeros(0))[1]
        counts = np.zeros(len(edges) - 1, dtype=np.int64)
        for r in results:
            if r.extra.get("histogram"):
                counts += np.asarray(r.extra["histogram"], dtype=np.int64)
        lines = [(float(s), b.name) for s, b in zip(seen, buckets, strict=False) if s is not None]
        png = plots.histogram_png(
            counts.tolist(),
            edges,
            title=f"{ctx.node_id}: {params.score_column} and bucket bounds",
            xlabel=params.score_column,
            lines=lines,
        )
        ctx.add_report("Score histogram", png=png)

    @staticmethod
    def _rehydration_report(ctx: RunContext, params: rh.RehydrateParams, results: list[ShardResult]) -> None:
        """Documents, tokens and effective tokens (x the weight; before bucket epochs) per cluster-size range."""
        rows = []
        for label, _, w in params.ranges():
            docs, tokens = (
                sum(r.extra.get("rehydration", {}).get(label, [0, 0.0])[k] for r in results) for k in (0, 1)
            )
            rows.append(
                {"cluster_size": label, "weight": w, "documents": int(docs), "tokens": int(round(tokens)),
                 "weighted_tokens": int(round(tokens * w))}
            )  # fmt: skip
        lines = [
            f"Kept documents by `{params.column}` range and their repeat weight (multiplied into `epochs`; "
            "dropped buckets not counted). Weighted tokens = tokens x weight, before the bucket's epochs.",
            "",
            "| cluster size | weight | documents | tokens | weighted tokens |",
            "|---|---:|---:|---:|---:|",
            *(
                f"| {r['cluster_size']} | {r['weight']:g} | {r['documents']:,} | {r['tokens']:,} | "
                f"{r['weighted_tokens']:,} |"
                for r in rows
            ),
        ]
        ctx.add_report("Rehydration", markdown="\n".join(lines) + "\n", table=rows)

    @staticmethod
    def _group_report(
        ctx: RunContext,
        params: QualityBucketsParams,
        buckets: list[qb.Bucket],
        results: list[ShardResult],
        cutoffs: dict[str, list[Any]],
    ) -> None:
        """Documents per bucket and the score bounds within each group (e.g. each language)."""
        rows = []
        for g in sorted(cutoffs):
            docs = {
                b.name: sum(r.extra.get("groups", {}).get(g, {}).get(b.name, 0) for r in results)
                for b in buckets
            }
            bounds = [c[0] if isinstance(c, tuple) else c for c in cutoffs[g]]
            row: dict[str, Any] = {params.group_by or "group": g or "(none)", "documents": sum(docs.values())}
            for i, b in enumerate(buckets):
                row[b.name] = docs[b.name]
                if i < len(bounds):
                    row[f"{b.name}_min_score"] = None if bounds[i] is None else round(float(bounds[i]), 6)
            rows.append(row)
        lines = [
            f"Buckets by {params.method} within each `{params.group_by}` value (each has its own cut-offs).",
            "",
            f"| {params.group_by} | documents | " + " | ".join(b.name for b in buckets) + " |",
            "|---|---:|" + "---:|" * len(buckets),
        ]
        for r in rows:
            lines.append(
                f"| {r[params.group_by or 'group']} | {r['documents']:,} | "
                + " | ".join(f"{r[b.name]:,}" for b in buckets)
                + " |"
            )
        ctx.add_report(f"Buckets per {params.group_by}", markdown="\n".join(lines) + "\n", table=rows)
