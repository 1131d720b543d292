"""`union`: several document inputs as one, optionally mixing them by per-input fractions.

Output shards are the inputs' shards in the order the inputs are listed, so the result does not depend on which
input finished first. ``fractions`` keeps a seeded share of an input's documents (by id hash), for a mix.
"""

from __future__ import annotations

from typing import ClassVar

import polars as pl
from pydantic import Field

from tasks.base import KindParams, ShardTask
from tasks.doc_map import DocumentMapKind, hash_unit, split_by_mask
from tasks.registry import register


class UnionParams(KindParams):
    fractions: dict[str, float] = Field(
        default_factory=dict, description="input name -> share of its documents to keep (default 1.0)"
    )


@register
class Union(DocumentMapKind):
    name: ClassVar[str] = "union"
    Params = UnionParams
    min_inputs: ClassVar[int] = 1
    packages = ("polars",)
    description = "concatenate / mix several document inputs"

    def check_params(self, params: UnionParams) -> list[tuple[tuple[str | int, ...], str]]:
        return [
            (("fractions", name), f"fraction {f} must be in (0, 1]")
            for name, f in params.fractions.items()
            if not 0 < f <= 1
        ]

    def check_inputs(self, params: UnionParams, inputs: list[str]) -> list[tuple[tuple[str | int, ...], str]]:
        return [
            (("fractions", name), f"{name!r} is not an input of this node; its inputs are {inputs}")
            for name in params.fractions
            if name not in inputs
        ]

    def process(self, frame: pl.DataFrame, params: UnionParams, seed: int, task: ShardTask):  # type: ignore[override]
        fraction = params.fractions.get(task.payload["input"], 1.0)
        if fraction >= 1.0:
            return frame, frame.clear().with_columns(pl.lit(None, dtype=pl.String).alias("reason"))
        keep = hash_unit(frame.get_column("id"), seed) < fraction
        return split_by_mask(frame, keep, "union_not_sampled")
