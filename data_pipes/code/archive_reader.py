"""Read a tarball or zip archive (one repository) into code records, streaming, never extracting to disk.

Tarballs (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) are read in one pass (``tarfile``
stream mode); zips through their central directory. When every member sits under one top-level folder
(``anyhow-1.0.69/...``) that folder is stripped from the paths. Member bytes are read only for files the
rules may keep (known language, not too large). Symlinks and hard links are resolved among the members,
never followed outside the archive. A damaged archive keeps the members read before the damage and adds one
``code_archive_corrupt`` quarantine row.
"""

from __future__ import annotations

import lzma
import os
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from data_pipes.code.globs import selected
from data_pipes.code.languages import language_of
from data_pipes.code.records import SKIPPED_DIRS, CodeOptions, Entry, dropped, file_record, quarantined

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar", ".zip")
ARCHIVE_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
    ValueError,
    RuntimeError,
)
MAX_LINK_HOPS = 40


def archive_name(path: str) -> str | None:
    """The repository name of an archive path (its file name without the archive suffix), None if not one."""
    base = os.path.basename(path)
    for suffix in ARCHIVE_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return None


@dataclass
class Member:
    name: str  # as stored, '/'-separated
    kind: str  # file | symlink | hardlink | other
    size: int = 0
    link: str = ""
    data: bytes | None = None  # read only when worth it


def _wanted(name: str, size: int, opts: CodeOptions) -> bool:
    return (
        language_of(name, opts.languages) is not None or opts.other_files == "keep"
    ) and size <= opts.max_bytes


def _tar_members(path: str, opts: CodeOptions, members: list[Member]) -> None:
    with tarfile.open(path, mode="r|*") as tf:
        for info in tf:
            name = info.name.removeprefix("./")
            if info.isdir() or info.type in (tarfile.XGLTYPE, tarfile.XHDTYPE) or name == "pax_global_header":
                continue
            if info.issym() or info.islnk():
                members.append(Member(name, "symlink" if info.issym() else "hardlink", link=info.linkname))
            elif info.isfile():
                m = Member(name, "file", info.size)
                if _wanted(name, info.size, opts):
                    fh = tf.extractfile(info)
                    m.data = fh.read() if fh is not None else b""
                members.append(m)
            else:
                members.append(Member(name, "other"))


def _zip_members(path: str, opts: CodeOptions, members: list[Member]) -> None:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            mode = (info.external_attr >> 16) & 0o170000
            if mode == 0o120000:  # a symlink stored by Info-ZIP: the data is the target
                members.append(
                    Member(info.filename, "symlink", link=zf.read(info).decode("utf-8", "replace"))
                )
                continue
            m = Member(info.filename, "file", info.file_size)
            if _wanted(info.filename, info.file_size, opts):
                with zf.open(info) as fh:
                    m.data = fh.read(opts.max_bytes + 1)
            members.append(m)


def _prefix(names: list[str]) -> str:
    """The single top-level folder shared by all member names (``"top/"``), else empty."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1 and all("/" in n for n in names):
        return tops.pop() + "/"
    return ""


def _resolve(name: str, members: dict[str, Member], dirs: set[str]) -> str:
    """``inside`` / ``outside`` / ``loop`` / ``broken`` for a link member, following links among members."""
    seen = set()
    current = members[name]
    while current.kind in ("symlink", "hardlink"):
        if current.name in seen or len(seen) > MAX_LINK_HOPS:
            return "loop"
        seen.add(current.name)
        base = "" if current.kind == "hardlink" else posixpath.dirname(current.name)
        target = posixpath.normpath(posixpath.join(base, current.link))
        if current.link.startswith("/") or target == ".." or target.startswith("../"):
            return "outside"
        if target in dirs:
            return "inside"
        if target not in members:
            return "broken"
        current = members[target]
    return "inside"


def read_archive(path: str, repo: str, opts: CodeOptions) -> Iterator[dict]:
    """Records of every selected member of the archive at ``path`` (see the module docstring)."""
    members: list[Member] = []
    error = None
    try:
        (_zip_members if path.lower().endswith(".zip") else _tar_members)(path, opts, members)
    except ARCHIVE_ERRORS as exc:
        error = f"{type(exc).__name__}: {exc} (after {len(members)} members of {os.path.basename(path)})"
    by_name = {m.name: m for m in members}
    dirs = {posixpath.dirname(m.name) for m in members}
    dirs |= {"/".join(d.split("/")[:i]) for d in dirs for i in range(1, d.count("/") + 1)}
    cut = len(_prefix([m.name for m in members])) if members else 0
    for m in members:
        rel = m.name[cut:]
        if any(part in SKIPPED_DIRS for part in rel.split("/")[:-1]) or not selected(
            rel, opts.include, opts.exclude
        ):
            continue
        entry = Entry(repo, rel, "archive")
        if m.kind == "file":
            data = m.data
            yield file_record(entry, opts, m.size, lambda d=data: d if d is not None else b"")
        elif m.kind == "other":
            yield dropped(entry, opts, "code_not_regular_file")
        else:
            fate = _resolve(m.name, by_name, dirs)
            if fate == "loop":
                yield quarantined(entry, opts, "code_symlink_loop", f"{m.link!r} loops")
            elif fate == "broken":
                yield quarantined(
                    entry, opts, "code_broken_symlink", f"target {m.link!r} is not in the archive"
                )
            else:
                yield dropped(entry, opts, "code_symlink", language_of(rel, opts.languages) or "")
    if error is not None:
        yield quarantined(Entry(repo, os.path.basename(path), "archive"), opts, "code_archive_corrupt", error)
