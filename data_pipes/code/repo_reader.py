"""Read a repository directory into code records without following symlinks.

The walk is ``os.scandir`` in sorted name order (deterministic), skipping ``.git``/``.hg``/``.svn``.
Symlinks are never followed: each one is an entry of its own, dropped when it resolves (inside the
repository its target is read as its own file; outside it is none of our business) and quarantined when it
loops or dangles. A folder that cannot be listed is quarantined as one entry.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from typing import NamedTuple

from data_pipes.code.globs import selected
from data_pipes.code.languages import language_of
from data_pipes.code.records import SKIPPED_DIRS, CodeOptions, Entry, dropped, file_record, quarantined


class Listed(NamedTuple):
    """One entry found by the walk: ``kind`` is file, symlink, other or error (``detail`` says why)."""

    path: str  # inside the repo, '/'-separated
    kind: str
    size: int = 0
    mtime_ns: int = 0
    detail: str = ""


def walk_repo(root: str, rel: str = "") -> Iterator[Listed]:
    """Every entry under ``root`` in sorted order (see the module docstring); never raises for bad input."""
    folder = os.path.join(root, rel) if rel else root
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield Listed(rel or ".", "error", detail=f"cannot list folder: {exc.strerror or exc}")
        return
    for e in entries:
        path = f"{rel}/{e.name}" if rel else e.name
        try:
            if e.is_symlink():
                yield Listed(path, "symlink")
            elif e.is_dir(follow_symlinks=False):
                if e.name not in SKIPPED_DIRS:
                    yield from walk_repo(root, path)
            elif e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                yield Listed(path, "file", st.st_size, st.st_mtime_ns)
            else:
                yield Listed(path, "other")
        except OSError as exc:
            yield Listed(path, "error", detail=str(exc.strerror or exc))


def symlink_record(root: str, entry: Entry, opts: CodeOptions) -> dict:
    """Dropped (resolves) or quarantined (loop, dangling) record of a symlink; the link is never followed."""
    link = os.path.join(root, *entry.path.split("/"))
    language = language_of(entry.path, opts.languages) or ""
    try:
        os.path.realpath(link, strict=True)
    except FileNotFoundError:
        return quarantined(entry, opts, "code_broken_symlink", f"target {os.readlink(link)!r} does not exist")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return quarantined(entry, opts, "code_symlink_loop", f"{os.readlink(link)!r} loops")
        return quarantined(entry, opts, "code_read_error", f"cannot resolve symlink: {exc.strerror or exc}")
    return dropped(entry, opts, "code_symlink", language)


def read_repo_dir(root: str, repo: str, opts: CodeOptions) -> Iterator[dict]:
    """Records of every selected entry of the repository folder ``root``."""
    for item in walk_repo(root):
        if not selected(item.path, opts.include, opts.exclude):
            continue
        entry = Entry(repo, item.path, "dir")
        if item.kind == "symlink":
            yield symlink_record(root, entry, opts)
        elif item.kind == "other":
            yield dropped(entry, opts, "code_not_regular_file")
        elif item.kind == "error":
            yield quarantined(entry, opts, "code_read_error", item.detail)
        else:
            full = os.path.join(root, *item.path.split("/"))
            try:
                yield file_record(entry, opts, item.size, lambda p=full: _read(p, opts.max_bytes))
            except OSError as exc:
                yield quarantined(entry, opts, "code_read_error", str(exc.strerror or exc))


def _read(path: str, max_bytes: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(max_bytes + 1)
