"""Gopher quality -> Gopher repetition -> C4 -> FineWeb over one shard, dropping a row at its first failing
filter.

Equivalent to a datatrove pipeline of the four filters in that order: C4 rewrites the text of the rows it
keeps and FineWeb sees the rewritten text. Words are tokenised once for both Gopher filters; later stages
work only on the rows still alive. `heuristic_chain_by_language` runs the chain once per language group, with
that language's words and thresholds (`lang/rules.py`)."""

from __future__ import annotations

import polars as pl

from data_pipes.web.c4 import C4Params, c4_apply
from data_pipes.web.fineweb import FineWebParams, fineweb_reasons
from data_pipes.web.gopher_quality import GopherQualityParams, gopher_quality_reasons
from data_pipes.web.gopher_repetition import GopherRepetitionParams, gopher_repetition_reasons
from data_pipes.web.lang.rules import (
    UNKNOWN_DROP_REASON,
    LanguageOverride,
    Sections,
    UnknownLang,
    normalise_lang,
    normalise_lang_column,
    resolve,
)
from data_pipes.web.lang.scripts import dominant_script
from data_pipes.web.lang.segmenters import segment
from data_pipes.web.lang.table import LANGS, Thresholds


def _fill(reasons: pl.Series, alive: pl.Series, stage: pl.Series) -> pl.Series:
    """Write a stage's reasons (computed on the alive rows only) back into the full-length column."""
    return reasons.scatter(alive, stage) if len(alive) else reasons


def heuristic_chain(
    texts: pl.Series,
    gopher_q: GopherQualityParams | None = None,
    gopher_r: GopherRepetitionParams | None = None,
    c4: C4Params | None = None,
    fineweb: FineWebParams | None = None,
    segmenter: str = "en",
) -> tuple[pl.Series, pl.Series]:
    """Run the four filters in order (`None` params skip a filter) with words from the word segmenter
    `segmenter` (`lang.segmenters`; "en" is datatrove's English). Returns (texts after C4, reasons)."""
    texts = texts.cast(pl.String).fill_null("")
    reasons = pl.Series("reason", [None] * len(texts), dtype=pl.String)
    out_texts = texts.clone()
    tokens = segment(texts, segmenter) if gopher_q is not None or gopher_r is not None else None
    if gopher_q is not None:
        reasons = gopher_quality_reasons(texts, gopher_q, tokens).rename("reason")
    if gopher_r is not None:
        alive = reasons.is_null().arg_true()
        sub_tokens = tokens.join(pl.DataFrame({"doc": alive}), on="doc", how="semi", maintain_order="left")
        remap = pl.DataFrame({"doc": alive, "new": pl.arange(0, len(alive), dtype=pl.UInt32, eager=True)})
        sub_tokens = sub_tokens.join(remap, on="doc", maintain_order="left").select(doc="new", tok="tok")
        reasons = _fill(reasons, alive, gopher_repetition_reasons(texts.gather(alive), gopher_r, sub_tokens))
    if c4 is not None:
        alive = reasons.is_null().arg_true()
        new_texts, stage = c4_apply(texts.gather(alive), c4, segmenter)
        reasons = _fill(reasons, alive, stage)
        out_texts = out_texts.scatter(alive, new_texts) if len(alive) else out_texts
    if fineweb is not None:
        alive = reasons.is_null().arg_true()
        reasons = _fill(
            reasons, alive, fineweb_reasons(out_texts.gather(alive), fineweb, segmenter=segmenter)
        )
    return out_texts, reasons


def heuristic_chain_by_language(
    texts: pl.Series,
    langs: pl.Series,
    base: Sections,
    unknown_lang: UnknownLang = "script",
    overrides: dict[str, LanguageOverride] | None = None,
    thresholds: Thresholds = "calibrated",
) -> tuple[pl.Series, pl.Series, pl.Series]:
    """`heuristic_chain` with each document's language's rules (`lang.rules`): (texts after C4, reasons, the
    rule group of each row: its language, `script:<name>` for a fallback, `drop`); `thresholds` picks the
    tuned languages' table (`lang.table.figures`). Groups run in sorted order;
    each row's result depends only on its own text and group."""
    overrides = {normalise_lang(k): v for k, v in (overrides or {}).items()}
    texts = texts.cast(pl.String).fill_null("")
    codes = normalise_lang_column(langs)
    known = codes.is_in([*LANGS, *overrides, "en"])
    if unknown_lang == "script":
        # the script is needed only for the documents whose language has no rules
        unknown = (~known).arg_true()
        scripts = pl.Series([""] * len(texts), dtype=pl.String)
        if len(unknown):
            scripts = scripts.scatter(unknown, dominant_script(texts.gather(unknown)))
        fallback = "script:" + scripts.replace("", "none")
    else:
        fallback = pl.Series(["en" if unknown_lang == "english" else "drop"] * len(texts), dtype=pl.String)
    keys = pl.select(pl.when(known).then(codes).otherwise(fallback)).to_series().rename("rules")
    out_texts = texts.clone()
    reasons = pl.Series("reason", [None] * len(texts), dtype=pl.String)
    for key in sorted(set(keys.to_list())):
        rows = (keys == key).arg_true()
        rules = resolve(key, base, overrides, thresholds)
        if rules is None:
            reasons = reasons.scatter(rows, UNKNOWN_DROP_REASON)
            continue
        s = rules.sections
        sub_texts, sub_reasons = heuristic_chain(
            texts.gather(rows), s.gopher_quality, s.gopher_repetition, s.c4, s.fineweb, rules.segmenter
        )
        out_texts = out_texts.scatter(rows, sub_texts)
        reasons = reasons.scatter(rows, sub_reasons)
    return out_texts, reasons, keys
