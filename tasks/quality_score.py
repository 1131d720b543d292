"""`quality_score`: score every document with a pluggable scorer (default: a fastText quality classifier).

Inputs: document nodes, plus at most one ``quality_train`` node (a checkpoint) whose models the ``fasttext``
scorer uses; instead of that input, ``model_path`` may name a local fastText ``.bin``. The score (P(positive
label) for fastText) goes into ``score_column`` (default ``quality_score``); nothing is dropped. Texts are
scored in batches of ``batch_size`` with newlines replaced by spaces and the training node's preprocessing
(``text_chars``, lowercase). ``per_language`` sends each document to the model of its ``lang`` (from
``langid``) when the training node made one, else to the fallback model. Other scorers: ``math_density`` or
any dotted-path function (``data_pipes.web.scorers``). A row whose score comes back NaN or infinite is
quarantined (``quality_score_non_finite``, naming the scorer and the value); the rest of the shard goes on, and a
node whose every row was so quarantined fails as all-quarantined.

Report: a histogram of the scores (PNG) and a summary table, from mergeable per-shard parts
(``data_pipes.web.score_summary``): each shard task returns its count, sum, min, max and count at or above 0.5;
then worker tasks over groups of shards count the score column into the histogram's bins and merge t-digests, so
the driver never holds the scores. Counts, mean, min, max and the share are exact; p10, p50 and p90 come from the
merged digest (within 0.1% of the documents in rank, plus one document).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, ClassVar

import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.web import quality_plots as plots
from data_pipes.web import quantiles
from data_pipes.web import score_summary as ss
from data_pipes.web.scorers import NonFiniteScore, build_scorer, check_scorer, scorer_signature
from tasks.base import DataType, KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.param_error import ParamError
from tasks.registry import register


class QualityScoreParams(KindParams):
    scorer: str = Field(
        "fasttext", description="a registered scorer (fasttext, math_density) or module:function"
    )
    scorer_options: dict[str, Any] = Field(default_factory=dict, description="keyword options of the scorer")
    model_path: str | None = Field(
        None, description="a local fastText .bin, instead of a quality_train input"
    )
    positive_label: str | None = Field(
        None, description="label to score (default: the training node's, or hq)"
    )
    score_column: str = Field("quality_score", pattern=r"^[a-z][a-z0-9_]*$", description="output column")
    text_chars: int | None = Field(
        None, ge=0, description="characters scored (default: as trained, or 10000)"
    )
    lowercase: bool | None = Field(None, description="lowercase before scoring (default: as trained)")
    per_language: bool = Field(False, description="use the per-language models of the quality_train input")
    batch_size: int = Field(2048, ge=1, description="documents scored per batch")


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@register
class QualityScore(DocumentMapKind):
    name: ClassVar[str] = "quality_score"
    Params = QualityScoreParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS, DataType.MODEL)
    path_params: ClassVar[tuple[str, ...]] = ("model_path",)
    packages = ("fasttext-numpy2-wheel", "fasttext-predict", "polars", "numpy")
    description = "score documents (fastText P(positive), math_density, or your function) into a score column"
    phases: ClassVar[tuple[str, ...]] = ("shards", "summary")

    def check_params(self, params: QualityScoreParams) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        problem = check_scorer(params.scorer)
        if problem:
            problems.append((("scorer",), problem))
        if params.model_path and not os.path.exists(params.model_path):
            problems.append(
                (("model_path",), f"{params.model_path!r} does not exist; give a local fastText .bin")
            )
        if params.model_path and params.scorer != "fasttext":
            problems.append(
                (("model_path",), f"model_path is for the fasttext scorer, not {params.scorer!r}")
            )
        return problems

    def signature(self, params: QualityScoreParams) -> str:
        parts = [scorer_signature(params.scorer)]
        if params.model_path and os.path.exists(params.model_path):
            parts.append(
                _file_digest(params.model_path)
            )  # the model is data: its bytes enter the fingerprint
        return "|".join(parts)

    def _options(self, ctx: RunContext) -> dict[str, Any]:
        """The scorer's options: the user's, plus the models and preprocessing of a quality_train input."""
        params: QualityScoreParams = ctx.params  # type: ignore[assignment]
        options = dict(params.scorer_options)
        checkpoints = [i for i in ctx.inputs if i.data_type == DataType.MODEL]
        if len(checkpoints) > 1:
            raise ValueError(
                f"{ctx.node_id}: at most one quality_train input; got {[c.name for c in checkpoints]}"
            )
        if params.scorer != "fasttext":
            if checkpoints:
                raise ParamError(
                    ctx.node_id,
                    ("scorer",),
                    f"a model input ({checkpoints[0].name!r}) needs `scorer: fasttext`, not {params.scorer!r}",
                    "set `scorer: fasttext` or remove the quality_train input",
                )
            return options
        trained: dict[str, Any] = {}
        if checkpoints:
            if params.model_path:
                raise ParamError(
                    ctx.node_id,
                    ("model_path",),
                    "a quality_train input and `model_path` are both given",
                    "give either a quality_train input or `model_path`, not both",
                )
            ckpt = checkpoints[0]
            rows = pl.concat([pl.read_parquet(p) for p in ckpt.shards]).to_dicts()
            models = {r["lang"]: os.path.join(ckpt.path, r["model_path"]) for r in rows}
            if not params.per_language:
                models = {"": models[""]}
            trained = rows[0]
            options["models"] = models
        elif params.model_path:
            options["model_path"] = params.model_path
        else:
            raise ValueError(
                f"{ctx.node_id}: the fasttext scorer needs a model: add a quality_train node to "
                "`inputs` or set `model_path` to a local fastText .bin"
            )
        options["positive_label"] = params.positive_label or trained.get("positive_label", "hq")
        chars = params.text_chars if params.text_chars is not None else trained.get("text_chars", 10_000)
        options["text_chars"] = chars
        options["lowercase"] = (
            params.lowercase if params.lowercase is not None else trained.get("lowercase", False)
        )
        return options

    def run(self, ctx: RunContext) -> list[ShardResult]:
        options = self._options(ctx)
        build_scorer(ctx.params.scorer, options)  # type: ignore[attr-defined]  # fail here, not on every worker
        tasks = []
        for inp in ctx.inputs:
            if inp.data_type != DataType.DOCUMENTS:
                continue
            for path in inp.shards:
                tasks.append(
                    ShardTask(len(tasks), {"path": path, "options": options}, label=f"{inp.name}:{path}")
                )
        if not tasks:
            raise ValueError(f"{ctx.node_id}: no documents input; add the node whose documents to score")
        results = ctx.run_shards(tasks, phase="shards")
        self.summarize(ctx, results)
        return results

    def run_shard(self, params: QualityScoreParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        scorer = build_scorer(params.scorer, task.payload["options"])
        texts = frame["text"].to_list()
        langs = (
            frame["lang"].fill_null("").to_list() if params.per_language and "lang" in frame.columns else None
        )
        scores: list[float] = []
        errors: list[str | None] = [None] * len(texts)  # a non-finite score quarantines its row
        for lo in range(0, len(texts), params.batch_size):
            hi = lo + params.batch_size
            try:
                scores.extend(scorer(texts[lo:hi], None if langs is None else langs[lo:hi]))
            except NonFiniteScore as exc:
                scores.extend(exc.scores)
                for i in exc.bad:
                    errors[lo + i] = exc.row_error(i)
        out = frame.with_columns(pl.Series(params.score_column, scores, dtype=pl.Float64))
        failed = pl.Series(errors, dtype=pl.String)
        bad = out.filter(failed.is_not_null()).with_columns(error=failed.drop_nulls())
        out = out.filter(failed.is_null())
        stats = ss.shard_stats(out[params.score_column].fill_null(float("nan")).to_numpy())
        return write_shard(
            out_dir,
            task.index,
            out,
            rows_in=frame.height,
            quarantined=bad,
            started=started,
            extra={"score_stats": stats},
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        """The histogram and summary table from the shards' statistics and a worker pass over groups of shards
        (their score column only): the driver holds a few numbers per shard and at most
        ``score_summary.MAX_GROUPS`` digests, never a score per document."""
        params: QualityScoreParams = ctx.params  # type: ignore[assignment]
        column = params.score_column
        done = [r for r in results if r.kept]
        stats = ss.merge_stats([r.extra["score_stats"] for r in done])
        edges = ss.edges(stats)
        parts = ctx.map(ss.GroupSummary(column, edges), ss.groups([r.path for r in done]), phase="summary")
        counts, digest = ss.merge_groups(parts)
        png = plots.histogram_png(counts, edges, title=f"{ctx.node_id}: {column}", xlabel=column)
        n = stats["n"]
        summary: dict[str, Any] = {"scorer": params.scorer, "documents": n + stats["nan"]}
        if stats["nan"]:
            summary["no_score"] = stats["nan"]
        if n:
            p10, p50, p90 = ss.percentiles(digest, n, [0.1, 0.5, 0.9])
            summary.update(
                mean=round(stats["sum"] / n, 4),
                min=round(stats["min"], 4),
                p10=round(p10, 4),
                p50=round(p50, 4),
                p90=round(p90, 4),
                max=round(stats["max"], 4),
                share_ge_0_5=round(stats["ge_0_5"] / n, 4),
            )
        note = (
            f"p10, p50 and p90 from a merged t-digest ({quantiles.CENTROIDS} centroids): within "
            f"{quantiles.SKETCH_RANK_ERROR:.1%} of the documents in rank, plus one document; the counts, "
            "mean, min, max and share are exact."
        )
        ctx.add_report("Score distribution", png=png, table=[summary], markdown=note)
