"""`issues_prs`: issue and pull-request threads from JSONL files (GitHub-export-like schema) as documents.

Schema and rendered text: docs/CODE_SAMPLES.md and data_pipes/code/issues_render.py. Files are listed when
the run starts (in the order the patterns are listed, each glob sorted) and grouped into shards of about ``shard_mb``; the fingerprint covers every file's
path, size and modification time. Malformed lines are quarantined with their error; a thread seen twice in a
shard (same repo, number and type) is dropped after the first as ``issues_prs_duplicate``. ``meta.format``
is ``issue`` or ``pull_request`` and ``meta.repo`` the repository, so ``repo_samples`` can be told apart
from them and per-repository stages can group them.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import polars as pl
from pydantic import Field

from data_pipes.code.issues_reader import read_threads
from data_pipes.io.documents import records_to_frames
from data_pipes.io.paths import expand_paths
from data_pipes.io.shards import ShardResult, write_shard
from tasks._file_source import FileSource, bad_input_records
from tasks.base import DataType, KindParams, ShardTask
from tasks.registry import register


class IssuesPrsParams(KindParams):
    paths: list[str] = Field(min_length=1, description="JSONL files (.jsonl, .jsonl.gz), folders or globs")
    source: str | None = Field(None, description="value of the `source` column (default: the node id)")
    max_diff_chars: int | None = Field(200_000, ge=1, description="longer PR diffs are cut (None: never)")
    shard_mb: float = Field(64.0, gt=0, description="input bytes per shard")


@register
class IssuesPrs(FileSource):
    name: ClassVar[str] = "issues_prs"
    Params = IssuesPrsParams
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    packages = ("polars", "pydantic")
    description = "issue and pull-request threads from JSONL, rendered as text documents"

    def shard_payload(self, params: IssuesPrsParams, files: list[str], source: str) -> dict[str, Any]:  # type: ignore[override]
        roots = [os.path.commonpath(expand_paths([p])) for p in params.paths]
        return {"files": files, "source": source, "roots": roots}

    def run_shard(self, params: IssuesPrsParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        records = []
        for path in task.payload["files"]:
            id_path = _id_path(path, task.payload["roots"])
            records.extend(read_threads(path, task.payload["source"], id_path, params.max_diff_chars))
        records.extend(bad_input_records(task, lambda path: _id_path(path, task.payload["roots"])))
        docs, bad = records_to_frames(records)
        first = docs.select(pl.col("id").is_first_distinct()).to_series()
        dropped = docs.filter(~first).with_columns(pl.lit("issues_prs_duplicate").alias("reason"))
        return write_shard(
            out_dir,
            task.index,
            docs.filter(first),
            rows_in=len(records),
            dropped=dropped,
            quarantined=bad,
            started=started,
        )


def _id_path(path: str, roots: list[str]) -> str:
    """``path`` relative to the first root that holds it (ids of quarantined lines survive moving data)."""
    for root in roots:
        folder = root if os.path.isdir(root) else os.path.dirname(root)
        if path.startswith(folder.rstrip(os.sep) + os.sep):
            return os.path.relpath(path, folder)
    return os.path.basename(path)
