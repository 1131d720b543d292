"""Sentence counting that emulates spaCy's rule-based `sentencizer` (what datatrove's English splitter runs).

A new sentence starts at a token that is not punctuation when a sentence-final token (one of `. ! ?` and
other sentence terminals, as a whole token) occurred since the previous such token. Counted column-wise on
our tokens (the language's word segmenter: CJK full stops are tokens of their own). Departure: the terminal set is Unicode's `Sentence_Terminal` (spaCy lists a few fewer
characters); a word ending in a combining mark (Tamil, Devanagari ...) gives up its full stop as spaCy's
script lists do, and so does a Georgian word (spaCy lists no Georgian letters and keeps "მოვიდა." whole, so
datatrove counts one sentence where a reader sees several)."""

from __future__ import annotations

import polars as pl

from data_pipes.web.text_stats import per_doc


def count_sentences(texts: pl.Series, segmenter: str = "en") -> pl.Series:
    """Number of sentences in each text (0 for a text without tokens), on the words of `segmenter`."""
    from data_pipes.web.lang.segmenters import segment

    tokens = segment(texts, segmenter)
    is_pc = pl.col("tok").str.contains(r"^\p{Sentence_Terminal}$")
    is_word = ~pl.col("tok").str.contains(r"^\p{P}+$") & ~is_pc
    groups = (
        tokens.with_columns(grp=is_word.cum_sum().over("doc"), pc=is_pc)
        .group_by("doc", "grp")
        .agg(pc=pl.col("pc").any())
        .with_columns(last=pl.col("grp").max().over("doc"))
    )
    counts = groups.group_by("doc").agg(
        n=1 + (pl.col("pc") & (pl.col("grp") < pl.col("last"))).sum().cast(pl.Int64)
    )
    return per_doc(counts, len(texts))["n"]
