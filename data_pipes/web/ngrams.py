"""Word n-gram repetition statistics over a whole shard, for the Gopher repetition rules.

n-grams are identified by a 64-bit hash of their token hashes (collisions are negligible at shard scale).
The "top n-gram" statistic is exact. The "duplicated n-gram characters" statistic of the reference is a
greedy left-to-right scan (on a repeat it jumps n words ahead, so what counts as seen depends on the
path); we first compute, vectorised, an upper bound (characters of all words covered by any repeated
n-gram) and run the exact scan only for documents whose bound crosses the threshold, which are few.

Departure: datatrove keys the scan's n-grams by the words joined without a separator, so ("a", "bc")
equals ("ab", "c"); we key them by the word sequence."""

from __future__ import annotations

import polars as pl

from data_pipes.web.text_stats import per_doc


def with_positions(tokens: pl.DataFrame) -> pl.DataFrame:
    """Add `pos` (word index in its doc), `n_tok` (words in doc), `h` (token hash), `l` (token length)."""
    return tokens.with_columns(
        pos=pl.int_range(pl.len(), dtype=pl.UInt32).over("doc"),
        n_tok=pl.len().over("doc"),
        h=pl.col("tok").hash(),
        l=pl.col("tok").str.len_chars().cast(pl.Int64),
    )


_MIX = 0x9E3779B97F4A7C15  # odd 64-bit multiplier; u64 arithmetic wraps


def _ngram_columns(n: int) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """Key (n-gram and doc mixed into one u64), chars and validity of the n-gram starting at each word."""
    key = pl.col("doc").cast(pl.UInt64)
    for k in range(n):
        key = key * _MIX + pl.col("h").shift(-k)
    chars = pl.sum_horizontal([pl.col("l").shift(-k) for k in range(n)])
    valid = pl.col("pos") + n <= pl.col("n_tok")
    return key, chars, valid


def top_ngram_chars(tok: pl.DataFrame, n: int, n_docs: int) -> pl.DataFrame:
    """Per doc: chars of the most frequent n-gram (words joined by spaces) times its count; null if no n-gram.

    Ties on count go to the n-gram seen first, like `Counter.most_common(1)`.
    """
    key, chars, valid = _ngram_columns(n)
    grams = tok.select("doc", "pos", g=key, c=chars + (n - 1), v=valid).filter(pl.col("v"))
    counts = grams.group_by("g").agg(
        doc=pl.col("doc").first(), cnt=pl.len(), first=pl.col("pos").min(), c=pl.col("c").first()
    )
    best = (
        counts.filter(pl.col("cnt") == pl.col("cnt").max().over("doc"))
        .group_by("doc")
        .agg(top=(pl.col("c") * pl.col("cnt")).sort_by("first").first())
    )
    return per_doc(best, n_docs, fill=None)


def dup_ngram_chars_bound(tok: pl.DataFrame, n: int, n_docs: int) -> pl.DataFrame:
    """Per doc: an upper bound on the reference's duplicated n-gram characters (chars of covered words)."""
    key, _, valid = _ngram_columns(n)
    grams = tok.select("doc", "pos", "l", g=pl.when(valid).then(key))
    dup = pl.col("g").is_not_null() & ~pl.col("g").is_first_distinct()
    last_dup = pl.when(dup).then(pl.col("pos")).forward_fill().over("doc")
    covered = (pl.col("pos").cast(pl.Int64) - last_dup.cast(pl.Int64)) < n
    bound = grams.group_by("doc").agg(bound=pl.when(covered).then(pl.col("l")).otherwise(0).sum())
    return per_doc(bound, n_docs)


def dup_ngram_chars_exact(hashes: list[int], lengths: list[int], n: int) -> int:
    """The reference's greedy scan of one document: chars of repeated n-grams, jumping n words per repeat."""
    if len(hashes) < n:
        return 0
    keys = [tuple(hashes[i : i + n]) for i in range(len(hashes) - n + 1)]
    seen: set[tuple[int, ...]] = set()
    repeated, idx = 0, 0
    while idx < len(keys):
        if keys[idx] in seen:
            repeated += sum(lengths[idx : idx + n])
            idx += n
        else:
            seen.add(keys[idx])
            idx += 1
    return repeated
