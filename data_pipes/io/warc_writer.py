"""Write documents as a WARC file (gzipped per record), byte for byte reproducible.

Each document with an http(s) URL becomes one ``response`` record with an HTTP 200 header (``text/html;
charset=utf-8`` unless told otherwise); any other URL (``pydoc://json``, a file path) a ``resource`` record holding
the page without protocol headers, since WARC readers parse HTTP headers only for http(s) targets. warcio would
stamp each record with the current time and a random record id; here both come from the document (its id hashed
into a UUID, a fixed or given date) so the same documents always give the same bytes.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from data_pipes.io.atomic import atomic_write_bytes

ID_NAMESPACE = uuid.UUID("6f1d3c2a-9b1e-4c55-8f0e-5a2b7c4d9e10")
DEFAULT_DATE = "2000-01-01T00:00:00Z"


@dataclass(frozen=True)
class WarcPage:
    doc_id: str
    url: str
    body: str
    content_type: str = "text/html; charset=utf-8"
    date: str = DEFAULT_DATE


def record_id(doc_id: str) -> str:
    return f"<urn:uuid:{uuid.uuid5(ID_NAMESPACE, doc_id)}>"


def write_warc(path: str, pages: Iterable[WarcPage]) -> int:
    """Write ``pages`` to ``path`` atomically (temp name, then rename); returns the number of records."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    n = 0
    for page in pages:
        uri = page.url or f"urn:arcflow:{page.doc_id}"
        headers = {"WARC-Record-ID": record_id(page.doc_id), "WARC-Date": page.date}
        payload = io.BytesIO(page.body.encode("utf-8", "surrogatepass"))
        if uri.startswith(("http:", "https:")):
            http = StatusAndHeaders("200 OK", [("Content-Type", page.content_type)], protocol="HTTP/1.1")
            record = writer.create_warc_record(
                uri,
                "response",
                payload=payload,
                http_headers=http,
                warc_headers_dict=headers,
                warc_content_type="application/http; msgtype=response",
            )
        else:
            record = writer.create_warc_record(
                uri,
                "resource",
                payload=payload,
                warc_headers_dict=headers,
                warc_content_type=page.content_type,
            )
        writer.write_record(record)
        n += 1
    atomic_write_bytes(path, buf.getvalue())
    return n
