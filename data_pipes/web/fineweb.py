"""FineWeb quality rules (Penedo et al. 2024, arXiv 2406.17557), column-wise over a shard.

Mirrors datatrove's `FineWebQualityFilter`: lines are the text split on "\\n" with blank lines removed
(not stripped); checks in order: share of lines ending in terminal punctuation, share of short lines,
characters in repeated lines over the text's non-newline characters, and newlines per word. Departure:
terminal punctuation is Unicode's `Sentence_Terminal` plus three Khmer signs (see `text_stats.py`); custom
`stop_chars` are matched literally."""

from __future__ import annotations

import polars as pl
import regex
from pydantic import BaseModel, ConfigDict, Field

from data_pipes.web.text_stats import PY_SPACE, TERMINAL_CLASS, duplicate_stats, first_reason, per_doc

DATATROVE_REASONS = {
    "fineweb_empty": "empty",
    "fineweb_line_punct_ratio": "line_punct_ratio",
    "fineweb_short_line_ratio": "short_line_ratio",
    "fineweb_char_dup_ratio": "char_dup_ratio",
    "fineweb_list_ratio": "list_ratio",
}


class FineWebParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_punct_thr: float = Field(0.12, ge=0, le=1)
    line_punct_exclude_zero: bool = False
    stop_chars: tuple[str, ...] | None = None  # None: all terminal punctuation
    short_line_thr: float = Field(0.67, ge=0, le=1)
    short_line_length: int = Field(30, ge=0)
    char_duplicates_ratio: float = Field(0.01, ge=0, le=1)
    new_line_ratio: float = Field(0.3, ge=0)


def line_end_pattern(p: FineWebParams) -> str:
    """Regex of a line that ends in one of the params' stop characters (terminal punctuation by default)."""
    if p.stop_chars is None:
        return f"[{TERMINAL_CLASS}]$"
    return f"(?:{'|'.join(map(regex.escape, p.stop_chars))})$"


def nonblank_lines(texts: pl.Series) -> pl.DataFrame:
    """(doc, part): each text split on "\\n", lines holding only whitespace removed (not stripped)."""
    return (
        pl.DataFrame({"text": texts})
        .with_row_index("doc")
        .select("doc", part=pl.col("text").str.split("\n"))
        .explode("part")
        .drop_nulls("part")
        .filter(pl.col("part").str.contains(f"[^{PY_SPACE}]"))
    )


def fineweb_reasons(
    texts: pl.Series, params: FineWebParams, tokens: pl.DataFrame | None = None, segmenter: str = "en"
) -> pl.Series:
    """Per row, the first failing FineWeb check (`fineweb_*`), or null when the row is kept; words (for the
    newline ratio) come from `tokens`, else from the word segmenter `segmenter`."""
    p, n_docs = params, len(texts)
    stop = line_end_pattern(p)
    lines = nonblank_lines(texts)
    line_stats = per_doc(
        lines.group_by("doc").agg(
            n=pl.len(),
            punct=pl.col("part").str.contains(stop).sum(),
            short=(pl.col("part").str.len_chars() <= p.short_line_length).sum(),
        ),
        n_docs,
    )
    dups = duplicate_stats(lines, n_docs)
    if tokens is None:
        from data_pipes.web.lang.segmenters import segment

        tokens = segment(texts, segmenter)
    words = per_doc(tokens.group_by("doc").agg(n_words=pl.len()), n_docs)["n_words"]
    n = line_stats["n"]
    punct_ratio = line_stats["punct"] / n
    frame = pl.DataFrame(
        {
            "fineweb_empty": n == 0,
            "fineweb_line_punct_ratio": (punct_ratio < p.line_punct_thr)
            & ~((punct_ratio == 0) & p.line_punct_exclude_zero),
            "fineweb_short_line_ratio": line_stats["short"] / n > p.short_line_thr,
            "fineweb_char_dup_ratio": dups["dup_chars"]
            / texts.str.replace_all("\n", "", literal=True).str.len_chars()
            > p.char_duplicates_ratio,
            "fineweb_list_ratio": texts.str.count_matches("\n", literal=True) / words > p.new_line_ratio,
        }
    )
    return frame.select(reason=first_reason([(c, pl.col(c)) for c in frame.columns]))["reason"]
