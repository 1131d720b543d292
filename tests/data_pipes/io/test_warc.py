"""WARC reading: real pydoc pages written to WARCs with warcio's writer, then damaged in known ways."""

from __future__ import annotations

import io
import pydoc
from pathlib import Path

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from data_pipes.io.warc_reader import read_warc

MODULES = ("json", "csv", "textwrap")
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
)


def page(name: str) -> bytes:
    module = __import__(name)
    return pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().docmodule(module)).encode("utf-8")


def response(writer: WARCWriter, url: str, body: bytes, ctype: str, status: str = "200 OK"):
    headers = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
    return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)


def write_warc(path: Path, gz: bool, extra: list[tuple[str, bytes, str, str]] = ()) -> Path:
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=gz)
        writer.write_record(writer.create_warcinfo_record(path.name, {"software": "arcflow-tests"}))
        for name in MODULES:
            url = f"https://docs.example/{name}.html"
            req = StatusAndHeaders("GET / HTTP/1.1", [("Host", "docs.example")], is_http_request=True)
            writer.write_record(
                writer.create_warc_record(url, "request", payload=io.BytesIO(b""), http_headers=req)
            )
            writer.write_record(response(writer, url, page(name), "text/html; charset=utf-8"))
        for url, body, ctype, status in extra:
            writer.write_record(response(writer, url, body, ctype, status))
    return path


def outcome(rec: dict) -> str:
    return rec.get("error", "").split(":")[0] or rec.get("reason") or "ok"


@pytest.mark.parametrize("gz", [True, False])
def test_reads_html_responses_with_meta(tmp_path: Path, gz: bool) -> None:
    path = write_warc(tmp_path / ("a.warc.gz" if gz else "a.warc"), gz)
    counts: dict[str, int] = {}
    recs = list(read_warc(str(path), source="crawl", counts=counts))
    assert [outcome(r) for r in recs] == ["ok"] * 3
    assert counts == {"warcinfo": 1, "request": 3}
    first = recs[0]
    assert first["id"].startswith("crawl:urn:uuid:")
    assert first["url"] == "https://docs.example/json.html"
    assert "JSON" in first["text"] and first["text"].lstrip().startswith("<!DOCTYPE html>")
    assert '"content_type": "text/html"' in first["meta"] and '"charset": "utf-8"' in first["meta"]
    assert '"warc_date": "20' in first["meta"]
    again = [r["id"] for r in read_warc(str(path), source="crawl")]
    assert again == [r["id"] for r in recs]  # ids come from WARC-Record-ID: stable across reads


def test_non_html_status_and_undecodable(tmp_path: Path) -> None:
    extra = [
        ("https://x/logo.png", PNG, "image/png", "200 OK"),
        ("https://x/missing", b"<html><body>gone</body></html>", "text/html", "404 Not Found"),
        ("https://x/junk.html", b"\x00\x01\x02\x03" * 200, "text/html", "200 OK"),
        (
            "https://x/latin.html",
            "<html><body><p>Café crème</p></body></html>".encode("cp1252"),
            "text/html; charset=ISO-8859-1",
            "200 OK",
        ),
    ]
    recs = list(read_warc(str(write_warc(tmp_path / "b.warc.gz", True, extra)), source="s"))
    assert [outcome(r) for r in recs] == ["ok"] * 3 + [
        "warc_non_html",
        "warc_http_status",
        "warc_undecodable",
        "ok",
    ]
    assert "Café crème" in recs[-1]["text"]
    assert '"encoding_source": "http"' in recs[-1]["meta"]


def test_truncated_gzip_keeps_records_read_so_far(tmp_path: Path) -> None:
    full = write_warc(tmp_path / "c.warc.gz", True).read_bytes()
    cut = tmp_path / "cut.warc.gz"
    cut.write_bytes(full[: len(full) * 3 // 4])
    recs = list(read_warc(str(cut), source="s"))
    assert [outcome(r) for r in recs[:-1]] == ["ok"] * (len(recs) - 1) and len(recs) >= 2
    assert outcome(recs[-1]) == "warc_truncated"


def test_truncated_plain_record_and_garbage(tmp_path: Path) -> None:
    full = write_warc(tmp_path / "d.warc", False).read_bytes()
    cut = tmp_path / "cut.warc"
    cut.write_bytes(full[:-20])
    assert [outcome(r) for r in read_warc(str(cut), source="s")] == ["ok", "ok", "warc_truncated"]
    junk = tmp_path / "junk.warc"
    junk.write_bytes(bytes(range(256)) * 20)
    assert [outcome(r) for r in read_warc(str(junk), source="s")] == ["warc_unreadable"]
