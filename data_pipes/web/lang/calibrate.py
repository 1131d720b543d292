"""Per-language thresholds by quantile matching on parallel text (the `calibrated` table's method).

For each threshold FineWeb-2 tuned per language (`table.LangFigures`), English's threshold (datatrove's
default) drops a share `q` of English documents when that check runs alone; a language's calibrated
threshold is the value that drops the same share `q` of that language's documents: its metric's quantile
`q` (a minimum) or `1 - q` (a maximum). On parallel text (the same pages in every language) this
removes threshold choices that do not fit the text's language, while measurements stay datatrove's.
This is FineWeb-2's "quantile" idea (Penedo et al. 2025, arXiv 2506.20920, section 4), computed here on
the Debian handbook's translations instead of FineWeb-2's reference corpora.

A field keeps FineWeb-2's figure when the quantile carries no information: English's threshold drops fewer
than `MIN_ENGLISH_SHARE` of the English documents (it sits in a tail the sample does not reach), the
language has fewer than `MIN_DOCS` documents, or FineWeb-2 switched the check off for the language (0).

Metrics are the filters' own (`gopher_quality.word_stats`, `gopher_repetition`'s line and n-gram
statistics, `fineweb.nonblank_lines`), per document and independent of the other checks. `page_half` is
the fixed split used to calibrate on one half and report on the other."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import polars as pl

from data_pipes.web.fineweb import FineWebParams, line_end_pattern, nonblank_lines
from data_pipes.web.gopher_quality import GopherQualityParams, word_stats
from data_pipes.web.gopher_repetition import GopherRepetitionParams
from data_pipes.web.lang.segmenters import segment
from data_pipes.web.ngrams import dup_ngram_chars_exact, top_ngram_chars, with_positions
from data_pipes.web.text_stats import duplicate_stats, explode_parts

MIN_ENGLISH_SHARE = 0.05
MIN_DOCS = 10
DECIMALS = 3

Direction = Literal["min", "max"]  # min: dropped below the threshold; max: dropped above it


@dataclass(frozen=True)
class Field:
    """One tuned threshold: its `LangFigures` field (with the n of an n-gram pair), the metric column, the
    direction and English's value (datatrove's default)."""

    name: str  # e.g. "min_alpha_words_ratio", "top_n_grams:3"
    metric: str
    direction: Direction
    english: float


def _fields() -> tuple[Field, ...]:
    q, r, f = GopherQualityParams(), GopherRepetitionParams(), FineWebParams()
    assert q.min_avg_word_length and q.max_avg_word_length and q.min_alpha_words_ratio and r.dup_line_frac
    return (
        Field("min_avg_word_length", "avg_word_length", "min", q.min_avg_word_length),
        Field("max_avg_word_length", "avg_word_length", "max", q.max_avg_word_length),
        Field("min_alpha_words_ratio", "alpha_words_ratio", "min", q.min_alpha_words_ratio),
        Field("dup_line_frac", "dup_line_frac", "max", r.dup_line_frac),
        *(Field(f"top_n_grams:{n}", f"top_{n}_gram", "max", v) for n, v in r.top_n_grams),
        *(Field(f"dup_n_grams:{n}", f"dup_{n}_gram", "max", v) for n, v in r.dup_n_grams),
        Field("line_punct_thr", "line_punct_ratio", "min", f.line_punct_thr),
        Field("new_line_ratio", "new_line_ratio", "max", f.new_line_ratio),
    )


FIELDS = _fields()


def metrics(texts: pl.Series, segmenter: str) -> pl.DataFrame:
    """Per document, the metric each tuned check compares with its threshold (null: the check cannot
    measure the document, e.g. no words)."""
    texts = texts.cast(pl.String).fill_null("")
    n_docs = len(texts)
    tokens = segment(texts, segmenter)
    words = word_stats(tokens, n_docs, ())
    size = texts.str.len_chars()
    lines = duplicate_stats(explode_parts(texts, r"\n+"), n_docs)
    fw_lines = nonblank_lines(texts)
    fw = fw_lines.group_by("doc").agg(
        n=pl.len(), punct=pl.col("part").str.contains(line_end_pattern(FineWebParams())).sum()
    )
    fw = pl.DataFrame({"doc": pl.arange(0, n_docs, dtype=pl.UInt32, eager=True)}).join(
        fw.with_columns(pl.col("doc").cast(pl.UInt32)), on="doc", how="left", maintain_order="left"
    )
    tok = with_positions(tokens)
    cols: dict[str, pl.Series] = {
        "avg_word_length": _ratio(words["ns_chars"], words["n_ns"]),
        "alpha_words_ratio": _ratio(words["n_alpha"], words["n_words"]),
        "dup_line_frac": _ratio(lines["n_dup"], lines["n_parts"]),
        "line_punct_ratio": _ratio(fw["punct"], fw["n"]),
        "new_line_ratio": _ratio(texts.str.count_matches("\n", literal=True), words["n_words"]),
    }
    for n in (2, 3, 4):
        cols[f"top_{n}_gram"] = _ratio(top_ngram_chars(tok, n, n_docs)["top"], size)
    lists = dict.fromkeys(range(n_docs), ([], []))
    for doc, hashes, lengths in (
        tok.group_by("doc").agg(pl.col("h").sort_by("pos"), pl.col("l").sort_by("pos")).iter_rows()
    ):
        lists[doc] = (hashes, lengths)
    for n in range(5, 11):
        dup = pl.Series([dup_ngram_chars_exact(h, ln, n) for h, ln in lists.values()], dtype=pl.Float64)
        cols[f"dup_{n}_gram"] = _ratio(dup, size)
    return pl.DataFrame(cols)


def _ratio(num: pl.Series, den: pl.Series) -> pl.Series:
    frame = pl.DataFrame({"a": num.cast(pl.Float64), "b": den.cast(pl.Float64)})
    return frame.select(r=pl.when(pl.col("b") > 0).then(pl.col("a") / pl.col("b")))["r"]


def dropped_share(values: pl.Series, direction: Direction, threshold: float) -> float:
    """Share of the measured documents the check alone drops at `threshold`."""
    v = values.drop_nulls()
    if not len(v):
        return 0.0
    hit = v < threshold if direction == "min" else v > threshold
    return float(hit.mean())


def matched_threshold(values: pl.Series, direction: Direction, share: float) -> float:
    """The threshold that drops `share` of these documents: the metric's quantile `share` (a minimum) or
    `1 - share` (a maximum), linear interpolation, rounded to `DECIMALS`."""
    v = values.drop_nulls()
    q = share if direction == "min" else 1 - share
    return round(float(v.quantile(q, interpolation="linear")), DECIMALS)


def page_half(key: str) -> int:
    """0 or 1: the half a page falls in, by the SHA-256 of its key (the page's path without the language
    folder, so a page and its translations fall in the same half)."""
    return hashlib.sha256(key.encode()).digest()[0] & 1


def calibrate(
    english: pl.DataFrame,
    languages: dict[str, pl.DataFrame],
    figures: Callable[[str, str], float],
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Matched thresholds per language from `metrics` frames: ({lang: {field: threshold}}, {field: English's
    dropped share}). `figures(lang, field)` is FineWeb-2's value (0 keeps the check off). Fields and
    languages the quantile cannot inform (see the module's docstring) are left out."""
    shares = {f.name: dropped_share(english[f.metric], f.direction, f.english) for f in FIELDS}
    table: dict[str, dict[str, float]] = {}
    for lang in sorted(languages):
        frame = languages[lang]
        row = {}
        for f in FIELDS:
            if shares[f.name] < MIN_ENGLISH_SHARE or not figures(lang, f.name):
                continue
            if frame[f.metric].drop_nulls().len() < MIN_DOCS:
                continue
            row[f.name] = matched_threshold(frame[f.metric], f.direction, shares[f.name])
        if row:
            table[lang] = row
    return table, shares
