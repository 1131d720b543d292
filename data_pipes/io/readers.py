"""Read local files into document records (docs/CONTRACTS.md), never raising for bad input.

Formats: ``text`` and ``html`` (one file is one document, kept raw: HTML is extracted later), ``jsonl`` (one
line is one document) and ``parquet`` (one row is one document); text, html and jsonl may be gzipped
(``.gz``).

``read_records`` yields good records ``{"id", "text", "source", "url", "lang", "meta"}`` and quarantined
records ``{"id", "source", "url", "error"}``. Every input document comes out as exactly one of the two, so
``in = good + quarantined`` per file. Choices:

- **Empty documents** (an empty file, an empty text value) are *good* records with empty text: they are not
  broken input, and the filter that drops them records a reason for it.
- **Encodings**: see ``decoding``; UTF-8, then BOM / declared charset (mapped as browsers map labels), then
  detection on a sample (uchardet, then ``charset_normalizer``), else a cp1252/latin-1 fallback. Whenever the bytes were not plain UTF-8, ``meta`` says
  ``encoding`` and ``encoding_source`` (``fallback`` marks a guess that may be wrong).
- **Ids** hash the source, the path *as given* and the record number; pass paths relative to the source root
  for ids that do not depend on where the data sits. With ``id_field`` the id is ``"<source>:<value>"``.

Error classes: ``read_error``, ``gzip_truncated``, ``gzip_corrupt``, ``binary_content``,
``document_too_large``, ``jsonl_decode_error``, ``jsonl_not_object``, ``missing_text_field``,
``invalid_text_field``, ``missing_id_field``, ``parquet_unreadable``, ``parquet_corrupt``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from data_pipes.io.decoding import decode_document, encoding_meta
from data_pipes.io.jsonl_reader import read_jsonl
from data_pipes.io.opening import READ_ERRORS, open_binary, read_error_message
from data_pipes.io.paths import FORMATS, detect_format, expand_paths, is_gzip_path
from data_pipes.io.records import BadInput, good_record, quarantined_record
from data_pipes.io.remote import is_url, url_size
from data_pipes.io.rows import ReadContext

__all__ = ["FORMATS", "detect_format", "expand_paths", "read_records"]


def _read_whole_file(ctx: ReadContext) -> Iterator[dict[str, str]]:
    """One document per file; at most ``max_doc_bytes + 1`` bytes are ever read."""
    rid, url = ctx.hashed_id(0), ctx.shown
    try:
        size_of = url_size if is_url(ctx.path) else os.path.getsize
        if not is_gzip_path(ctx.path) and (size := size_of(ctx.path)) > ctx.max_doc_bytes:
            raise BadInput("document_too_large", f"{size} bytes > max_doc_bytes={ctx.max_doc_bytes}")
        with open_binary(ctx.path) as f:
            data = f.read(ctx.max_doc_bytes + 1)
        if len(data) > ctx.max_doc_bytes:
            raise BadInput(
                "document_too_large", f"more than max_doc_bytes={ctx.max_doc_bytes} bytes once decompressed"
            )
        decoded = decode_document(data)
    except BadInput as exc:
        yield quarantined_record(rid=rid, source=ctx.source, url=url, error=f"{exc.error} (file {ctx.shown})")
        return
    except READ_ERRORS as exc:
        error = ctx.shown_error(read_error_message(exc, ctx.path))
        yield quarantined_record(rid=rid, source=ctx.source, url=url, error=error)
        return
    meta = {"path": ctx.shown, "format": ctx.fmt, **encoding_meta(decoded)}
    yield good_record(rid=rid, text=decoded.text, source=ctx.source, url=url, meta=meta)


def _read_parquet(ctx: ReadContext) -> Iterator[dict[str, str]]:
    from data_pipes.io.parquet_reader import read_parquet  # pyarrow is imported only when Parquet is read

    return read_parquet(ctx)


_READERS: dict[str, Callable[[ReadContext], Iterator[dict[str, str]]]] = {
    "text": _read_whole_file,
    "html": _read_whole_file,
    "jsonl": read_jsonl,
    "parquet": _read_parquet,
}


def read_records(
    path: str,
    fmt: str,
    *,
    source: str,
    text_field: str = "text",
    id_field: str | None = None,
    url_field: str | None = None,
    max_doc_bytes: int = 50_000_000,
    id_path: str | None = None,
) -> Iterator[dict]:
    """Yield the good and quarantined records of one file (see the module docstring).

    Raises ``ValueError`` only for wrong arguments (unknown ``fmt``, non-positive ``max_doc_bytes``), never
    for bad input.
    """
    reader = _READERS.get(fmt)
    if reader is None:
        raise ValueError(f"unknown format {fmt!r} for {path!r}; expected one of {', '.join(FORMATS)}")
    if max_doc_bytes <= 0:
        raise ValueError(f"max_doc_bytes must be positive, got {max_doc_bytes}")
    ctx = ReadContext(path, fmt, source, text_field, id_field, url_field, max_doc_bytes, id_path)
    return reader(ctx)
