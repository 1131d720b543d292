"""One JSONL line or Parquet row (already a dict) to a document record.

The row's ``text_field`` becomes ``text`` (bytes are decoded like a file's bytes), ``id_field`` gives the id
(``"<source>:<value>"``; a row without it is quarantined as ``missing_id_field``), ``url_field`` the url, and
a string ``lang`` column the language. Without an id field the id is the stable hash of source, path and
record number; without a url the url is the locator ``"<path>#<record number>"``. Every other column goes into
``meta`` next to ``path``, ``format`` and ``record``; a column whose name clashes with those keys is kept as
``row_<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data_pipes.io.decoding import decode_document, encoding_meta, text_binary_reason
from data_pipes.io.records import BadInput, good_record, make_id, quarantined_record

RESERVED_META = frozenset({"path", "format", "record", "encoding", "encoding_source"})


@dataclass(frozen=True)
class ReadContext:
    """What a reader needs to know about the file it reads."""

    path: str
    fmt: str
    source: str
    text_field: str = "text"
    id_field: str | None = None
    url_field: str | None = None
    max_doc_bytes: int = 50_000_000
    id_path: str | None = (
        None  # the path that ids hash (default: path); relative paths keep ids location-free
    )

    @property
    def shown(self) -> str:
        """How records name the file (url, ``meta.path``, errors): ``id_path`` when given, so that rows hold no
        path of this machine and the same files in another folder give the same bytes; else ``path``."""
        return self.id_path or self.path

    def shown_error(self, message: str) -> str:
        """``message`` (an OS error may quote the absolute path) with the file named as ``shown``."""
        return message.replace(self.path, self.shown) if self.id_path else message

    def locator(self, n: int) -> str:
        """Where record ``n`` of the file lives: ``"<shown path>#<n>"``."""
        return f"{self.shown}#{n}"

    def hashed_id(self, n: int | str) -> str:
        """The stable id of record ``n`` of this file."""
        return make_id(self.source, self.id_path or self.path, n)


def _text_of(row: dict[str, Any], ctx: ReadContext) -> tuple[str, dict[str, str]]:
    """The row's text and encoding meta; BadInput for a missing, wrong-typed, too large or binary value."""
    value = row.get(ctx.text_field)
    if value is None:
        present = ", ".join(sorted(map(str, row))) or "none"
        raise BadInput("missing_text_field", f"no {ctx.text_field!r} value (fields: {present})")
    if isinstance(value, bytes | bytearray):
        size = len(value)
    elif isinstance(value, str):
        size = len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    else:
        kind = type(value).__name__
        raise BadInput("invalid_text_field", f"{ctx.text_field!r} is a {kind}, expected a string")
    if size > ctx.max_doc_bytes:
        raise BadInput("document_too_large", f"{size} bytes > max_doc_bytes={ctx.max_doc_bytes}")
    if isinstance(value, bytes | bytearray):
        decoded = decode_document(bytes(value))
        return decoded.text, encoding_meta(decoded)
    reason = text_binary_reason(value)
    if reason is not None:
        raise BadInput("binary_content", reason)
    return value, {}


def row_record(
    row: dict[str, Any], ctx: ReadContext, n: int, extra_meta: dict[str, str] | None = None
) -> dict[str, str]:
    """The good or quarantined record for row ``n`` of ``ctx.path``."""
    url = row.get(ctx.url_field) if ctx.url_field else None
    url = url if isinstance(url, str) and url else ctx.locator(n)
    rid = ctx.hashed_id(n)
    where = f"(file {ctx.shown}, record {n})"
    if ctx.id_field is not None:
        value = row.get(ctx.id_field)
        if value is None or value == "":
            error = f"missing_id_field: no {ctx.id_field!r} value {where}"
            return quarantined_record(rid=rid, source=ctx.source, url=url, error=error)
        rid = f"{ctx.source}:{value}"
    try:
        text, enc_meta = _text_of(row, ctx)
    except BadInput as exc:
        return quarantined_record(rid=rid, source=ctx.source, url=url, error=f"{exc.error} {where}")
    used = {ctx.text_field, ctx.id_field, ctx.url_field}
    lang = row.get("lang") if isinstance(row.get("lang"), str) else ""
    meta: dict[str, Any] = {}
    for key, value in row.items():
        if key in used or (key == "lang" and lang):
            continue
        meta[f"row_{key}" if key in RESERVED_META else key] = value
    meta.update({"path": ctx.shown, "format": ctx.fmt, "record": n})
    meta.update(extra_meta or {})
    meta.update(enc_meta)
    return good_record(rid=rid, text=text, source=ctx.source, url=url, meta=meta, lang=lang)
