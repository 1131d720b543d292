"""`datatrove`: any datatrove filter, extractor or formatter (or your own per-document step) as a node.

```yaml
  gopher_de:
    uses: datatrove
    inputs: [text]
    params:
      step: datatrove.pipeline.filters.GopherQualityFilter     # or mypkg.steps:MyFilter, mypkg.steps.MyFilter
      args: {language: deu, min_doc_words: 50, stop_words: [der, die, und, in, den, von, zu, das]}
```

One output shard per input shard. Rows become datatrove Documents and back (``data_pipes.datatrove_bridge``): the
``meta`` JSON and the other columns are the document's metadata, and what the step adds comes back in ``meta``;
datatrove's drop reasons (``gopher_short_doc``) are the node's drop reasons; a row the step raises on is
quarantined with the error; a step that asks datatrove to download a model fails the node with one error naming
the asset and datatrove's cache folder to pre-fill (arcflow never downloads at run time). The step is checked when
the pipeline is validated: its import path, that it is a per-document datatrove step, its ``args`` (the step
is constructed once), and that a model it would fetch on its first document is in datatrove's cache
(``data_pipes.datatrove_assets``); a local model (a plain path or file:// URL in ``args``) is read where it is, and
one that does not exist fails there naming its ``args`` line (``data_pipes.datatrove_local``). The fingerprint holds the params, datatrove's version and the versions of the packages the step declares, the step's qualified class name, the sha256 of every existing local file a string of ``args`` names (bare file names included), and for
a step that is not datatrove's own, the source of its module (and of the modules of its package it imports).
Install datatrove with the `datatrove` extra. See docs/DATATROVE.md.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

import polars as pl
import pyarrow.parquet as pq
from pydantic import Field

from data_pipes.datatrove_bridge import StepRunner
from data_pipes.datatrove_local import local_file_digests
from data_pipes.datatrove_resolve import check_step, step_signature
from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.param_error import ParamError
from tasks.registry import register


class DatatroveParams(KindParams):
    step: str = Field(
        description="import path of the step class: `datatrove.pipeline.filters.GopherQualityFilter`, or your "
        "own `mypkg.steps:MyFilter` (importable: installed or on PYTHONPATH)"
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the step's constructor (plain YAML values)"
    )
    text_column: str = Field("text", description="column that becomes the Document's text")
    id_column: str = Field("id", description="column that becomes the Document's id")


@register
class DatatroveStep(DocumentMapKind):
    name: ClassVar[str] = "datatrove"
    Params = DatatroveParams
    packages = ("datatrove",)
    description = "any datatrove filter, extractor or formatter (or your own per-document step), row by row"

    def check_params(self, params: DatatroveParams) -> list[tuple[tuple[str | int, ...], str]]:  # type: ignore[override]
        return check_step(params.step, params.args)

    def signature(self, params: DatatroveParams) -> str:  # type: ignore[override]
        signature = step_signature(params.step)
        files = local_file_digests(params.args)  # a local model or word list is data: its bytes count
        return json.dumps({**signature, "local_files": files} if files else signature, sort_keys=True)

    def code_sources(self, params: DatatroveParams) -> dict[str, str]:  # type: ignore[override]
        return step_signature(params.step).get("source", {})

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: DatatroveParams = ctx.params  # type: ignore[assignment]
        for inp in ctx.inputs:
            if not inp.shards:
                continue
            have = pq.read_schema(inp.shards[0]).names
            for what, column in (("text_column", params.text_column), ("id_column", params.id_column)):
                if column not in have:
                    raise ParamError(
                        ctx.node_id,
                        (what,),
                        f"input {inp.name!r} has no column {column!r} for the step's documents",
                        f"name the right one in `{what}`; its columns are {', '.join(sorted(have))}",
                    )
        return super().plan_shards(ctx)

    def run_shard(self, params: DatatroveParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        runner = StepRunner(params.step, params.args, params.text_column, params.id_column)
        kept, dropped, quarantined = runner.run(frame)
        return write_shard(
            out_dir,
            task.index,
            kept,
            rows_in=frame.height,
            dropped=dropped,
            quarantined=quarantined,
            started=started,
            extra={"step": f"{runner.cls.__module__}:{runner.cls.__qualname__}", "role": runner.role},
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        """A short markdown: the step, its role, the counts, and a warning when every row was quarantined with
        the same error (a setup problem, such as a missing package, not bad rows; a model the step would download
        fails the node outright, see ``data_pipes.datatrove_resolve.no_downloads``)."""
        params: DatatroveParams = ctx.params  # type: ignore[assignment]
        rows_in = sum(r.rows_in for r in results)
        kept, dropped, bad = (sum(getattr(r, k) for r in results) for k in ("kept", "dropped", "quarantined"))
        errors: dict[str, int] = {}
        for r in results:
            for k, v in r.errors.items():
                errors[k] = errors.get(k, 0) + v
        role = next((r.extra.get("role") for r in results if r.extra.get("role")), "")
        lines = [
            f"`{params.step}` ({role}), datatrove {step_signature(params.step)['versions']['datatrove']}: "
            f"{rows_in} rows in, {kept} kept, {dropped} dropped, {bad} quarantined."
        ]
        if rows_in and bad == rows_in and len(errors) == 1:
            lines.append(
                f"\n**Every row was quarantined with `{next(iter(errors))}`**: this is likely a setup problem (a "
                "missing package), not bad rows; "
                "see quarantine/part-*.parquet for the message."
            )
        ctx.add_report("datatrove step", markdown="\n".join(lines))
