"""`heuristic_filters`: Gopher quality, Gopher repetition, C4 and FineWeb rules over whole shards.

The rules live in data_pipes/web (vectorised with polars, checked against datatrove's filters by
benchmarks/web_heuristics.py). Each filter is a params section; `null` switches it off. A document is dropped at its
first failing check, with that check's reason (e.g. `gopher_quality_min_words`, `c4_lorem_ipsum`); C4 also removes
lines (javascript notices, policy lines, lines without terminal punctuation), so kept documents carry C4's text.
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.web.c4 import C4Params
from data_pipes.web.fineweb import FineWebParams
from data_pipes.web.gopher_quality import GopherQualityParams
from data_pipes.web.gopher_repetition import GopherRepetitionParams
from data_pipes.web.heuristic_chain import heuristic_chain
from tasks.base import KindParams, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.registry import register


class HeuristicParams(KindParams):
    gopher_quality: GopherQualityParams | None = Field(
        default_factory=GopherQualityParams, description="Gopher quality rules (null: off)"
    )
    gopher_repetition: GopherRepetitionParams | None = Field(
        default_factory=GopherRepetitionParams, description="Gopher repetition rules (null: off)"
    )
    c4: C4Params | None = Field(
        default_factory=C4Params, description="C4 rules, which also remove lines (null: off)"
    )
    fineweb: FineWebParams | None = Field(
        default_factory=FineWebParams, description="FineWeb rules (null: off)"
    )


@register
class HeuristicFilters(DocumentMapKind):
    name: ClassVar[str] = "heuristic_filters"
    Params = HeuristicParams
    packages = ("polars",)
    description = "Gopher quality + repetition, C4 and FineWeb heuristics, each check its own drop reason"

    def process(self, frame: pl.DataFrame, params: HeuristicParams, seed: int, task: ShardTask):  # type: ignore[override]
        texts, reasons = heuristic_chain(
            frame.get_column("text"),
            params.gopher_quality,
            params.gopher_repetition,
            params.c4,
            params.fineweb,
        )
        out = frame.with_columns(texts.alias("text"), reasons.alias("reason"))
        kept = out.filter(pl.col("reason").is_null()).drop("reason")
        # dropped rows keep their original text, so the exclusion shards show what was judged
        dropped = frame.with_columns(reasons.alias("reason")).filter(pl.col("reason").is_not_null())
        return kept, dropped
