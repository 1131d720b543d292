"""Document record builders shared by the readers and the demo corpus.

A *good* record has the document columns of docs/CONTRACTS.md: ``id``, ``text``, ``source``, ``url``, ``lang``
and ``meta`` (a JSON string). A *quarantined* record has ``id``, ``source``, ``url`` and ``error``; the
presence of the ``error`` key is what marks it. Errors read ``"<error_class>: <human message>"`` where the
class is snake_case.

Ids are stable: a hash of the source name, the path as given and the record number inside the file, so the
same input always yields the same ids whatever the shard layout or the number of workers.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import json
from typing import Any

ID_HEX_CHARS = 16


class BadInput(Exception):
    """Raised inside the readers for input that must be quarantined, never escapes them."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(f"{error_class}: {message}")
        self.error_class = error_class
        self.message = message

    @property
    def error(self) -> str:
        """The ``error`` column value: ``"<error_class>: <message>"``."""
        return f"{self.error_class}: {self.message}"


def make_id(source: str, path: str, n: int | str) -> str:
    """Stable record id: sha1 of ``"<source>:<path>#<n>"`` truncated to 16 hex characters."""
    return hashlib.sha1(f"{source}:{path}#{n}".encode("utf-8", "surrogatepass")).hexdigest()[:ID_HEX_CHARS]


def _json_default(value: Any) -> Any:
    """Turn the non-JSON values Parquet rows can hold into JSON ones (bytes as base64, dates as ISO text)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
    return repr(value)


def dump_meta(meta: dict[str, Any]) -> str:
    """Serialise ``meta`` deterministically (sorted keys, UTF-8 kept readable)."""
    return json.dumps(meta, sort_keys=True, ensure_ascii=False, default=_json_default)


def good_record(
    *, rid: str, text: str, source: str, url: str, meta: dict[str, Any], lang: str = ""
) -> dict[str, str]:
    """A document row as in docs/CONTRACTS.md."""
    return {"id": rid, "text": text, "source": source, "url": url, "lang": lang, "meta": dump_meta(meta)}


def quarantined_record(*, rid: str, source: str, url: str, error: str) -> dict[str, str]:
    """A quarantined row: enough to find the input again, plus the error."""
    return {"id": rid, "source": source, "url": url, "error": error}


def is_quarantined(record: dict[str, Any]) -> bool:
    """True for a quarantined record (it carries an ``error`` key)."""
    return "error" in record
