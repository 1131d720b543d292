"""Shared base of the kinds that read local files (`files`, `warc`, `issues_prs`): path checks at validation, a
fingerprint over every file's content (by its path under the patterns' folder, never where that folder lies), and
shards of consecutive files of about ``shard_mb`` each, in the order the patterns are listed (``file_listing``).

What the patterns name but cannot be read as a file (a dangling symlink, a symlink loop, a FIFO, a folder that
cannot be listed: see ``data_pipes.io.paths.scan_paths``) travels in its shard's payload under ``bad`` and comes
out as one quarantined row with its error (``bad_input_records``), so it is counted, never skipped, and never
opened (a FIFO would block a worker forever).

The kinds' params need ``paths`` (files, folders or globs), ``shard_mb`` and ``source``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeVar

from data_pipes.io.digests import file_digests
from data_pipes.io.paths import InputEntry, expand_paths, scan_paths
from data_pipes.io.records import make_id, quarantined_record
from data_pipes.io.remote import RemoteAccessError, is_url, is_url_dir
from flows.fingerprint import sha
from tasks.base import Kind, KindParams, RunContext, ShardTask

T = TypeVar("T")


def file_listing(patterns: list[str]) -> list[InputEntry]:
    """Every entry the patterns name, in the order the patterns are listed (within one pattern sorted by path,
    for determinism); a path that two patterns name comes once, where it first appears. Files come with size
    and mtime, unreadable entries with their error. The order decides which copy a "keep the first" dedup
    keeps, so it is the user's: list the preferred source first."""
    entries: dict[str, InputEntry] = {}
    for pattern in patterns:
        for entry in scan_paths([pattern]):
            entries.setdefault(entry.path, entry)
    return list(entries.values())


def bad_input_records(task: ShardTask, id_path: Callable[[str], str]) -> list[dict[str, str]]:
    """One quarantined record per entry of the shard that cannot be read as a file (``payload["bad"]``)."""
    source = task.payload["source"]
    return [  # named by ``id_path`` (relative), so the rows hold no path of this machine
        quarantined_record(
            rid=make_id(source, id_path(path), 0),
            source=source,
            url=id_path(path),
            error=error.replace(path, id_path(path)),
        )
        for path, error in task.payload.get("bad", [])
    ]


def static_root(pattern: str) -> str:
    """The directory part of a pattern before any glob character: what its files are named relative to."""
    isdir = is_url_dir if is_url(pattern) else os.path.isdir  # s3://bucket/prefix: asked of the object store
    if isdir(pattern):
        return pattern
    head = pattern
    while any(ch in head for ch in "*?["):
        head = os.path.dirname(head)
    return head if isdir(head) else os.path.dirname(head)


def _common_root(roots: list[str]) -> str:
    """The longest folder prefix shared by ``roots`` (by path segments, so ``s3://bucket/a`` and
    ``s3://bucket/b`` share ``s3://bucket``); "" when they share nothing but the filesystem's root or a scheme."""
    parts = [r.rstrip("/").split("/") for r in roots]
    shared = []
    for segments in zip(*parts, strict=False):
        if len(set(segments)) != 1:
            break
        shared.append(segments[0])
    common = "/".join(shared)
    return "" if common.strip("/") == "" or common.endswith(":/") or common.endswith(":") else common


@functools.lru_cache(maxsize=64)
def _naming(patterns: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    """Each pattern's folder, and the folder files are named relative to when the patterns have several."""
    roots = tuple(static_root(p) for p in patterns)
    distinct = list(dict.fromkeys(roots))
    return roots, (distinct[0] if len(distinct) == 1 else _common_root(distinct))


def relative_to_patterns(path: str, patterns: list[str]) -> str:
    """How output rows name an input file, so they are the same wherever the data (or the checkout holding it)
    lies: relative to its pattern's folder when all patterns share one folder; with several folders, relative to
    their common folder, so ``a/x.txt`` and ``b/x.txt`` stay apart (with no common folder: the pattern folder's
    name, then the path inside it). A path under no pattern's folder is named by its file name."""
    roots, base = _naming(tuple(patterns))
    for root in roots:
        if path.startswith(root.rstrip(os.sep) + os.sep):
            if base and path.startswith(base.rstrip(os.sep) + os.sep):
                return os.path.relpath(path, base)
            return os.path.join(os.path.basename(root.rstrip(os.sep)), os.path.relpath(path, root))
    return os.path.basename(path)


def check_patterns(
    patterns: list[str], lister: Callable[[list[str]], object]
) -> list[tuple[tuple[str | int, ...], str]]:
    """One problem per pattern that ``lister`` rejects (nothing matches, not a repository, ...)."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for i, pattern in enumerate(patterns):
        try:
            lister([pattern])
        except RemoteAccessError as exc:  # the object store, not the path: the message says what to check
            problems.append((("paths", i), str(exc)))
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
            except RemoteAccessError as exc:  # the object store, not the path: the message says what to check
                problems.append((("paths", i), str(exc)))
            except FileNotFoundError as exc:
                problems.append(
                    (("paths", i), f"{exc}; check the path (relative paths start at pipeline.yaml)")
                )
        return problems

    def signature(self, params: KindParams) -> str:
        """Each entry by its path under the patterns' common folder and its content's sha256 (or its error):
        moving the data, or the checkout that holds it, or touching a file changes nothing; a changed byte or
        name does."""
        patterns: list[str] = params.paths  # type: ignore[attr-defined]
        if not patterns:
            return ""
        try:
            entries = file_listing(patterns)
        except FileNotFoundError as exc:
            return f"missing: {exc}"
        root = os.path.commonpath([os.path.abspath(static_root(p)) for p in patterns])
        readable = [e.path for e in entries if not e.error]
        digests = dict(zip(readable, file_digests(readable), strict=True))
        parts = []
        for e in entries:
            rel = os.path.relpath(e.path, root)
            parts.append(f"{rel}|{e.error.replace(e.path, rel) if e.error else digests[e.path]}")
        return sha(*parts)

    def shard_payload(self, params: KindParams, files: list[str], source: str) -> dict[str, Any]:
        """What one shard task carries; kinds add their own keys."""
        return {"files": files, "source": source}

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params = ctx.params
        source = params.source or ctx.node_id  # type: ignore[attr-defined]
        listing = ((e, e.size) for e in file_listing(params.paths))  # type: ignore[attr-defined]
        groups = group_by_size(listing, params.shard_mb)  # type: ignore[attr-defined]
        tasks = []
        for i, group in enumerate(groups):
            payload = self.shard_payload(params, [e.path for e in group if not e.error], source)
            bad = [(e.path, e.error) for e in group if e.error]
            if bad:  # only when there is any, so shards of clean inputs keep their payload (and resume)
                payload["bad"] = bad
            tasks.append(ShardTask(i, payload, label=group[0].path))
        return tasks
