"""`heuristic_filters`: Gopher quality, Gopher repetition, C4 and FineWeb rules over whole shards.

The rules live in data_pipes/web (vectorised with polars, checked against datatrove's filters by
benchmarks/web_heuristics.py). Each filter is a params section; `null` switches it off. A document is dropped at its
first failing check, with that check's reason (e.g. `gopher_quality_min_words`, `c4_lorem_ipsum`); C4 also removes
lines (javascript notices, policy lines, lines without terminal punctuation), so kept documents carry C4's text.

Per language (`per_language`, default on): each document's `lang` (from `langid`) picks its word segmenter,
stop words and thresholds (data_pipes/web/lang: FineWeb-2's per-language figures, with `thresholds: calibrated`
(default) the thresholds matched to English's on parallel text where measurable, docs/MULTILINGUAL.md);
English runs the sections as
given (datatrove's defaults); a language without figures, or no language, falls back as `unknown_lang` says.
For a tuned language, the fields FineWeb-2 tuned (stop words, word-length bounds, alphabetic share, duplicate
lines, n-gram shares, FineWeb's punctuation and newline ratios) come from its figures whatever the sections say;
`languages: {de: {...}}` overrides them.
The node reports each language's documents, keep rate and top drop reason ("keep rate by language"), the
languages that ran on a fallback instead of tuned figures with their documents and the fallback each got
("fallback thresholds", `lang/fallbacks.py`; per_language only), and each
drop reason with its count and datatrove's name for the same check ("drop reasons"). The reasons keep the
project's `<stage>_<check>` names rather than datatrove's strings (`gopher_quality_stop_words`, datatrove's
`gopher_enough_stop_words`): why, and every pair, in data_pipes/web/reason_names.py and docs/DATATROVE.md.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.web.c4 import C4Params
from data_pipes.web.fineweb import FineWebParams
from data_pipes.web.gopher_quality import GopherQualityParams
from data_pipes.web.gopher_repetition import GopherRepetitionParams
from data_pipes.web.heuristic_chain import heuristic_chain, heuristic_chain_by_language
from data_pipes.web.lang.fallbacks import NO_LANG, fallback_markdown, fallback_rows, fallback_used
from data_pipes.web.lang.rules import LanguageOverride, Sections, UnknownLang, normalise_lang_column
from data_pipes.web.lang.table import Thresholds
from data_pipes.web.reason_names import datatrove_name
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.param_error import ParamError
from tasks.registry import register


class HeuristicParams(KindParams):
    gopher_quality: GopherQualityParams | None = Field(
        default_factory=GopherQualityParams, description="Gopher quality rules (null: off)"
    )
    gopher_repetition: GopherRepetitionParams | None = Field(
        default_factory=GopherRepetitionParams, description="Gopher repetition rules (null: off)"
    )
    c4: C4Params | None = Field(
        default_factory=C4Params, description="C4 rules, which also remove lines (null: off)"
    )
    fineweb: FineWebParams | None = Field(
        default_factory=FineWebParams, description="FineWeb rules (null: off)"
    )
    per_language: bool = Field(
        True,
        description="rules per document language (the `lang` column): tuned words, stop words and thresholds; "
        "false: the sections above apply to every document, with English words (datatrove's behaviour)",
    )
    lang_column: str = Field("lang", description="column holding each document's language code")
    unknown_lang: UnknownLang = Field(
        "script",
        description="a language without tuned figures, or none: `script` (word segmenter and word-length bounds "
        "of the text's dominant script, no stop-word rule), `english` (the sections as given), `drop` "
        "(reason heuristic_unknown_language)",
    )
    thresholds: Thresholds = Field(
        "calibrated",
        description="tuned languages' thresholds: `calibrated` (FineWeb-2's figures with the thresholds matched "
        "to English's on parallel text where measurable: docs/MULTILINGUAL.md) or `fineweb2` (as published)",
    )
    languages: dict[str, LanguageOverride] = Field(
        default_factory=dict,
        description="per-language overrides, e.g. {de: {gopher_quality: {min_stop_words: 3}}, sw: {segmenter: "
        "plain}}; a language listed here counts as known",
    )


@register
class HeuristicFilters(DocumentMapKind):
    name: ClassVar[str] = "heuristic_filters"
    Params = HeuristicParams
    packages = ("polars", "regex", "rjieba", "sudachipy", "sudachidict-core", "pythainlp")
    description = (
        "Gopher quality + repetition, C4 and FineWeb heuristics per language, each check its own drop reason"
    )

    def run_shard(self, params: HeuristicParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        kept, dropped, by_lang = self.filter_frame(frame, params)
        return write_shard(
            out_dir, task.index, kept, rows_in=frame.height, dropped=dropped, started=started,
            extra={"by_language": by_lang},
        )  # fmt: skip

    def filter_frame(
        self, frame: pl.DataFrame, params: HeuristicParams
    ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, dict]]:
        """(kept rows with C4's text, dropped rows with their original text and `reason`, per-language counts)."""
        sections = (params.gopher_quality, params.gopher_repetition, params.c4, params.fineweb)
        if params.per_language:
            if params.lang_column not in frame.columns:
                raise ParamError(
                    "",
                    ("lang_column",),
                    f"heuristic_filters: input has no column {params.lang_column!r}",
                    "run `langid` before this node, name the language column in `lang_column`, or set "
                    "`per_language: false`",
                )
            langs = frame.get_column(params.lang_column)
            texts, reasons, groups = heuristic_chain_by_language(
                frame.get_column("text"),
                langs,
                Sections(*sections),
                params.unknown_lang,
                params.languages,
                params.thresholds,
            )
        else:
            langs = pl.Series([""] * frame.height, dtype=pl.String)
            if params.lang_column in frame.columns:
                langs = frame.get_column(params.lang_column)
            texts, reasons = heuristic_chain(frame.get_column("text"), *sections)
            groups = None  # every document runs the sections as given: no fallback to report
        out = frame.with_columns(texts.alias("text"), reasons.alias("reason"))
        kept = out.filter(pl.col("reason").is_null()).drop("reason")
        # dropped rows keep their original text, so the exclusion shards show what was judged
        dropped = frame.with_columns(reasons.alias("reason")).filter(pl.col("reason").is_not_null())
        by_lang: dict[str, dict] = {}
        codes = normalise_lang_column(langs).to_list()
        keys = groups.to_list() if groups is not None else [None] * len(codes)
        for code, reason, key in zip(codes, reasons.to_list(), keys, strict=True):
            entry = by_lang.setdefault(code or NO_LANG, {"docs": 0, "kept": 0, "reasons": {}})
            entry["docs"] += 1
            if reason is None:
                entry["kept"] += 1
            else:
                entry["reasons"][reason] = entry["reasons"].get(reason, 0) + 1
            fallback = fallback_used(code, key) if key is not None else ""
            if fallback:  # the language had no tuned figures: which rules it ran on instead
                fb = entry.setdefault("fallback", {}).setdefault(fallback, {"docs": 0, "kept": 0})
                fb["docs"] += 1
                fb["kept"] += reason is None
        return kept, dropped, by_lang

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        ctx.add_report(
            "keep rate by language", table=language_table([r.extra.get("by_language", {}) for r in results])
        )
        ctx.add_report("drop reasons", table=reason_table([r.drop_reasons for r in results]))
        params: HeuristicParams = ctx.params  # type: ignore[assignment]
        if params.per_language:  # which languages had no tuned figures, and the fallback each got
            rows = fallback_rows([r.extra.get("by_language", {}) for r in results])
            text = fallback_markdown(rows, sum(r.rows_in for r in results))
            ctx.add_report("fallback thresholds", markdown=text, table=rows or None)


def language_table(parts: list[dict[str, dict]]) -> list[dict]:
    """One row per language: documents, kept, keep rate, the top drop reason and its share of the drops; most
    documents first (ties by code)."""
    docs: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for part in parts:
        for lang, entry in part.items():
            docs[lang] += entry["docs"]
            kept[lang] += entry["kept"]
            reasons.setdefault(lang, Counter()).update(entry["reasons"])
    rows = []
    for lang in sorted(docs, key=lambda k: (-docs[k], k)):
        top = sorted(reasons[lang].items(), key=lambda kv: (-kv[1], kv[0]))
        n_dropped = docs[lang] - kept[lang]
        rows.append(
            {
                "lang": lang,
                "docs": docs[lang],
                "kept": kept[lang],
                "keep_rate": round(kept[lang] / docs[lang], 4),
                "top_drop_reason": top[0][0] if top else "",
                "top_reason_share": round(top[0][1] / n_dropped, 4) if top else 0.0,
            }
        )
    return rows


def reason_table(parts: list[dict[str, int]]) -> list[dict]:
    """One row per drop reason (most rows first, ties by name): its rows, and datatrove's filter and reason for
    the same check (`reason_names`), so counts compare with a `uses: datatrove` node's."""
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return [
        {"reason": reason, "rows": n, "datatrove": datatrove_name(reason) or "(no datatrove counterpart)"}
        for reason, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
