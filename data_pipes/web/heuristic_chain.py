"""Gopher quality -> Gopher repetition -> C4 -> FineWeb over one shard, dropping a row at its first failing
filter.

Equivalent to a datatrove pipeline of the four filters in that order: C4 rewrites the text of the rows it
keeps and FineWeb sees the rewritten text. Words are tokenised once for both Gopher filters; later stages
work only on the rows still alive."""

from __future__ import annotations

import polars as pl

from data_pipes.web.c4 import C4Params, c4_apply
from data_pipes.web.fineweb import FineWebParams, fineweb_reasons
from data_pipes.web.gopher_quality import GopherQualityParams, gopher_quality_reasons
from data_pipes.web.gopher_repetition import GopherRepetitionParams, gopher_repetition_reasons
from data_pipes.web.word_tokenizer import tokenize


def _fill(reasons: pl.Series, alive: pl.Series, stage: pl.Series) -> pl.Series:
    """Write a stage's reasons (computed on the alive rows only) back into the full-length column."""
    return reasons.scatter(alive, stage) if len(alive) else reasons


def heuristic_chain(
    texts: pl.Series,
    gopher_q: GopherQualityParams | None = None,
    gopher_r: GopherRepetitionParams | None = None,
    c4: C4Params | None = None,
    fineweb: FineWebParams | None = None,
) -> tuple[pl.Series, pl.Series]:
    """Run the four filters in order (`None` params skip a filter). Returns (texts after C4, reasons)."""
    texts = texts.cast(pl.String).fill_null("")
    reasons = pl.Series("reason", [None] * len(texts), dtype=pl.String)
    out_texts = texts.clone()
    tokens = tokenize(texts) if gopher_q is not None or gopher_r is not None else None
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
        new_texts, stage = c4_apply(texts.gather(alive), c4)
        reasons = _fill(reasons, alive, stage)
        out_texts = out_texts.scatter(alive, new_texts) if len(alive) else out_texts
    if fineweb is not None:
        alive = reasons.is_null().arg_true()
        reasons = _fill(reasons, alive, fineweb_reasons(out_texts.gather(alive), fineweb))
    return out_texts, reasons
