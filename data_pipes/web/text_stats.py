"""Shared column-wise text helpers for the web heuristics: character classes, line splitting, duplicate
counts.

Everything here works on whole polars columns. Line splitting follows the Python calls the reference
filters use (`str.splitlines`, `str.split("\\n")`, `re.split("\\n+")`), which split on different
characters; we normalise first where needed and document which one each filter uses.

Departure: the terminal punctuation set is Unicode's `Sentence_Terminal` property plus three Khmer signs,
which matches datatrove's hand-written list except for a handful of characters added in recent Unicode
versions."""

from __future__ import annotations

import string

import polars as pl

# characters that make a token a "symbol" in the Gopher rules: ASCII punctuation, common CJK / typographic
# punctuation, C0/C1 control characters (except tab and newline) and sentence terminals
_EXTRA_PUNCT = "—”％１〈、━【「」，】；“《„’∶´–？！：～«〉（．）。…►»》"
_CONTROL = "\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f"
TERMINAL_CLASS = "\\p{Sentence_Terminal}៖៙៚"
PUNCT_CLASS = "".join("\\" + c if c in "\\^-[]" else c for c in string.punctuation + _EXTRA_PUNCT) + _CONTROL
SYMBOL_ONLY = f"^[{PUNCT_CLASS}{TERMINAL_CLASS}]+$"
# Python's str.strip()/isspace(): Unicode White_Space plus the separators U+001C..U+001F
PY_SPACE = "\\s\\x1c-\\x1f"
# str.splitlines() boundaries other than "\n"
_SPLITLINES_EXTRA = "\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"


def splitlines_normalised(texts: pl.Expr) -> pl.Expr:
    """Rewrite every `str.splitlines()` boundary as a single "\\n"."""
    return texts.str.replace_all(_SPLITLINES_EXTRA, "\n")


def py_strip(expr: pl.Expr) -> pl.Expr:
    """`str.strip()` with Python's notion of whitespace."""
    return expr.str.replace_all(f"^[{PY_SPACE}]+|[{PY_SPACE}]+$", "")


def explode_parts(texts: pl.Series, pattern: str, *, strip: bool = False) -> pl.DataFrame:
    """Split each text on a regex (like `re.split`): rows (doc, part), keeping empty parts, in order."""
    expr = pl.col("text")
    if strip:
        expr = py_strip(expr)
    # mark boundaries with a character that cannot occur in text, then split on it
    marked = expr.str.replace_all(pattern, "\x00")
    return (
        pl.DataFrame({"text": texts})
        .with_row_index("doc")
        .select("doc", part=marked.str.split("\x00"))
        .explode("part")
        .drop_nulls("part")
    )


def duplicate_stats(parts: pl.DataFrame, n_docs: int) -> pl.DataFrame:
    """Per doc: number of parts, of repeated parts and their characters (datatrove's `find_duplicates`)."""
    agg = (
        parts.with_columns(dup=~pl.col("part").is_first_distinct().over("doc"))
        .group_by("doc")
        .agg(
            n_parts=pl.len(),
            n_dup=pl.col("dup").sum(),
            dup_chars=pl.when(pl.col("dup")).then(pl.col("part").str.len_chars()).otherwise(0).sum(),
        )
    )
    return per_doc(agg, n_docs)


def per_doc(agg: pl.DataFrame, n_docs: int, fill: int | float | None = 0) -> pl.DataFrame:
    """Align a per-doc aggregate to rows 0..n_docs-1, filling docs that had no rows."""
    frame = pl.DataFrame({"doc": pl.arange(0, n_docs, dtype=pl.UInt32, eager=True)})
    joined = frame.join(
        agg.with_columns(pl.col("doc").cast(pl.UInt32)), on="doc", how="left", maintain_order="left"
    )
    return joined if fill is None else joined.fill_null(fill)


def first_reason(checks: list[tuple[str, pl.Expr]]) -> pl.Expr:
    """The name of the first check whose condition is true, else null (a null condition counts as passing)."""
    if not checks:
        return pl.lit(None, dtype=pl.String)
    (name, cond), *rest = checks
    chain = pl.when(cond.fill_null(False)).then(pl.lit(name))
    for name, cond in rest:
        chain = chain.when(cond.fill_null(False)).then(pl.lit(name))
    return chain.otherwise(pl.lit(None, dtype=pl.String))
