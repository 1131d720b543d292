"""C4 rules (Raffel et al. 2020, JMLR 21-140, section 2.2), column-wise: drop documents and remove lines.

Mirrors datatrove's `C4QualityFilter`. With `split_paragraph=True` (the default, as in the paper) the units are
lines from `str.splitlines()`; with `False` they are sentences (`sentence_split.split_sentences`, datatrove's
English sentence splitter emulated), each counting as one sentence, and the kept ones are joined by spaces.
Each unit is stripped, then, in order: a word longer than `max_word_length` drops the line; wiki citations are
removed; a line not ending in terminal punctuation (or ending in "...") is dropped; so is one with fewer
than `min_words_per_line` words; "lorem ipsum" drops the document; "javascript" drops the line; "{" drops
the document; policy/cookie phrases drop the line. A document with fewer than `min_num_sentences`
sentences in its kept lines is dropped; otherwise its text becomes the kept lines joined by newlines (by
spaces for sentences). The bad-words list of C4 is not applied (datatrove keeps it in a separate filter).
Departure: in line mode sentences are counted by `sentences.count_sentences` (a spaCy sentencizer emulation),
only for documents with fewer kept lines than `min_num_sentences` (each kept line holds at least one
sentence). Sentence mode splits in Python, document by document: slower than line mode.
Per language (`lang/rules.py`): `end_punct="unicode"` accepts any sentence terminal (。 ؟ । ...) at a line's end,
and for scripts without spaces (Chinese, Japanese, Thai) a line's words are its segmenter's words, not
whitespace-separated chunks (datatrove's C4 counts `str.split()` words in every language, so it drops every
CJK line); sentences are counted on the segmenter's tokens."""

from __future__ import annotations

from typing import Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from data_pipes.web.lang.segmenters import UNSPACED, segment
from data_pipes.web.sentence_split import split_sentences
from data_pipes.web.sentences import count_sentences
from data_pipes.web.text_stats import PY_SPACE, TERMINAL_CLASS, per_doc, py_strip, splitlines_normalised

CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
DATATROVE_REASONS = {
    "c4_lorem_ipsum": "lorem_ipsum",
    "c4_curly_bracket": "curly_bracket",
    "c4_too_few_sentences": "too_few_sentences",
}


class C4Params(BaseModel):
    model_config = ConfigDict(extra="forbid")

    split_paragraph: bool = True  # False: filter sentences instead of lines (datatrove's option)
    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = Field(5, ge=-1)  # -1 disables
    min_words_per_line: int = Field(3, ge=-1)  # -1 disables
    max_word_length: int = Field(1000, ge=-1)  # -1 disables
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    # what a kept line must end with: "english", datatrove's . ? ! " ' ; "unicode", any sentence terminal
    # (Unicode Sentence_Terminal: 。 ？ ؟ । ...) or those, optionally followed by closing quotes or brackets
    end_punct: Literal["english", "unicode"] = "english"


def _end_class(p: C4Params) -> str:
    if p.end_punct == "english":
        return "[.?!\"']$"
    return f"(?:[.?!\"'{TERMINAL_CLASS}]|[{TERMINAL_CLASS}][\\p{{Pf}}\\p{{Pe}}\"']+)$"


def _line_status(p: C4Params) -> pl.Expr:
    line = pl.col("line")
    low = line.str.to_lowercase()
    rules: list[tuple[bool, pl.Expr, str]] = [
        (p.max_word_length != -1, pl.col("too_long"), "drop"),
        (p.filter_no_terminal_punct, ~line.str.contains(_end_class(p)) | line.str.ends_with("..."), "drop"),
        (True, pl.col("n_words") < p.min_words_per_line, "drop"),
        (p.filter_lorem_ipsum, low.str.contains("lorem ipsum", literal=True), "c4_lorem_ipsum"),
        (p.filter_javascript, low.str.contains("javascript", literal=True), "drop"),
        (p.filter_curly_bracket, line.str.contains("{", literal=True), "c4_curly_bracket"),
        (
            p.filter_policy,
            pl.any_horizontal([low.str.contains(s, literal=True) for s in POLICY_PHRASES]),
            "drop",
        ),
    ]
    expr = pl.when(pl.lit(False)).then(pl.lit("drop"))
    for on, cond, status in rules:
        if on:
            expr = expr.when(cond).then(pl.lit(status))
    return expr.otherwise(pl.lit("keep"))


