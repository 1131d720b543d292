"""`warc`: WARC files (plain or ``.warc.gz``) into document shards, one per HTML/text response record.

Files are listed when the run starts, in the order the patterns are listed (each glob or directory sorted),
and grouped into shards of about ``shard_mb`` of input, as the ``files`` kind does; the fingerprint covers
every file's path, size and modification time. The reading and the drop / quarantine rules live in ``data_pipes.io.warc_reader``: non-HTML
payloads are dropped (``warc_non_html``), a truncated file keeps the records read so far plus one
``warc_truncated`` quarantined row. Records that are not responses (warcinfo, request, metadata) are not
documents; their counts go into the shard's ``extra`` in the manifest.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.io.documents import DOC_COLUMNS, records_to_frames
from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.io.warc_reader import read_warc
from tasks._file_source import FileSource, bad_input_records, relative_to_patterns
from tasks.base import DataType, KindParams, RunContext, ShardTask
from tasks.registry import register


class WarcParams(KindParams):
    paths: list[str] = Field(
        default_factory=list, description="WARC files (.warc, .warc.gz), directories or globs; and/or inputs"
    )
    source: str | None = Field(None, description="value of the `source` column (default: the node id)")
    shard_mb: float = Field(256.0, gt=0, description="input bytes (compressed) per shard")
    max_doc_mb: float = Field(50.0, gt=0, description="larger payloads are dropped as warc_too_large")
    ok_only: bool = Field(True, description="drop responses whose HTTP status is not 2xx (warc_http_status)")


def split_records(records: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(kept documents, dropped documents with ``reason``, quarantined rows)."""
    dropped = [r for r in records if "reason" in r]
    docs, bad = records_to_frames(r for r in records if "reason" not in r)
    schema = {**{c: pl.String() for c in DOC_COLUMNS}, "reason": pl.String()}
    return docs, pl.DataFrame(dropped, schema=schema), bad


@register
class Warc(FileSource):
    name: ClassVar[str] = "warc"
    Params = WarcParams
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    packages = ("warcio", "pyarrow", "polars")
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.WARC,)
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[int | None] = None

    def check_inputs(self, params: WarcParams, inputs: list[str]) -> list[tuple[tuple[str | int, ...], str]]:
        if not params.paths and not inputs:
            return [
                (("paths",), "no WARC files: give `paths`, or inputs that produce WARC files (warc_write)")
            ]
        return []

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        """Files named by ``paths`` (grouped by size), then one shard per WARC file of each input, in order."""
        params: WarcParams = ctx.params  # type: ignore[assignment]
        tasks = super().plan_shards(ctx) if params.paths else []
        source = params.source or ctx.node_id
        for inp in ctx.inputs:
            folder = os.path.join(inp.path, "warc")
            files = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
            for name in files:
                if name.endswith((".warc", ".warc.gz")):
                    path = os.path.join(folder, name)
                    # named by producer and file, never by the store's folder: same bytes in any store
                    names = {path: f"{inp.name}/warc/{name}"}
                    payload = {"files": [path], "source": source, "names": names}
                    tasks.append(ShardTask(len(tasks), payload, label=names[path]))
        return tasks

    description = "WARC files (plain or gzipped) into raw-HTML document shards, one per HTML/text response"

    def run_shard(self, params: WarcParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        records: list[dict] = []
        skipped: dict[str, int] = {}
        for path in task.payload["files"]:
            records.extend(
                read_warc(
                    path,
                    name=task.payload.get("names", {}).get(path) or relative_to_patterns(path, params.paths),
                    source=task.payload["source"],
                    ok_only=params.ok_only,
                    max_doc_bytes=int(params.max_doc_mb * 1024 * 1024),
                    counts=skipped,
                )
            )
        # entries that are not readable files, named like the others
        records.extend(bad_input_records(task, lambda path: relative_to_patterns(path, params.paths)))
        docs, dropped, bad = split_records(records)
        extra = {"skipped_record_types": dict(sorted(skipped.items()))} if skipped else None
        return write_shard(
            out_dir,
            task.index,
            docs,
            rows_in=len(records),
            dropped=dropped,
            quarantined=bad,
            started=started,
            extra=extra,
        )
