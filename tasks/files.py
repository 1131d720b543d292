"""`files`: local files (text, HTML, JSONL, Parquet; plain or gzipped) into document shards.

Document ids hash the source name and each file's path relative to the non-glob root of its pattern (to the
roots' common folder when the patterns have several roots, so ``a/x.txt`` and ``b/x.txt`` differ), plus the
record number, so they do not change when the data moves.

Files are listed when the run starts, in the order the patterns are listed (each glob or directory sorted by path;
a file two patterns name is read once, at its first place): that order decides which copy a "keep the first" dedup
keeps. Consecutive files are grouped into shards of about ``shard_mb`` of input, so the shard layout depends only
on the files and the listed order. The fingerprint covers every file's
path, size and modification time, so editing an input file invalidates the node. Bad files and bad records are
quarantined by the readers with their error; they never fail the node. Entries that are not readable files
(dangling symlinks, symlink loops, FIFOs, folders that cannot be listed) are quarantined without being opened.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from pydantic import Field

from data_pipes.io.documents import records_to_frames
from data_pipes.io.readers import detect_format, read_records
from data_pipes.io.records import make_id, quarantined_record
from data_pipes.io.shards import ShardResult, write_shard
from tasks._file_source import FileSource, bad_input_records, relative_to_patterns
from tasks.base import DataType, KindParams, ShardTask
from tasks.registry import register


class FilesParams(KindParams):
    paths: list[str] = Field(min_length=1, description="files, directories or globs (** allowed)")
    format: Literal["auto", "text", "html", "jsonl", "parquet"] = Field(
        "auto", description="auto: from the extension, ignoring .gz"
    )
    text_field: str = Field("text", description="JSONL key / Parquet column holding the text")
    id_field: str | None = Field(None, description="JSONL key / Parquet column holding a stable id")
    url_field: str | None = Field(None, description="JSONL key / Parquet column holding the url")
    source: str | None = Field(None, description="value of the `source` column (default: the node id)")
    shard_mb: float = Field(64.0, gt=0, description="input bytes per shard")
    max_doc_mb: float = Field(50.0, gt=0, description="larger documents are quarantined")


_id_path = relative_to_patterns  # ids, urls and meta name files relative to their patterns' folder


@register
class Files(FileSource):
    name: ClassVar[str] = "files"
    Params = FilesParams
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    packages = ("pyarrow", "polars")
    description = "local text / HTML / JSONL / Parquet files, plain or gzipped, into document shards"

    def run_shard(self, params: FilesParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        records = []
        for path in task.payload["files"]:
            try:
                fmt = detect_format(path) if params.format == "auto" else params.format
            except ValueError as exc:
                shown = _id_path(path, params.paths)  # rows name files by this, never by this machine's path
                rid = make_id(task.payload["source"], shown, 0)
                error = f"unknown_format: {str(exc).replace(path, shown)}"
                records.append(
                    quarantined_record(rid=rid, source=task.payload["source"], url=shown, error=error)
                )
                continue
            records.extend(
                read_records(
                    path,
                    fmt,
                    source=task.payload["source"],
                    text_field=params.text_field,
                    id_field=params.id_field,
                    url_field=params.url_field,
                    max_doc_bytes=int(params.max_doc_mb * 1024 * 1024),
                    id_path=_id_path(path, params.paths),
                )
            )
        records.extend(bad_input_records(task, lambda path: _id_path(path, params.paths)))
        docs, bad = records_to_frames(records)
        return write_shard(out_dir, task.index, docs, rows_in=len(records), quarantined=bad, started=started)
