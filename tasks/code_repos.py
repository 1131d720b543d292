"""`code_repos`: folders of repositories, single repositories and archives into code file documents.

Each repository is read whole by one shard (a repository never spans shards, so repo-level stages can rely
on it); consecutive repositories, sorted by name, are grouped into shards of about ``shard_mb``. Archives
are read streaming, never extracted. Which files are dropped (binary, too large, unknown language,
symlinks) and which are quarantined (undecodable, broken or looping symlinks, unreadable, corrupt archives)
is in docs/CODE_CONTRACT.md; nothing a repository holds can fail the node. The fingerprint covers every
file's path, size and mtime.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

from pydantic import Field

from data_pipes.code.archive_reader import read_archive
from data_pipes.code.records import to_frames
from data_pipes.code.repo_reader import read_repo_dir
from data_pipes.code.sources import list_repos, repo_stats
from data_pipes.io.shards import ShardResult, write_shard
from flows.fingerprint import sha
from tasks._code_params import CodeFileParams, code_options, language_counts, source_report
from tasks._file_source import check_patterns, group_by_size
from tasks.base import DataType, Kind, RunContext, ShardTask
from tasks.registry import register


class CodeReposParams(CodeFileParams):
    paths: list[str] = Field(
        min_length=1, description="folders of repositories, repository folders, archives, globs"
    )
    layout: Literal["repos", "repo"] = Field(
        "repos",
        description="repos: each sub-folder / archive of a folder is a repository; repo: a folder is one",
    )
    shard_mb: float = Field(64.0, gt=0, description="input bytes per shard (whole repositories)")


@register
class CodeRepos(Kind):
    name: ClassVar[str] = "code_repos"
    Params = CodeReposParams
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    path_params: ClassVar[tuple[str, ...]] = ("paths",)
    packages = ("polars", "pyarrow")
    description = "repository folders and archives (tar.gz, tar.xz, zip) into code file documents"

    def check_params(self, params: CodeReposParams) -> list[tuple[tuple[str | int, ...], str]]:
        return check_patterns(params.paths, lambda p: list_repos(p, params.layout))

    def signature(self, params: CodeReposParams) -> str:
        try:
            return sha(
                *(line for ref in list_repos(params.paths, params.layout) for line in repo_stats(ref)[1])
            )
        except (FileNotFoundError, ValueError) as exc:
            return f"missing: {exc}"

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: CodeReposParams = ctx.params  # type: ignore[assignment]
        refs = list_repos(params.paths, params.layout)
        groups = group_by_size(((ref, repo_stats(ref)[0]) for ref in refs), params.shard_mb)
        source = params.source or ctx.node_id
        return [
            ShardTask(i, {"repos": g, "source": source}, label=g[0].name) for i, g in enumerate(groups) if g
        ]

    def run_shard(self, params: CodeReposParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        opts = code_options(params, task.payload["source"])
        records: list[dict] = []
        for ref in task.payload["repos"]:
            reader = read_archive if ref.kind == "archive" else read_repo_dir
            records.extend(reader(ref.path, ref.name, opts))
        kept, dropped, bad = to_frames(records)
        extra = {"repos": len(task.payload["repos"]), "languages": language_counts(kept)}
        return write_shard(
            out_dir,
            task.index,
            kept,
            rows_in=len(records),
            dropped=dropped,
            quarantined=bad,
            started=started,
            extra=extra,
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        source_report(ctx, results)
