"""Input path expansion and file format detection for the readers.

``expand_paths`` turns the ``inputs:`` patterns of a source node into a sorted, de-duplicated list of absolute
file paths: a pattern may be a file, a directory (walked recursively, hidden entries skipped) or a glob
(``**`` spans directories). A pattern that matches no file is an error that names it, so a typo never silently
reads nothing. ``scan_paths`` also returns what cannot be read as a file (a dangling symlink, a symlink loop, a
FIFO or other special file, a folder that cannot be listed) as an entry with its error, so the sources quarantine
it: nothing is skipped silently, and nothing hangs or crashes a run.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import stat
from dataclasses import dataclass

from data_pipes.io.remote import expand_url, is_url

# Extension (lower case, after removing a trailing ".gz") -> format.
FORMAT_BY_EXTENSION: dict[str, str] = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".rst": "text",
    ".log": "text",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
FORMATS = ("text", "html", "jsonl", "parquet")
GZIP_FORMATS = frozenset({"text", "html", "jsonl"})


class UnknownFormatError(ValueError):
    """A file whose extension names no supported format."""


def is_gzip_path(path: str) -> bool:
    """True when the path ends in ``.gz`` (the readers then decompress it)."""
    return path.lower().endswith(".gz")


def detect_format(path: str) -> str:
    """``'text' | 'html' | 'jsonl' | 'parquet'`` from the extension, ignoring a trailing ``.gz``."""
    name = os.path.basename(path).lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[: -len(".gz")]
    fmt = FORMAT_BY_EXTENSION.get(os.path.splitext(name)[1])
    if fmt is None:
        known = ", ".join(sorted(FORMAT_BY_EXTENSION))
        raise UnknownFormatError(
            f"cannot tell the format of {path!r} from its extension; known extensions: {known} "
            "(each optionally followed by .gz, except Parquet); rename the file or set the format explicitly"
        )
    if gz and fmt not in GZIP_FORMATS:
        raise UnknownFormatError(
            f"{path!r}: gzipped {fmt} is not supported (Parquet compresses its own pages); "
            "decompress the file"
        )
    return fmt


@dataclass(frozen=True)
class InputEntry:
    """One entry an input pattern names. ``error`` is set (``"<class>: <detail>"``) when it cannot be read as a
    file; the sources quarantine such an entry with that error instead of failing, hanging or skipping it."""

    path: str
    size: int = 0
    mtime_ns: int = 0
    error: str = ""


_KIND_OF_MODE = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _bad(path: str, error_class: str, detail: str) -> InputEntry:
    return InputEntry(path, error=f"{error_class}: {detail} ({path})")


def _follow_error(path: str, exc: OSError) -> InputEntry:
    """An entry whose ``os.stat`` failed although ``os.lstat`` worked: a symlink that leads nowhere."""
    if exc.errno == errno.ELOOP:
        return _bad(path, "symlink_loop", "the symlink resolves to itself")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return _bad(path, "dangling_symlink", f"the symlink points to {target!r}, which does not exist")
    return _bad(path, "read_error", exc.strerror or type(exc).__name__)


def _classify(path: str, st: os.stat_result) -> InputEntry | None:
    """A file entry, an error entry for what is not a regular file, or None for a directory."""
    if stat.S_ISDIR(st.st_mode):
        return None
    if stat.S_ISREG(st.st_mode):
        return InputEntry(path, st.st_size, st.st_mtime_ns)
    what = next((name for test, name in _KIND_OF_MODE if test(st.st_mode)), "not a regular file")
    return _bad(path, "not_a_regular_file", f"{what}; only regular files are read")


def _walk(directory: str, st: os.stat_result, out: list[InputEntry]) -> None:
    """Every entry under ``directory`` (hidden ones skipped), following symlinks to folders except back into a
    folder that holds them (a loop). A folder that cannot be listed is an error entry, never skipped silently."""
    stack: list[tuple[str, tuple[tuple[int, int], ...]]] = [(directory, ((st.st_dev, st.st_ino),))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            out.append(_bad(folder, "unreadable_directory", exc.strerror or type(exc).__name__))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                est = entry.stat(follow_symlinks=True)
            except OSError as exc:
                try:
                    entry.stat(follow_symlinks=False)
                except OSError as exc2:
                    out.append(_bad(entry.path, "read_error", exc2.strerror or type(exc2).__name__))
                    continue
                out.append(_follow_error(entry.path, exc))
                continue
            found = _classify(entry.path, est)
            if found is not None:
                out.append(found)
                continue
            key = (est.st_dev, est.st_ino)
            if key in ancestors:
                out.append(
                    _bad(entry.path, "symlink_loop", "the symlink leads back to a folder that holds it")
                )
                continue
            subfolders.append((entry.path, (*ancestors, key)))
        stack.extend(reversed(subfolders))


def _expand_one(pattern: str, base_dir: str | None) -> list[InputEntry]:
    if is_url(pattern):  # s3://bucket/prefix/*.warc.gz and the like: listed through fsspec
        return [InputEntry(url, size) for url, size in expand_url(pattern)]
    full = os.path.expanduser(pattern)
    if base_dir is not None and not os.path.isabs(full):
        full = os.path.join(base_dir, full)
    if glob.has_magic(full):
        return _expand_glob(full)
    found: list[InputEntry] = []
    for match in [full]:
        match = os.path.abspath(match)
        try:
            os.lstat(match)
        except OSError:
            continue  # nothing there: the pattern matches nothing
        try:
            st = os.stat(match)
        except OSError as exc:
            found.append(_follow_error(match, exc))
            continue
        entry = _classify(match, st)
        if entry is None:
            _walk(match, st, found)
        else:
            found.append(entry)
    return found


def _component_regex(part: str) -> str:
    """One path component of a glob as a regex that never crosses ``/``."""
    out, i = "", 0
    while i < len(part):
        ch = part[i]
        if ch == "*":
            out += "[^/]*"
        elif ch == "?":
            out += "[^/]"
        elif ch == "[" and "]" in part[i + 2 :]:
            end = part.index("]", i + 2)
            body = part[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]"
            i = end
        else:
            out += re.escape(ch)
        i += 1
    return out


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` (absolute, ``**`` spanning folders) as a regex over absolute paths; a path also matches when
    one of its folders does, as a folder named by a pattern is read whole."""
    regex = ""
    for part in pattern.strip("/").split("/"):
        regex += "(?:/[^/]+)*" if part == "**" else "/" + _component_regex(part)
    return re.compile(regex + "(?:/.*)?")


