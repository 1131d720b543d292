"""`demo_corpus`: a small real corpus built offline from this Python installation (see data_pipes/io/demo_corpus.py).

Items are listed cheaply when the run starts and rendered in shards on the workers. The fingerprint covers the
Python version and the installed distributions (names and versions, no paths), so the corpus is rebuilt when the
installation changes, and two checkouts, the CLI and a deployment's worker agree on it.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from pydantic import Field

from data_pipes.io.demo_corpus import demo_signature, list_demo_items, render_demo_items
from data_pipes.io.documents import records_to_frames
from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.registry import register

Part = Literal["stdlib_code", "pydoc_html", "package_metadata", "licenses"]


class DemoCorpusParams(KindParams):
    parts: list[Part] = Field(
        default_factory=lambda: ["stdlib_code", "pydoc_html", "package_metadata", "licenses"],
        min_length=1,
        description="which parts of the installation to turn into documents",
    )
    max_items_per_part: int | None = Field(None, ge=1, description="cap per part (for quick runs)")
    items_per_shard: int = Field(250, ge=1, description="documents per shard")


@register
class DemoCorpus(Kind):
    name: ClassVar[str] = "demo_corpus"
    Params = DemoCorpusParams
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    description = "stdlib code, pydoc HTML, package metadata and licence texts of this Python installation"

    def signature(self, params: DemoCorpusParams) -> str:
        return demo_signature(tuple(params.parts))

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: DemoCorpusParams = ctx.params  # type: ignore[assignment]
        items = list_demo_items(tuple(params.parts), params.max_items_per_part)
        step = params.items_per_shard
        return [
            ShardTask(i, items[s : s + step], label=f"items {s}..")
            for i, s in enumerate(range(0, len(items), step))
        ]

    def run_shard(self, params: DemoCorpusParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        records = render_demo_items(task.payload)
        docs, bad = records_to_frames(records)
        return write_shard(out_dir, task.index, docs, rows_in=len(records), quarantined=bad, started=started)
