"""Shared base of the kinds that read local files (`files`, `warc`, `issues_prs`): path checks at validation, a
fingerprint over every file's path, size and mtime, and shards of consecutive files of about ``shard_mb`` each.

The kinds' params need ``paths`` (files, folders or globs), ``shard_mb`` and ``source``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

from data_pipes.io.readers import expand_paths
from flows.fingerprint import sha
from tasks.base import Kind, KindParams, RunContext, ShardTask

T = TypeVar("T")


def file_listing(patterns: list[str]) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every file the patterns name, sorted."""
    out = []
    for path in expand_paths(patterns):
        st = os.stat(path)
        out.append((path, st.st_size, st.st_mtime_ns))
    return out


def check_patterns(
    patterns: list[str], lister: Callable[[list[str]], object]
) -> list[tuple[tuple[str | int, ...], str]]:
    """One problem per pattern that ``lister`` rejects (nothing matches, not a repository, ...)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for i, pattern in enumerate(patterns):
        try:
            lister([pattern])
        except (FileNotFoundError, ValueError) as exc:
            problems.append((("paths", i), f"{exc}; check the path (relative paths start at pipeline.yaml)"))
    return problems


def group_by_size(items: Iterable[tuple[T, int]], shard_mb: float) -> list[list[T]]:
    """Consecutive items, each group about ``shard_mb`` of input (a larger item is a group of its own)."""
    budget = int(shard_mb * 1024 * 1024)
    groups: list[list[T]] = [[]]
    size = 0
    for item, nbytes in items:
        if groups[-1] and size + nbytes > budget:
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += nbytes
    return [g for g in groups if g]


class FileSource(Kind):
    path_params: ClassVar[tuple[str, ...]] = ("paths",)

    def check_params(self, params: KindParams) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for i, pattern in enumerate(params.paths):  # type: ignore[attr-defined]
            try:
                expand_paths([pattern])
            except FileNotFoundError as exc:
                problems.append(
                    (("paths", i), f"{exc}; check the path (relative paths start at pipeline.yaml)")
                )
        return problems

    def signature(self, params: KindParams) -> str:
        if not params.paths:  # type: ignore[attr-defined]
            return ""
        try:
            return sha(*(f"{p}|{s}|{m}" for p, s, m in file_listing(params.paths)))  # type: ignore[attr-defined]
        except FileNotFoundError as exc:
            return f"missing: {exc}"

    def shard_payload(self, params: KindParams, files: list[str], source: str) -> dict[str, Any]:
        """What one shard task carries; kinds add their own keys."""
        return {"files": files, "source": source}

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params = ctx.params
        source = params.source or ctx.node_id  # type: ignore[attr-defined]
        listing = ((path, size) for path, size, _ in file_listing(params.paths))  # type: ignore[attr-defined]
        groups = group_by_size(listing, params.shard_mb)  # type: ignore[attr-defined]
        return [ShardTask(i, self.shard_payload(params, g, source), label=g[0]) for i, g in enumerate(groups)]
