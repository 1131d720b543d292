"""Gopher quality rules (Rae et al. 2021, arXiv 2112.11446, appendix A1.1), column-wise over a shard.

Check order, thresholds and word definition follow datatrove's `GopherQualityFilter` so the first failing
reason per document matches it. Words come from `word_tokenizer.tokenize` (a spaCy-English emulation), or
the language's segmenter when the chain runs per language (`lang/`). As
in datatrove, the word count and average word length use only words that contain a non-punctuation
character, while the hash / ellipsis / alphabetic ratios divide by all words. A threshold of `None` (or 0)
disables its check."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from data_pipes.web.text_stats import PY_SPACE, SYMBOL_ONLY, first_reason, per_doc, splitlines_normalised
from data_pipes.web.word_tokenizer import tokenize

DEFAULT_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
# our reason -> datatrove's reason string (for agreement reports)
DATATROVE_REASONS = {
    "gopher_quality_min_words": "gopher_short_doc",
    "gopher_quality_max_words": "gopher_long_doc",
    "gopher_quality_min_avg_word_length": "gopher_below_avg_threshold",
    "gopher_quality_max_avg_word_length": "gopher_above_avg_threshold",
    "gopher_quality_hash_ratio": "gopher_too_many_hashes",
    "gopher_quality_ellipsis_ratio": "gopher_too_many_ellipsis",
    "gopher_quality_bullet_lines": "gopher_too_many_bullets",
    "gopher_quality_ellipsis_lines": "gopher_too_many_end_ellipsis",
    "gopher_quality_alpha_words": "gopher_below_alpha_threshold",
    "gopher_quality_stop_words": "gopher_enough_stop_words",
}


class GopherQualityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_doc_words: int | None = Field(50, ge=0)
    max_doc_words: int | None = Field(100_000, ge=0)
    min_avg_word_length: float | None = Field(3, ge=0)
    max_avg_word_length: float | None = Field(10, ge=0)
    max_symbol_word_ratio: float | None = Field(0.1, ge=0)
    max_bullet_lines_ratio: float | None = Field(0.9, ge=0, le=1)
    max_ellipsis_lines_ratio: float | None = Field(0.3, ge=0, le=1)
    min_alpha_words_ratio: float | None = Field(0.8, ge=0, le=1)
    min_stop_words: int | None = Field(2, ge=0)
    stop_words: tuple[str, ...] = DEFAULT_STOP_WORDS


def word_stats(tokens: pl.DataFrame, n_docs: int, stop_words: tuple[str, ...]) -> pl.DataFrame:
    """Per doc: words, non-symbol words and their length, words with a letter, distinct stop words."""
    is_word = ~pl.col("tok").str.contains(SYMBOL_ONLY)
    agg = tokens.group_by("doc").agg(
        n_words=pl.len(),
        n_ns=is_word.sum(),
        ns_chars=pl.when(is_word).then(pl.col("tok").str.len_chars()).otherwise(0).sum(),
        n_alpha=pl.col("tok").str.contains(r"\p{L}").sum(),
        n_stop=pl.col("tok").filter(pl.col("tok").is_in(list(stop_words))).n_unique(),
    )
    return per_doc(agg, n_docs)


def _line_counts(texts: pl.Series) -> pl.DataFrame:
    text = splitlines_normalised(pl.col("text"))
    inline_space = f"[{PY_SPACE}&&[^\\n]]"
    return pl.DataFrame({"text": texts}).select(
        n_hash=pl.col("text").str.count_matches("#", literal=True),
        n_ellipsis=pl.col("text").str.count_matches("...", literal=True)
        + pl.col("text").str.count_matches("…", literal=True),
        n_lines=text.str.count_matches("\n", literal=True)
        + (text.str.len_chars().gt(0) & ~text.str.ends_with("\n")).cast(pl.UInt32),
        n_bullet=text.str.count_matches(f"(?m)^{inline_space}*[•\\-]"),
        n_end_ellipsis=text.str.count_matches(f"(?m)(?:\\.\\.\\.|…){inline_space}*$"),
    )


def gopher_quality_reasons(
    texts: pl.Series, params: GopherQualityParams, tokens: pl.DataFrame | None = None
) -> pl.Series:
    """Per row, the first failing Gopher quality check (`gopher_quality_*`), or null when the row is kept."""
    p = params
    if tokens is None:
        tokens = tokenize(texts)
    stats = pl.concat([word_stats(tokens, len(texts), p.stop_words), _line_counts(texts)], how="horizontal")
    n_words, n_ns = pl.col("n_words"), pl.col("n_ns")
    avg = pl.when(n_ns > 0).then(pl.col("ns_chars") / n_ns)
    per_word = pl.when(n_words > 0)
    per_line = pl.when(pl.col("n_lines") > 0)
    checks = [
        ("gopher_quality_min_words", p.min_doc_words, n_ns < p.min_doc_words),
        ("gopher_quality_max_words", p.max_doc_words, n_ns > p.max_doc_words),
        ("gopher_quality_min_avg_word_length", p.min_avg_word_length, avg < p.min_avg_word_length),
        ("gopher_quality_max_avg_word_length", p.max_avg_word_length, avg > p.max_avg_word_length),
        ("gopher_quality_hash_ratio", p.max_symbol_word_ratio,
         per_word.then(pl.col("n_hash") / n_words > p.max_symbol_word_ratio)),
        ("gopher_quality_ellipsis_ratio", p.max_symbol_word_ratio,
         per_word.then(pl.col("n_ellipsis") / n_words > p.max_symbol_word_ratio)),
        ("gopher_quality_bullet_lines", p.max_bullet_lines_ratio,
         per_line.then(pl.col("n_bullet") / pl.col("n_lines") > p.max_bullet_lines_ratio)),
        ("gopher_quality_ellipsis_lines", p.max_ellipsis_lines_ratio,
         per_line.then(pl.col("n_end_ellipsis") / pl.col("n_lines") > p.max_ellipsis_lines_ratio)),
        ("gopher_quality_alpha_words", p.min_alpha_words_ratio,
         per_word.then(pl.col("n_alpha") / n_words < p.min_alpha_words_ratio)),
        ("gopher_quality_stop_words", p.min_stop_words, pl.col("n_stop") < p.min_stop_words),
    ]  # fmt: skip
    # datatrove skips a check whose threshold is falsy (None or 0)
    active = [(name, cond) for name, threshold, cond in checks if threshold]
    return stats.select(reason=first_reason(active))["reason"]
