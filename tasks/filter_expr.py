"""`filter`: keep the rows for which a SQL expression holds (evaluated by polars over the whole shard).

Example: ``expr: "length(text) >= 200 AND source = 'pydoc_html'"``. Rows where the expression is false or null are
dropped with ``reason`` (default ``filter_expr``). The expression is parsed when the pipeline is validated, and its
columns are checked against the input's schema before any shard runs: a column the input lacks is a ``ParamError``
(not retried) naming the ``expr`` line and the input's columns.
"""

from __future__ import annotations

import re
from typing import ClassVar

import polars as pl
import pyarrow.parquet as pq
from pydantic import Field

from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind, split_by_mask
from tasks.param_error import ParamError
from tasks.registry import register


class FilterParams(KindParams):
    expr: str = Field(description="SQL boolean expression over the document columns")
    reason: str = Field("filter_expr", description="drop reason (snake_case) for rows that fail")


@register
class FilterExpr(DocumentMapKind):
    name: ClassVar[str] = "filter"
    Params = FilterParams
    packages = ("polars",)
    description = "keep rows matching a SQL expression"

    def check_params(self, params: FilterParams) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        try:
            pl.sql_expr(params.expr)
        except Exception as exc:  # polars raises several error types for bad SQL
            problems.append((("expr",), f"cannot parse expression {params.expr!r}: {exc}"))
        if not re.fullmatch(r"[a-z][a-z0-9_]*", params.reason):
            problems.append((("reason",), f"drop reason {params.reason!r} must be snake_case"))
        return problems

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: FilterParams = ctx.params  # type: ignore[assignment]
        used = set(pl.sql_expr(params.expr).meta.root_names())
        for inp in ctx.inputs:
            if inp.shards:
                have = set(pq.read_schema(inp.shards[0]).names)
                missing = sorted(used - have)
                if missing:
                    raise ParamError(
                        ctx.node_id,
                        ("expr",),
                        f"filter expression {params.expr!r} uses column(s) {missing} that input {inp.name!r} "
                        "does not have",
                        f"use the input's columns: {', '.join(sorted(have))}",
                    )
        return super().plan_shards(ctx)

    def process(self, frame: pl.DataFrame, params: FilterParams, seed: int, task: ShardTask):  # type: ignore[override]
        keep = frame.select(pl.sql_expr(params.expr).alias("_keep")).get_column("_keep")
        return split_by_mask(frame, keep, params.reason)
