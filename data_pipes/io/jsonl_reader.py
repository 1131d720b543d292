"""JSONL (plain or gzipped): one line is one document.

Line ``n`` (0-based, counting every line) is record ``n``, so ids stay stable when other lines change. Blank
lines are not records and are skipped. Per line: bytes that are not UTF-8 are decoded by
``decoding.decode_bytes`` (the encoding found for one line is tried first for the next ones); a line that is
not JSON is quarantined as ``jsonl_decode_error``, one that is JSON but not an object as ``jsonl_not_object``;
a line longer than ``max_doc_bytes`` is quarantined as ``document_too_large`` and skipped in bounded chunks,
never held whole. When the file cannot be read on (truncated or corrupt gzip, I/O error) the records read so
far have been yielded and one quarantined record stands for the rest of the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import BinaryIO

from data_pipes.io.decoding import decode_document, encoding_meta
from data_pipes.io.opening import READ_ERRORS, open_binary, read_error_message
from data_pipes.io.records import BadInput, quarantined_record
from data_pipes.io.rows import ReadContext, row_record

SKIP_CHUNK = 1 << 20


def _quarantined(ctx: ReadContext, n: int, error: str, rest: bool = False) -> dict[str, str]:
    """Quarantined record for line ``n`` (or, with ``rest``, for everything from line ``n`` on)."""
    rid = ctx.hashed_id(f"{n}+" if rest else n)
    return quarantined_record(rid=rid, source=ctx.source, url=ctx.locator(n), error=error)


def _skip_rest_of_line(f: BinaryIO) -> int:
    """Consume the rest of an over-long line in 1 MiB chunks; return how many bytes were skipped."""
    skipped = 0
    while True:
        chunk = f.readline(SKIP_CHUNK)
        skipped += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _line_record(
    line: bytes, n: int, ctx: ReadContext, prefer: str | None
) -> tuple[dict[str, str], str | None]:
    """The record for one non-blank line, and the encoding to prefer for the next line."""
    where = f"(file {ctx.shown}, line {n + 1})"
    try:
        decoded = decode_document(line, prefer)
        if decoded.encoding_source in ("declared", "detected", "fallback", "preferred"):
            prefer = decoded.encoding
        try:
            row = json.loads(decoded.text)
        except json.JSONDecodeError as exc:
            raise BadInput("jsonl_decode_error", f"{exc.msg} at column {exc.colno}") from None
        if not isinstance(row, dict):
            kind = type(row).__name__
            raise BadInput("jsonl_not_object", f"the line holds a JSON {kind}, expected an object")
    except BadInput as exc:
        error = f"{exc.error} {where}"
        return _quarantined(ctx, n, error), prefer
    return row_record(row, ctx, n, extra_meta=encoding_meta(decoded)), prefer


def read_jsonl(ctx: ReadContext) -> Iterator[dict[str, str]]:
    """Yield one record per non-blank line of ``ctx.path``; never raises for bad input."""
    n = 0
    prefer: str | None = None
    try:
        with open_binary(ctx.path) as f:
            while line := f.readline(ctx.max_doc_bytes + 1):
                if len(line) > ctx.max_doc_bytes and not line.endswith(b"\n"):
                    size = len(line) + _skip_rest_of_line(f)
                    error = (
                        f"document_too_large: line of {size} bytes > max_doc_bytes={ctx.max_doc_bytes} "
                        f"(file {ctx.shown}, line {n + 1})"
                    )
                    yield _quarantined(ctx, n, error)
                elif line.strip():
                    record, prefer = _line_record(line, n, ctx, prefer)
                    yield record
                n += 1
    except READ_ERRORS as exc:
        error = ctx.shown_error(read_error_message(exc, ctx.path, f"after line {n}"))
        yield _quarantined(ctx, n, error, rest=True)
