"""`git_history`: local git repositories and bundles into code file documents and commit documents.

``paths`` name repositories (work trees or bare), ``.bundle`` files, or folders holding either. Each
repository is one shard (its history is read in order by one worker). ``emit`` picks the outputs: ``files``
(the tree of ``ref``, the same rules and reasons as ``code_repos``) and ``commits`` (one document per
commit of ``ref``'s history, in history order: message plus unified diff, docs/CODE_CONTRACT.md). A damaged
object quarantines only the file or commit that needs it (``git_object_error``); a repository git cannot
open is one ``git_repository_error`` row. The fingerprint covers each repository's name and resolved ``ref`` (and
each bundle's bytes), never where it is checked out.
"""

from __future__ import annotations

import glob
import hashlib
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
    name: str | None = Field(
        None,
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="the repository's name in ids, urls and meta when `paths` names one repository (default: its "
        "folder's or bundle's name; set it when that folder is a checkout whose name varies, e.g. `paths: [.]`, "
        "so the output does not depend on where the repository is checked out)",
    )


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


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _state(path: str, ref: str) -> str:
    """What a repository's documents depend on besides its name: the commit ``ref`` resolves to (a bundle's
    bytes). Never its folder: the same repository checked out elsewhere gives the same documents."""
    if path.endswith(".bundle"):
        return f"bundle {_file_sha256(path)}"
    try:
        return f"commit {resolve(path, ref)}"
    except GitError as exc:
        return f"error {str(exc).replace(path, '<repo>')}"


def _names(params: GitHistoryParams, repos: list[str]) -> dict[str, str]:
    """Each repository's name in the documents: ``params.name`` for a single repository, else its own."""
    if params.name is not None and len(repos) == 1:
        return {repos[0]: params.name}
    return {p: repo_name(p) for p in repos}


@register
class GitHistory(Kind):
    name: ClassVar[str] = "git_history"
    Params = GitHistoryParams
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    path_params: ClassVar[tuple[str, ...]] = ("paths",)
    packages = ("polars", "pyarrow")
    description = "git repositories and bundles: files at a ref and one document per commit (message + diff)"

    def check_params(self, params: GitHistoryParams) -> list[tuple[tuple[str | int, ...], str]]:
        problems = check_patterns(params.paths, list_git_repos)
        if params.name is not None and not problems:
            repos = list_git_repos(params.paths)
            if len(repos) > 1:
                problems.append(
                    (("name",), f"`name` names one repository, but `paths` finds {len(repos)}; remove `name`")
                )
        return problems

    def signature(self, params: GitHistoryParams) -> str:
        try:
            repos = list_git_repos(params.paths)
        except (FileNotFoundError, ValueError) as exc:
            return f"missing: {exc}"
        names = _names(params, repos)
        return sha(*(f"{names[p]}|{_state(p, params.ref)}" for p in repos))

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: GitHistoryParams = ctx.params  # type: ignore[assignment]
        source = params.source or ctx.node_id
        repos = list_git_repos(params.paths)
        names = _names(params, repos)
        return [
            ShardTask(i, {"path": p, "source": source, "name": names[p]}, label=names[p])
            for i, p in enumerate(repos)
        ]

    def run_shard(self, params: GitHistoryParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        path, source = task.payload["path"], task.payload["source"]
        name = task.payload.get("name") or repo_name(path)
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
                    error=f"git_repository_error: {str(exc).replace(path, name)}",
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
