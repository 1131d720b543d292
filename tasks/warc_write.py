"""`warc_write`: documents holding raw HTML written as WARC files, one ``warc/part-NNNNN.warc.gz`` per input shard.

The output type is ``warc``: a `warc` node reads the files of its inputs, so a pipeline can go pages -> WARC ->
extraction the way a crawl's output would (the default pipeline does this with the demo corpus's pages). Record ids
and dates are derived from the documents, so the files are reproducible. The shard table lists each record (`id`,
`url`, `warc_record_id`, `file`) for accounting and lineage.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.io.warc_writer import WarcPage, record_id, write_warc
from tasks.base import DataType, KindParams, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.registry import register


class WarcWriteParams(KindParams):
    content_type: str = Field("text/html; charset=utf-8", description="HTTP Content-Type of every record")
    date: str = Field(
        "2000-01-01T00:00:00Z", description="WARC-Date of every record (kept fixed: reproducible)"
    )


@register
class WarcWrite(DocumentMapKind):
    name: ClassVar[str] = "warc_write"
    Params = WarcWriteParams
    output_type: ClassVar[DataType] = DataType.WARC
    packages = ("warcio",)
    description = "documents with raw HTML written as reproducible WARC files (input of a `warc` node)"

    def run_shard(self, params: WarcWriteParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"], columns=["id", "url", "text"])
        name = f"warc/part-{task.index:05d}.warc.gz"
        pages = (
            WarcPage(i, u or "", t or "", params.content_type, params.date)
            for i, u, t in zip(frame["id"], frame["url"], frame["text"], strict=True)
        )
        write_warc(os.path.join(out_dir, name), pages)
        table = pl.DataFrame(
            {
                "id": frame["id"],
                "url": frame["url"],
                "warc_record_id": [record_id(i) for i in frame["id"]],
                "file": [name] * frame.height,
            },
            schema={"id": pl.String, "url": pl.String, "warc_record_id": pl.String, "file": pl.String},
        )
        return write_shard(out_dir, task.index, table, rows_in=frame.height, started=started)