def _lines(texts: pl.Series, p: C4Params, segmenter: str) -> pl.DataFrame:
    if p.split_paragraph:
        units = pl.DataFrame({"text": texts}).select(splitlines_normalised(pl.col("text")).str.split("\n"))
    else:
        parts = [None if t is None else split_sentences(t) for t in texts.cast(pl.String).to_list()]
        units = pl.DataFrame({"text": pl.Series(parts, dtype=pl.List(pl.String))})
    frame = (
        units.with_row_index("doc")
        .select("doc", line=pl.col("text"))
        .explode("line")
        .drop_nulls("line")
        .with_columns(line=py_strip(pl.col("line")))
        .with_columns(n_words=pl.col("line").str.count_matches(f"[^{PY_SPACE}]+"), too_long=pl.lit(False))
    )
    if segmenter in UNSPACED and p.min_words_per_line > 0:
        # scripts without spaces: words are the segmenter's; a line with enough whitespace words has at least
        # as many segmented words, so only the others are segmented
        short = (frame["n_words"] < p.min_words_per_line).arg_true()
        if len(short):
            counts = segment(frame["line"].gather(short), segmenter).group_by("doc").agg(n=pl.len())
            n_seg = per_doc(counts, len(short))["n"].cast(frame["n_words"].dtype)
            frame = frame.with_columns(n_words=frame["n_words"].scatter(short, n_seg))
    if p.max_word_length != -1:
        # only a line longer than the limit can hold such a word; check those few in Python
        long = frame["line"].str.len_chars() > p.max_word_length
        flags = [
            bool(s) and max(map(len, s.split()), default=0) > p.max_word_length
            for s in frame["line"].filter(long)
        ]
        frame = frame.with_columns(too_long=long.scatter(long.arg_true(), flags) if flags else long)
    if p.remove_citations:
        frame = frame.with_columns(line=pl.col("line").str.replace_all(CITATION, ""))
    return frame.with_columns(status=_line_status(p))


def c4_apply(texts: pl.Series, params: C4Params, segmenter: str = "en") -> tuple[pl.Series, pl.Series]:
    """Apply the C4 rules: (texts with lines removed, per-row first failing reason `c4_*` or null).

    `segmenter` is the language's word tokeniser, for counting sentences (and words of unspaced scripts)."""
    p, n_docs = params, len(texts)
    lines = _lines(texts, p, segmenter)
    doc_events = (
        lines.filter(pl.col("status").str.starts_with("c4_")).group_by("doc").agg(pl.col("status").first())
    )
    kept = lines.filter(pl.col("status") == "keep")
    per = per_doc(kept.group_by("doc").agg(n_kept=pl.len()), n_docs)
    sep = "\n" if p.split_paragraph else " "
    new_text = per_doc(
        kept.group_by("doc", maintain_order=True).agg(text=pl.col("line").str.join(sep)), n_docs, ""
    )
    new_text = new_text.select(py_strip(pl.col("text")))["text"]
    reason = per_doc(doc_events, n_docs, fill=None)["status"]
    if p.min_num_sentences > 0 and not p.split_paragraph:
        too_few = per["n_kept"] < p.min_num_sentences  # each kept unit is one sentence
        reason = pl.select(
            pl.when(reason.is_null() & too_few).then(pl.lit("c4_too_few_sentences")).otherwise(reason)
        ).to_series()
    elif p.min_num_sentences > 0:
        few_lines = per["n_kept"] < p.min_num_sentences
        check = kept.join(
            pl.DataFrame({"doc": few_lines.arg_true()}), on="doc", how="semi", maintain_order="left"
        )
        n_sent = count_sentences(check["line"], segmenter)
        sents = per_doc(
            check.select("doc").with_columns(n=n_sent).group_by("doc").agg(pl.col("n").sum()), n_docs
        )
        too_few = few_lines & (sents["n"] < p.min_num_sentences)
        reason = pl.select(
            pl.when(reason.is_null() & too_few).then(pl.lit("c4_too_few_sentences")).otherwise(reason)
        )
        reason = reason.to_series()
    return new_text.rename("text"), reason.rename("reason")


def c4_reasons(texts: pl.Series, params: C4Params) -> pl.Series:
    """Per row, the first failing C4 document-level check, or null when kept (its text may change)."""
    return c4_apply(texts, params)[1]
