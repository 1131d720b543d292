"""`code_quality`: heuristic flags (plus an optional classifier score) put each code file in a tier.

Three tiers, each declaring its ``epochs`` and whether it is dropped, like the web quality buckets: ``low``
(any flag: generated, minified, data file, extreme lines, low alphanumeric ratio, low classifier score;
dropped by default with reason ``code_quality_<first flag>``), ``mid`` (kept, 1 epoch) and ``high``
(up-sampled, 2 epochs). The flags are vectorised polars expressions (``data_pipes.code.quality_rules``); the
high-tier signals (documented, tested) are read with the language's parser (``data_pipes.code.quality_parse``:
``ast`` for Python, tree-sitter grammars for Rust, Go, JavaScript, C); all documented in docs/CODE_CONTRACT.md. Writes ``tier``, ``epochs``, ``quality_flags``, ``quality_signals``
and ``code_quality_score``; reports counts per tier, per language and per flag.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.code.quality_rules import FLAGS, QualityRules, classify
from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.param_error import ParamError
from tasks.registry import register

TIERS = ("low", "mid", "high")


class TierSpec(KindParams):
    epochs: float = Field(ge=0, description="how many times the tier is seen in training")
    drop: bool = Field(False, description="drop the tier's rows (reason code_quality_<flag> / _tier_<tier>)")


class Tiers(KindParams):
    low: TierSpec = TierSpec(epochs=0.0, drop=True)
    mid: TierSpec = TierSpec(epochs=1.0)
    high: TierSpec = TierSpec(epochs=2.0)


class CodeQualityParams(KindParams):
    tiers: Tiers = Field(default_factory=Tiers)
    formats: list[str] = Field(["code"], description="meta.format values checked; other rows pass as mid")
    score_column: str | None = Field(
        None, description="a classifier score column in [0, 1] from an upstream node"
    )
    min_score: float | None = Field(None, description="flag low_score below this classifier score")
    score_weight: float = Field(0.5, ge=0, le=1, description="weight of the classifier in code_quality_score")
    generated_scan_chars: int = Field(2000, gt=0, description="characters searched for generated markers")
    minified_mean_line_length: float = Field(100.0, gt=0, description="minified: mean line length above this")
    minified_dense_line_length: int = Field(
        300, gt=0, description="... or a line this long with little space"
    )
    minified_max_whitespace: float = Field(0.08, ge=0, le=1, description="whitespace ratio of 'little space'")
    data_max_kb: float = Field(
        64.0, gt=0, description="data_file: json/csv/yaml/xml/sql files larger than this"
    )
    data_max_digit_ratio: float = Field(0.4, gt=0, le=1, description="data_file: digit ratio above this")
    max_line_length: int = Field(1000, gt=0, description="long_lines: a line longer than this")
    min_alnum_ratio: float = Field(0.25, ge=0, le=1, description="low_alnum: alphanumeric ratio below this")
    high_max_line_length: int = Field(100, gt=0, description="high tier: no line longer than this")
    high_min_lines: int = Field(10, ge=0, description="high tier: at least this many lines")
    high_min_comment_ratio: float = Field(
        0.15,
        ge=0,
        le=1,
        description="'documented': share of non-whitespace characters in comments/docstrings",
    )
    high_min_quality: float = Field(
        0.75, ge=0, le=1, description="high tier: code_quality_score at least this"
    )

    def rules(self) -> QualityRules:
        names = QualityRules.__dataclass_fields__
        return QualityRules(**{k: v for k, v in self.model_dump().items() if k in names})


def _counts(frame: pl.DataFrame) -> dict:
    tiers = Counter(frame.get_column("tier").to_list())
    languages: dict[str, dict[str, int]] = {}
    for (lang, tier), n in Counter(
        zip(frame["quality_language"].to_list(), frame["tier"].to_list(), strict=True)
    ).items():
        languages.setdefault(lang, {})[tier] = n
    flags = Counter(f for fs in frame.get_column("quality_flags").to_list() for f in fs)
    return {"tiers": dict(tiers), "languages": languages, "flags": dict(flags)}


@register
class CodeQuality(DocumentMapKind):
    name: ClassVar[str] = "code_quality"
    Params = CodeQualityParams
    packages = ("polars",)
    description = (
        "code quality tiers (low dropped, mid kept, high up-sampled) from heuristics and a classifier"
    )

    def check_params(self, params: CodeQualityParams) -> list[tuple[tuple[str | int, ...], str]]:
        if params.min_score is not None and params.score_column is None:
            return [(("min_score",), "min_score needs score_column (the classifier's score column)")]
        return []

    def run_shard(self, params: CodeQualityParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        if params.score_column and params.score_column not in frame.columns:
            raise ParamError(
                "",
                ("score_column",),
                f"score_column {params.score_column!r} is not a column of {task.payload['input']!r}",
                f"name one of its columns: {', '.join(frame.columns)}",
            )
        out = classify(frame, params.rules(), params.score_column, tuple(params.formats))
        epochs = {t: getattr(params.tiers, t).epochs for t in TIERS}
        drop = [t for t in TIERS if getattr(params.tiers, t).drop]
        out = out.with_columns(epochs=pl.col("tier").replace_strict(epochs, return_dtype=pl.Float64))
        extra = _counts(out)
        out = out.drop("quality_language")
        dropping = pl.col("tier").is_in(drop)
        reason = (
            pl.when(pl.col("quality_flags").list.len() > 0)
            .then(pl.lit("code_quality_") + pl.col("quality_flags").list.first())
            .otherwise(pl.lit("code_quality_tier_") + pl.col("tier"))
        )
        kept = out.filter(~dropping)
        dropped = out.filter(dropping).with_columns(reason=reason)
        return write_shard(
            out_dir, task.index, kept, rows_in=frame.height, dropped=dropped, started=started, extra=extra
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        tiers: Counter[str] = Counter()
        flags: Counter[str] = Counter()
        languages: dict[str, Counter[str]] = {}
        for r in results:
            tiers.update(r.extra.get("tiers", {}))
            flags.update(r.extra.get("flags", {}))
            for lang, counts in r.extra.get("languages", {}).items():
                languages.setdefault(lang, Counter()).update(counts)
        params: CodeQualityParams = ctx.params  # type: ignore[assignment]
        ctx.add_report(
            "code tiers",
            table=[
                {
                    "tier": t,
                    "rows": tiers.get(t, 0),
                    "epochs": getattr(params.tiers, t).epochs,
                    "dropped": getattr(params.tiers, t).drop,
                }
                for t in TIERS
            ],
        )
        ctx.add_report(
            "code tiers per language",
            table=[
                {"language": lang, **{t: c.get(t, 0) for t in TIERS}} for lang, c in sorted(languages.items())
            ],
        )
        ctx.add_report("code quality flags", table=[{"flag": f, "rows": flags.get(f, 0)} for f in FLAGS])
