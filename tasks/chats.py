"""`chats`: a user's own chat dataset (JSONL lines of ``messages``) as chat records for `sft`
(docs/REASONING.md, docs/CHAT_CONTRACT.md).

One item per JSONL file (globs expanded, sorted), rendered on the workers by
``data_pipes/reasoning/jsonl_chats.py``; a file's rows go to shards of ``rows_per_shard``. Lines the sft stage
could not render are quarantined with ``<file>#<line>`` and the fix. Ids are the lines' own ``id`` (else a
stable hash of file name and line); a repeated id anywhere in the node keeps its first line (file order, then
line order) and quarantines the later ones, which the driver finds while planning so every worker count writes
the same bytes.
"""

from __future__ import annotations

import glob
import hashlib
import os
import time
from typing import Any, ClassVar

import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.reasoning.jsonl_chats import bad_row, chat_rows
from data_pipes.reasoning.problem_table import quarantine_frame
from data_pipes.reasoning.records import CHAT_SCHEMA, frame
from tasks._file_source import relative_to_patterns
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.registry import register

_GLOB = set("*?[")


class ChatsParams(KindParams):
    jsonl: list[str] = Field(
        min_length=1,
        description="chat JSONL files or globs, one conversation per line (docs/REASONING.md schema)",
    )
    rows_per_shard: int = Field(1000, ge=1, description="chat records per output shard")


def expand(patterns: list[str]) -> list[str]:
    """The files the patterns name, in pattern order, each pattern's matches sorted, each file once; a plain
    path is kept even when missing (its item quarantines it as unreadable)."""
    out: list[str] = []
    for p in patterns:
        for f in sorted(glob.glob(p)) if _GLOB & set(p) else [p]:
            if f not in out:
                out.append(f)
    return out


@register
class Chats(Kind):
    name: ClassVar[str] = "chats"
    Params = ChatsParams
    output_type: ClassVar[DataType] = DataType.CHAT
    packages = ("polars",)
    path_params = ("jsonl",)
    description = "a user's chat JSONL (messages) as chat records for sft; unrenderable lines quarantined"

    def check_params(self, params: ChatsParams) -> list[tuple[tuple[str | int, ...], str]]:
        return [
            (
                ("jsonl", i),
                f"{p!r} matches no file; check the pattern (paths are relative to the pipeline file)",
            )
            for i, p in enumerate(params.jsonl)
            if _GLOB & set(p) and "://" not in p and not glob.glob(p)
        ]

    def signature(self, params: ChatsParams) -> str:
        digest = (
            hashlib.sha256()
        )  # the declared patterns are in params; here, which files they match and bytes
        for path in expand(params.jsonl):
            digest.update(f"{relative_to_patterns(path, params.jsonl)}\0".encode())
            try:
                with open(path, "rb") as fh:
                    digest.update(hashlib.sha256(fh.read()).digest())
            except OSError as exc:
                digest.update(f"unreadable: {exc.strerror}".encode())
        return digest.hexdigest()

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: ChatsParams = ctx.params  # type: ignore[assignment]
        first: dict[str, str] = {}  # id -> the url of the line that keeps it
        tasks: list[ShardTask] = []
        for path in expand(params.jsonl):
            name = relative_to_patterns(path, params.jsonl)
            rows = chat_rows(path, name)
            dups: dict[int, str] = {}  # row index in the file -> the url of the line that keeps the id
            for k, r in enumerate(rows):
                if "error" in r:
                    continue
                if r["id"] in first:
                    dups[k] = first[r["id"]]
                else:
                    first[r["id"]] = r["url"]
            for start in range(0, max(len(rows), 1), params.rows_per_shard):
                item = {"path": path, "name": name, "start": start, "stop": start + params.rows_per_shard}
                item["dups"] = {rows[k]["url"]: f for k, f in dups.items() if start <= k < item["stop"]}
                tasks.append(ShardTask(len(tasks), item, label=f"{os.path.basename(path)} {start}.."))
        return tasks

    def run_shard(self, params: ChatsParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        item = task.payload
        rows = chat_rows(item["path"], item["name"])[item["start"] : item["stop"]]
        good: list[dict[str, Any]] = []
        bad: list[dict[str, str]] = []
        for r in rows:
            if "error" in r:
                bad.append(r)
            elif r["url"] in item["dups"]:
                name, _, line = r["url"].rpartition("#")
                bad.append(
                    bad_row(
                        name,
                        int(line),
                        f"chats_duplicate_id: {r['url']}: id {r['id']!r} is already used by "
                        f"{item['dups'][r['url']]}; give each conversation its own id (or drop the id to get "
                        "one from file and line)",
                    )
                )
            else:
                good.append(r)
        kept = frame(good, CHAT_SCHEMA) if good else pl.DataFrame(schema=CHAT_SCHEMA)
        return write_shard(
            out_dir, task.index, kept, rows_in=len(rows), quarantined=quarantine_frame(bad), started=started
        )
