"""Code file records: the one place that decides a file's fate (kept, dropped or quarantined).

Every reader (directories, archives, git) lists entries and hands each file's bytes to ``file_record``, so
the three sources apply the same rules and reasons (docs/CODE_CONTRACT.md). A record is a dict shaped like
the io readers' records; a *dropped* record carries a ``reason`` key, a quarantined one an ``error`` key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import polars as pl

from data_pipes.code.languages import language_of
from data_pipes.io.decoding import binary_reason, decode_bytes, encoding_meta, text_binary_reason
from data_pipes.io.documents import DOC_COLUMNS, DOC_SCHEMA, QUARANTINE_SCHEMA
from data_pipes.io.records import good_record, make_id, quarantined_record

DROPPED_SCHEMA: dict[str, pl.DataType] = {**DOC_SCHEMA, "reason": pl.String()}
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})


@dataclass(frozen=True)
class CodeOptions:
    """What decides a file's fate; picklable, it travels to the workers."""

    source: str
    max_bytes: int
    languages: dict[str, str] | None = None  # None: the default table
    other_files: str = "drop"  # drop | keep (language "other")
    decode: str = "utf8"  # utf8 | detect
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Entry:
    """One file entry of a repository, as a reader lists it."""

    repo: str
    path: str  # inside the repo, '/'-separated
    origin: str  # dir | archive | git
    commit: str | None = None

    def rid(self) -> str:
        if self.origin == "git":
            return make_id("git", f"{self.repo}/{self.path}", self.commit or "")
        return make_id("code", f"{self.repo}/{self.path}", 0)

    def url(self) -> str:
        suffix = f"@{self.commit}" if self.commit else ""
        return f"repo://{self.repo}/{self.path}{suffix}"

    def meta(self, language: str, size: int) -> dict:
        meta = {
            "format": "code",
            "repo": self.repo,
            "path": self.path,
            "language": language,
            "size": size,
            "origin": self.origin,
        }
        if self.commit:
            meta["commit"] = self.commit
        return meta


def dropped(entry: Entry, opts: CodeOptions, reason: str, language: str = "", size: int = 0) -> dict:
    """A dropped file: the document columns with empty text, plus ``reason``."""
    rec = good_record(
        rid=entry.rid(), text="", source=opts.source, url=entry.url(), meta=entry.meta(language, size)
    )
    rec["reason"] = reason
    return rec


def quarantined(entry: Entry, opts: CodeOptions, error_class: str, message: str) -> dict:
    """A quarantined entry with ``"<error_class>: <message>"``."""
    return quarantined_record(
        rid=entry.rid(), source=opts.source, url=entry.url(), error=f"{error_class}: {message}"
    )


def language_for(entry: Entry, opts: CodeOptions) -> str | None:
    """The entry's language, ``other`` for unknown files kept by ``other_files: keep``, None to drop it."""
    language = language_of(entry.path, opts.languages)
    if language is None and opts.other_files == "keep":
        return "other"
    return language


def file_record(entry: Entry, opts: CodeOptions, size: int, read: Callable[[], bytes]) -> dict:
    """The record of one regular file. ``read`` is only called for a file worth reading; its exceptions are
    the caller's (they differ per source)."""
    language = language_for(entry, opts)
    if language is None:
        return dropped(entry, opts, "code_unknown_language", "", size)
    if size > opts.max_bytes:
        return dropped(entry, opts, "code_too_large", language, size)
    data = read()
    if len(data) > opts.max_bytes:  # the size we were told may be stale or absent
        return dropped(entry, opts, "code_too_large", language, len(data))
    return bytes_record(entry, opts, language, data)


def bytes_record(entry: Entry, opts: CodeOptions, language: str, data: bytes) -> dict:
    """Binary check and decoding of a file's bytes (see ``data_pipes.io.decoding``)."""
    if binary_reason(data) is not None:
        return dropped(entry, opts, "code_binary_file", language, len(data))
    if opts.decode == "utf8":
        try:
            text, extra = data.decode("utf-8-sig" if data.startswith(b"\xef\xbb\xbf") else "utf-8"), {}
        except UnicodeDecodeError as exc:
            return quarantined(
                entry, opts, "code_undecodable", f"not UTF-8 ({exc.reason} at byte {exc.start})"
            )
    else:
        decoded = decode_bytes(data)
        text, extra = decoded.text, encoding_meta(decoded)
    bad = text_binary_reason(text)
    if bad is not None:
        return quarantined(entry, opts, "code_undecodable", bad)
    meta = {**entry.meta(language, len(data)), **extra}
    return good_record(rid=entry.rid(), text=text, source=opts.source, url=entry.url(), meta=meta)


def to_frames(records: Iterable[dict]) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(kept, dropped, quarantined) frames of a list of records; dropped rows keep the document columns."""
    kept: dict[str, list] = {c: [] for c in DOC_COLUMNS}
    drop: dict[str, list] = {c: [] for c in DROPPED_SCHEMA}
    bad: dict[str, list] = {c: [] for c in QUARANTINE_SCHEMA}
    for rec in records:
        target = bad if "error" in rec else drop if "reason" in rec else kept
        for column, values in target.items():
            values.append(rec.get(column) or "")
    return (
        pl.DataFrame(kept, schema=DOC_SCHEMA),
        pl.DataFrame(drop, schema=DROPPED_SCHEMA),
        pl.DataFrame(bad, schema=QUARANTINE_SCHEMA),
    )
