"""Gopher repetition rules (Rae et al. 2021, arXiv 2112.11446, table A1), column-wise over a shard.

Mirrors datatrove's `GopherRepetitionFilter`: paragraphs are the stripped text split on two or more
newlines, lines the raw text split on runs of newlines; fractions of characters divide by the length of
the whole text; top n-grams count the words joined by single spaces, duplicated n-grams the words joined
without separator. Checks run in the reference's order and the first failing one is the reason. See
`ngrams.py` for the one departure (n-gram keys)."""

from __future__ import annotations

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from data_pipes.web.ngrams import (
    dup_ngram_chars_bound,
    dup_ngram_chars_exact,
    top_ngram_chars,
    with_positions,
)
from data_pipes.web.text_stats import duplicate_stats, explode_parts, first_reason
from data_pipes.web.word_tokenizer import tokenize

Fraction = float | None
DATATROVE_REASONS = {
    "gopher_repetition_empty": "empty",
    "gopher_repetition_dup_para_frac": "dup_para_frac",
    "gopher_repetition_dup_para_char_frac": "dup_para_char_frac",
    "gopher_repetition_dup_line_frac": "dup_line_frac",
    "gopher_repetition_dup_line_char_frac": "dup_line_char_frac",
    **{f"gopher_repetition_top_{n}_gram": f"top_{n}_gram" for n in range(1, 11)},
    **{f"gopher_repetition_dup_{n}_gram": f"duplicated_{n}_n_grams" for n in range(1, 21)},
}


class GopherRepetitionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dup_line_frac: Fraction = Field(0.3, ge=0, le=1)
    dup_para_frac: Fraction = Field(0.3, ge=0, le=1)
    dup_line_char_frac: Fraction = Field(0.2, ge=0, le=1)
    dup_para_char_frac: Fraction = Field(0.2, ge=0, le=1)
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = (
        (5, 0.15),
        (6, 0.14),
        (7, 0.13),
        (8, 0.12),
        (9, 0.11),
        (10, 0.10),
    )


def _structure_checks(texts: pl.Series, p: GopherRepetitionParams) -> pl.DataFrame:
    n = len(texts)
    paras = duplicate_stats(explode_parts(texts, r"\n{2,}", strip=True), n)
    lines = duplicate_stats(explode_parts(texts, r"\n+"), n)
    size = texts.str.len_chars().fill_null(0)
    ratios = [  # (reason, threshold or None = check off, numerator, denominator)
        ("gopher_repetition_dup_para_frac", p.dup_para_frac, paras["n_dup"], paras["n_parts"]),
        ("gopher_repetition_dup_para_char_frac", p.dup_para_char_frac, paras["dup_chars"], size),
        ("gopher_repetition_dup_line_frac", p.dup_line_frac, lines["n_dup"], lines["n_parts"]),
        ("gopher_repetition_dup_line_char_frac", p.dup_line_char_frac, lines["dup_chars"], size),
    ]
    checks = [("gopher_repetition_empty", size == 0)]
    checks += [(name, num / den > frac) for name, frac, num, den in ratios if frac is not None]
    frame = pl.DataFrame({"size": size, **dict(checks)})
    return frame.select("size", reason=first_reason([(name, pl.col(name)) for name, _ in checks]))


def gopher_repetition_reasons(
    texts: pl.Series, params: GopherRepetitionParams, tokens: pl.DataFrame | None = None
) -> pl.Series:
    """Per row, the first failing Gopher repetition check (`gopher_repetition_*`), or null if kept."""
    p, n_docs = params, len(texts)
    frame = _structure_checks(texts, p)
    if tokens is None:
        tokens = tokenize(texts)
    alive = frame.with_row_index("doc").filter(pl.col("reason").is_null())["doc"]
    tok = with_positions(tokens.filter(pl.col("doc").is_in(alive.implode())))
    size = frame["size"]
    checks = [("prev", pl.col("reason").is_not_null())]
    for n, frac in p.top_n_grams:
        top = top_ngram_chars(tok, n, n_docs)["top"]
        frame = frame.with_columns((top / size > frac).alias(f"gopher_repetition_top_{n}_gram"))
        checks.append((f"gopher_repetition_top_{n}_gram", pl.col(f"gopher_repetition_top_{n}_gram")))
    reason = frame.select(r=first_reason(checks))["r"]
    reason = pl.when(reason == "prev").then(frame["reason"]).otherwise(reason)
    reason = frame.select(r=reason)["r"]

    # duplicated n-grams: a vectorised bound, then the exact greedy scan for the few docs over it
    suspects: dict[int, list[tuple[int, float]]] = {}
    for n, frac in p.dup_n_grams:
        bound = dup_ngram_chars_bound(tok, n, n_docs)["bound"]
        over = (reason.is_null() & (bound / size > frac)).arg_true().to_list()
        for doc in over:
            suspects.setdefault(doc, []).append((n, frac))
    if not suspects:
        return reason
    lists = (
        tok.filter(pl.col("doc").is_in(list(suspects)))
        .group_by("doc")
        .agg(pl.col("h").sort_by("pos"), pl.col("l").sort_by("pos"))
    )
    found = reason.to_list()
    for doc, hashes, lengths in lists.iter_rows():
        for n, frac in suspects[doc]:
            if dup_ngram_chars_exact(hashes, lengths, n) / size[doc] > frac:
                found[doc] = f"gopher_repetition_dup_{n}_gram"
                break
    return pl.Series("reason", found, dtype=pl.String)
