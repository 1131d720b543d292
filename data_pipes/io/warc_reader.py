"""Read WARC files (plain or ``.warc.gz``) into document records, one per HTML or text ``response`` record.

Library: ``warcio``. FastWARC parses faster, but reading is a rounding error next to HTML extraction (warcio
reads thousands of pages per second, extraction about a hundred), warcio is pure Python with wheels
everywhere, and the tests need its writer anyway, so one WARC library covers both sides.

Every ``response`` record comes out as exactly one of:

- a good record (``text`` is the decoded payload, raw HTML; ``meta`` has ``content_type``, ``charset``,
  ``http_status``, ``warc_date``, ``warc_record_id``, ``path``, ``offset`` and the encoding entries);
- a dropped record (``reason``): ``warc_non_html`` (images, PDFs, binary payloads), ``warc_http_status``
  (non-2xx status, when ``ok_only``) or ``warc_too_large`` (payload above ``max_doc_bytes``);
- a quarantined record (``error``): ``warc_undecodable`` (binary junk under a text type, a broken
  content-encoding).

A damaged file ends the read: a ``.warc.gz`` cut short, or a record shorter than its ``Content-Length``, adds
one ``warc_truncated`` record (``warc_unreadable`` when the bytes are not WARC at all) after the records read
so far. warcio itself does not notice a truncated gzip stream (it yields the partial record), so the file is
decompressed by the ``gzip`` module, which does raise, and warcio parses the plain stream; ``offset`` is
therefore the offset in the uncompressed stream. Other record types (warcinfo, request, metadata) are not
documents and are only counted.

Ids: ``"<source>:<WARC-Record-ID>"`` (the uuid is globally unique and survives re-sharding), else a hash of
source, path and offset.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from warcio.archiveiterator import ArchiveIterator

from data_pipes.io.decoding import decode_document, encoding_meta
from data_pipes.io.records import BadInput, good_record, make_id, quarantined_record
from data_pipes.io.remote import is_url, open_url
from data_pipes.web.encoding import whatwg_codec

TEXT_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
_STREAM_ERRORS = (EOFError, OSError, zlib.error)


class _TrackedStream:
    """A file object that remembers the error its underlying stream raised (truncation vs a bad payload)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return self.raw.read(size)
        except _STREAM_ERRORS as exc:
            self.error = exc
            raise

    def tell(self) -> int:
        return self.raw.tell()

    def readline(self, size: int = -1) -> bytes:
        try:
            return self.raw.readline(size)
        except _STREAM_ERRORS as exc:
            self.error = exc
            raise


def _content_type(record: Any) -> tuple[str, str]:
    """(mime type, charset) from the HTTP headers (a ``resource`` record: from its WARC headers), lower-cased;
    empty strings when absent."""
    headers = record.http_headers
    if headers is not None:
        value = headers.get_header("Content-Type", "")
    elif record.rec_type == "resource":
        value = record.rec_headers.get_header("Content-Type", "") or ""
    else:
        value = ""
    parts = [p.strip() for p in value.split(";")]
    charset = next(
        (p.split("=", 1)[1].strip("\"' ") for p in parts[1:] if p.lower().startswith("charset=")), ""
    )
    return parts[0].lower(), charset.lower()


