"""Input path expansion and file format detection for the readers.

``expand_paths`` turns the ``inputs:`` patterns of a source node into a sorted, de-duplicated list of absolute
file paths: a pattern may be a file, a directory (walked recursively, hidden entries skipped) or a glob
(``**`` spans directories). A pattern that matches no file is an error that names it, so a typo never silently
reads nothing.
"""

from __future__ import annotations

import glob
import os

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


def _walk_files(directory: str) -> list[str]:
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(os.path.join(root, f) for f in files if not f.startswith("."))
    return found


def _expand_one(pattern: str, base_dir: str | None) -> list[str]:
    full = os.path.expanduser(pattern)
    if base_dir is not None and not os.path.isabs(full):
        full = os.path.join(base_dir, full)
    matches = glob.glob(full, recursive=True) if glob.has_magic(full) else [full]
    files: list[str] = []
    for match in matches:
        if os.path.isdir(match):
            files.extend(_walk_files(match))
        elif os.path.isfile(match):
            files.append(match)
    return [os.path.abspath(f) for f in files]


def expand_paths(patterns: list[str], base_dir: str | None = None) -> list[str]:
    """Files named by ``patterns`` (files, directories, globs) as sorted, de-duplicated absolute paths.

    Relative patterns are taken relative to ``base_dir`` (the current directory when None). Raises
    ``FileNotFoundError`` naming the first pattern that matches no file.
    """
    if isinstance(patterns, str):
        raise TypeError(f"expand_paths takes a list of patterns, got the string {patterns!r}")
    result: set[str] = set()
    for pattern in patterns:
        files = _expand_one(pattern, base_dir)
        if not files:
            where = f" (relative to {base_dir})" if base_dir and not os.path.isabs(pattern) else ""
            raise FileNotFoundError(f"input pattern {pattern!r}{where} matches no file")
        result.update(files)
    return sorted(result)