def _expand_glob(pattern: str) -> list[InputEntry]:
    """Entries matching a glob, found by walking its non-glob root with the loop-safe walk (``glob.glob``
    follows symlink loops, and with two looping links the paths it tries grow exponentially)."""
    parts = pattern.split("/")
    static = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    root = "/".join(parts[:static]) or "/"
    try:
        st = os.stat(root)
    except OSError:
        return []
    if not stat.S_ISDIR(st.st_mode):
        return []
    entries: list[InputEntry] = []
    _walk(root, st, entries)
    regex = _glob_regex(os.path.normpath(pattern))
    # a folder that cannot be listed may hold matches: it is reported whatever its name
    return [e for e in entries if regex.fullmatch(e.path) or e.error.startswith("unreadable_directory")]


def scan_paths(patterns: list[str], base_dir: str | None = None) -> list[InputEntry]:
    """Entries named by ``patterns`` (files, directories, globs), sorted by path and de-duplicated: regular
    files with their size and mtime, and error entries for what cannot be read as a file (dangling symlinks,
    symlink loops, FIFOs and other special files, folders that cannot be listed).

    Relative patterns are taken relative to ``base_dir`` (the current directory when None). Raises
    ``FileNotFoundError`` naming the first pattern that matches nothing at all.
    """
    if isinstance(patterns, str):
        raise TypeError(f"expand_paths takes a list of patterns, got the string {patterns!r}")
    result: dict[str, InputEntry] = {}
    for pattern in patterns:
        entries = _expand_one(pattern, base_dir)
        if not entries:
            where = f" (relative to {base_dir})" if base_dir and not os.path.isabs(pattern) else ""
            raise FileNotFoundError(f"input pattern {pattern!r}{where} matches no file")
        for entry in entries:
            result.setdefault(entry.path, entry)
    return [result[p] for p in sorted(result)]


def expand_paths(patterns: list[str], base_dir: str | None = None) -> list[str]:
    """The paths of ``scan_paths``: sorted, de-duplicated absolute paths, including the entries that cannot be
    read as files (the sources quarantine those). Raises ``FileNotFoundError`` as ``scan_paths`` does."""
    return [entry.path for entry in scan_paths(patterns, base_dir)]