def _looks_like_html(data: bytes) -> bool:
    head = data[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def _decode(data: bytes, charset: str) -> tuple[str, dict[str, str]]:
    """Text and encoding meta: the HTTP charset when it decodes strictly, else the readers' decoding order."""
    decoded = decode_document(data, prefer=charset or None)  # raises BadInput for binary junk
    if charset and decoded.encoding_source not in ("utf-8", "bom", "declared"):
        codec = whatwg_codec(charset, declared=False) or charset  # as browsers read the label
        try:
            return data.decode(codec), {"encoding": codec, "encoding_source": "http"}
        except (UnicodeDecodeError, LookupError):
            pass
    return decoded.text, encoding_meta(decoded)


def _one(record: Any, path: str, offset: int, source: str, max_bytes: int, ok_only: bool) -> dict[str, str]:
    """The good, dropped or quarantined record for one ``response`` record."""
    record_id = (record.rec_headers.get_header("WARC-Record-ID") or "").strip("<>")
    rid = f"{source}:{record_id}" if record_id else make_id(source, path, offset)
    url = record.rec_headers.get_header("WARC-Target-URI") or ""
    mime, charset = _content_type(record)
    status = record.http_headers.get_statuscode() if record.http_headers is not None else ""
    meta: dict[str, Any] = {
        "format": "warc",
        "path": path,
        "offset": offset,
        "warc_record_id": record_id,
        "warc_date": record.rec_headers.get_header("WARC-Date") or "",
        "content_type": mime,
        "charset": charset,
        "http_status": status,
    }
    dropped = {"rid": rid, "text": "", "source": source, "url": url}
    if ok_only and status and not status.startswith("2"):
        return {**good_record(**dropped, meta=meta), "reason": "warc_http_status"}
    if mime and mime not in TEXT_TYPES:
        return {**good_record(**dropped, meta=meta), "reason": "warc_non_html"}
    data = record.content_stream().read(max_bytes + 1)
    if record.raw_stream.limit > 0 and len(data) <= max_bytes:
        raise _Truncated(rid, url, f"record at offset {offset} has {record.raw_stream.limit} bytes missing")
    if len(data) > max_bytes:
        return {**good_record(**dropped, meta=meta), "reason": "warc_too_large"}
    if not mime and not _looks_like_html(data):
        return {**good_record(**dropped, meta=meta), "reason": "warc_non_html"}
    try:
        text, enc = _decode(data, charset)
    except BadInput as exc:
        return quarantined_record(rid=rid, source=source, url=url, error=f"warc_undecodable: {exc.message}")
    return good_record(rid=rid, text=text, source=source, url=url, meta={**meta, **enc})


class _Truncated(Exception):
    def __init__(self, rid: str, url: str, message: str) -> None:
        super().__init__(message)
        self.rid, self.url = rid, url


def read_warc(
    path: str,
    *,
    source: str,
    max_doc_bytes: int = 50_000_000,
    ok_only: bool = True,
    counts: dict[str, int] | None = None,
    name: str | None = None,
) -> Iterator[dict[str, str]]:
    """Yield good, dropped (``reason``) and quarantined (``error``) records of one WARC file; never raises for
    bad input. ``counts`` (optional) receives the number of non-response records skipped, by type. ``name`` is
    how the records name the file (``meta.path``, fallback ids, errors); default ``path``. Give a name that does
    not depend on where the file lies (e.g. relative to the store) for output that is the same in any folder."""
    counts = counts if counts is not None else {}
    offset = 0
    label = name or path
    try:
        if is_url(path):  # an object store: read through fsspec
            raw: BinaryIO = open_url(path)
            raw = gzip.GzipFile(fileobj=raw, mode="rb") if path.endswith(".gz") else raw  # type: ignore[assignment]
        else:
            raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        yield quarantined_record(
            rid=make_id(source, label, "open"),
            source=source,
            url=label,
            error=f"warc_unreadable: {str(exc).replace(path, label)} (file {label})",
        )
        return
    stream = _TrackedStream(raw)
    try:
        iterator = ArchiveIterator(stream, no_record_parse=False, ensure_http_headers=False)
        for record in iterator:
            offset = iterator.offset  # start of this record; get_record_offset() would consume it
            if record.rec_type not in ("response", "resource"):  # resource: content without protocol headers
                counts[record.rec_type] = counts.get(record.rec_type, 0) + 1
                continue
            try:
                yield _one(record, label, offset, source, max_doc_bytes, ok_only)
            except _Truncated as exc:
                yield quarantined_record(
                    rid=exc.rid, source=source, url=exc.url, error=f"warc_truncated: {exc} (file {label})"
                )
                return
            except _STREAM_ERRORS + (ValueError,) as exc:
                if stream.error is not None:
                    raise
                rid = make_id(source, label, offset)
                yield quarantined_record(
                    rid=rid,
                    source=source,
                    url=label,
                    error=f"warc_undecodable: {type(exc).__name__}: {exc} (offset {offset})",
                )
        if stream.error is not None:  # warcio sometimes ends quietly on a stream error inside a record header
            raise stream.error
    except Exception as exc:  # noqa: BLE001 - warcio raises assorted types (AttributeError too) on garbage
        truncated = isinstance(stream.error, EOFError) or isinstance(exc, EOFError)
        error = "warc_truncated" if truncated else "warc_unreadable"
        yield quarantined_record(
            rid=make_id(source, label, f"end@{offset}"),
            source=source,
            url=label,
            error=f"{error}: {type(exc).__name__}: {exc} (file {label}, after offset {offset})",
        )
    finally:
        raw.close()
