"""`git_history`: local git repositories and bundles into code file documents and commit documents.

``paths`` name repositories (work trees or bare), ``.bundle`` files, or folders holding either. Each
repository is one shard (its history is read in order by one worker). ``emit`` picks the outputs: ``files``
(the tree of ``ref``, the same rules and reasons as ``code_repos``) and ``commits`` (one document per
commit of ``ref``'s history, in history order: message plus unified diff, docs/CODE_CONTRACT.md). A damaged
object quarantines only the file or commit that needs it (``git_object_error``); a repository git cannot
open is one ``git_repository_error`` row. The fingerprint covers each repository's resolved ``ref`` (and
each bundle's size and mtime).
"""

from __future__ import annotations

import glob
import os
import time
from typing import ClassVar, Literal

from pydantic import Field

from data_pipes.code.git_cli import GitError
from data_pipes.code.git_reader import is_git_repo, opened, read_commits, read_tree_files, repo_name, resolve
from data_pipes.code.records import to_frames
from data_pipes.io.records import make_id, quarantined_record
from data_pipes.io.shards import ShardResult, write_shard
from flows.fingerprint import sha
from tasks._code_params import CodeFileParams, code_options, language_counts, source_report
from tasks._file_source import check_patterns
from tasks.base import DataType, Kind, RunContext, ShardTask
from tasks.registry import register


class GitHistoryParams(CodeFileParams):
    paths: list[str] = Field(
        min_length=1, description="git repositories, .bundle files, or folders of them; globs"
    )
    ref: str = Field("HEAD", description="the branch, tag or commit whose tree and history are read")
    emit: list[Literal["files", "commits"]] = Field(["files", "commits"], min_length=1)
    max_diff_kb: float = Field(256.0, gt=0, description="longer diffs are cut (meta.diff_truncated)")
    max_commits: int | None = Field(None, ge=0, description="only the newest N commits of each history")


def list_git_repos(paths: list[str]) -> list[str]:
    """Repositories and bundles of ``paths``, sorted by name; raises FileNotFoundError / ValueError."""
    found: dict[str, str] = {}
    for pattern in paths:
        matches = sorted(glob.glob(pattern)) if any(c in pattern for c in "*?[") else [pattern]
        if not matches or not os.path.exists(matches[0]):
            raise FileNotFoundError(f"no repository or bundle at {pattern!r}")
        for path in matches:
            if path.endswith(".bundle") or is_git_repo(path):
                candidates = [path]
            elif os.path.isdir(path):
                candidates = [
                    e.path
                    for e in sorted(os.scandir(path), key=lambda e: e.name)
                    if e.name.endswith(".bundle") or (e.is_dir() and is_git_repo(e.path))
                ]
            else:
                raise ValueError(f"{path!r} is neither a git repository, a .bundle nor a folder of them")
            for repo in candidates:
                name = repo_name(repo)
                if found.setdefault(name, repo) != repo:
                    raise ValueError(f"two repositories named {name!r}: {found[name]!r} and {repo!r}")
    return [found[n] for n in sorted(found)]


def _state(path: str, ref: str) -> str:
    if path.endswith(".bundle"):
        st = os.stat(path)
        return f"{path}|{st.st_size}|{st.st_mtime_ns}"
    try:
        return f"{path}|{resolve(path, ref)}"
    except GitError as exc:
        return f"{path}|error {exc}"


@register
class GitHistory(Kind):
    name: ClassVar[str] = "git_history"
    Params = GitHistoryParams
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    path_params: ClassVar[tuple[str, ...]] = ("paths",)
    packages = ("polars", "pyarrow")
    description = "git repositories and bundles: files at a ref and one document per commit (message + diff)"

    def check_params(self, params: GitHistoryParams) -> list[tuple[tuple[str | int, ...], str]]:
        return check_patterns(params.paths, list_git_repos)

    def signature(self, params: GitHistoryParams) -> str:
        try:
            return sha(*(_state(p, params.ref) for p in list_git_repos(params.paths)))
        except (FileNotFoundError, ValueError) as exc:
            return f"missing: {exc}"

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: GitHistoryParams = ctx.params  # type: ignore[assignment]
        source = params.source or ctx.node_id
        return [
            ShardTask(i, {"path": p, "source": source}, label=repo_name(p))
            for i, p in enumerate(list_git_repos(params.paths))
        ]

    def run_shard(self, params: GitHistoryParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        path, source = task.payload["path"], task.payload["source"]
        name = repo_name(path)
        records: list[dict] = []
        try:
            with opened(path) as repo:
                commit = resolve(repo, params.ref)
                if "files" in params.emit:
                    records.extend(read_tree_files(repo, name, commit, code_options(params, source)))
                if "commits" in params.emit:
                    records.extend(
                        read_commits(
                            repo, name, commit, source, int(params.max_diff_kb * 1024), params.max_commits
                        )
                    )
        except GitError as exc:
            records.append(
                quarantined_record(
                    rid=make_id("git", name, "repository"),
                    source=source,
                    url=f"git://{name}",
                    error=f"git_repository_error: {exc}",
                )
            )
        kept, dropped, bad = to_frames(records)
        return write_shard(
            out_dir,
            task.index,
            kept,
            rows_in=len(records),
            dropped=dropped,
            quarantined=bad,
            started=started,
            extra={"languages": language_counts(kept)},
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        source_report(ctx, results)
