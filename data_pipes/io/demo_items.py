"""The demo corpus's unit of work (``DemoItem``) and the record builders its parts share.

Listing a part yields ``DemoItem``s: small, frozen, picklable values that say everything rendering needs, so a
planner can cut the listing into shards and workers can render the items of a shard in parallel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from data_pipes.io.decoding import decode_document, encoding_meta
from data_pipes.io.records import BadInput, good_record, make_id, quarantined_record

MAX_DEMO_FILE_BYTES = 8_000_000


@dataclass(frozen=True, order=True)
class DemoItem:
    """One document to render: its part, a key unique and sorted within the part, what rendering needs.

    ``path`` is the file to read when the document is a file (stdlib code, licence files) or the metadata
    folder of a distribution; ``version`` is the distribution's version for the package parts.
    """

    part: str
    key: str
    path: str = ""
    version: str = ""

    @property
    def id(self) -> str:
        """The stable id of the rendered document."""
        return make_id(self.part, self.key, 0)


def demo_good(item: DemoItem, text: str, url: str, meta: dict[str, Any]) -> dict[str, str]:
    """A good document record for ``item`` (source is the part name)."""
    return good_record(rid=item.id, text=text, source=item.part, url=url, meta=meta)


def demo_quarantined(item: DemoItem, url: str, error_class: str, message: str) -> dict[str, str]:
    """A quarantined record for ``item``."""
    error = f"{error_class}: {message} (demo item {item.part}/{item.key})"
    return quarantined_record(rid=item.id, source=item.part, url=url, error=error)


def file_document(item: DemoItem, url: str, meta: dict[str, Any]) -> dict[str, str]:
    """Render the file at ``item.path`` as one document; unreadable, huge or binary files are quarantined."""
    try:
        with open(item.path, "rb") as f:
            data = f.read(MAX_DEMO_FILE_BYTES + 1)
        if len(data) > MAX_DEMO_FILE_BYTES:
            raise BadInput("document_too_large", f"more than {MAX_DEMO_FILE_BYTES} bytes")
        decoded = decode_document(data)
    except BadInput as exc:
        return demo_quarantined(item, url, exc.error_class, exc.message)
    except OSError as exc:
        return demo_quarantined(item, url, "read_error", str(exc))
    return demo_good(item, decoded.text, url, {**meta, **encoding_meta(decoded)})
