"""The web chain on bad input: nothing crashes, every row is kept, dropped with a reason or quarantined.

Broken HTML, a wrong and an undeclared encoding, an empty page, a 50 MB page, a truncated gzip file, a truncated
WARC and binary junk go through files/warc -> extract_html -> langid -> heuristic_filters -> dedup_exact.
"""

from __future__ import annotations

import gzip
import io
import pydoc
from pathlib import Path

import pytest
import yaml

from flows.engine import Engine
from flows.store import Store
from flows.validate import load_pipeline


def _page(name: str) -> str:
    module = __import__(name)
    return pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().docmodule(module))


def _warc(path: Path, pages: dict[str, str], truncate: bool) -> None:
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for url, html in pages.items():
        headers = StatusAndHeaders(
            "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
        )
        writer.write_record(
            writer.create_warc_record(
                url, "response", payload=io.BytesIO(html.encode()), http_headers=headers
            )
        )
    data = buf.getvalue()
    path.write_bytes(data[: int(len(data) * 0.8)] if truncate else data)


@pytest.mark.slow
def test_bad_web_input_is_accounted_for(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    good = _page("json")
    (pages / "good.html").write_text(good)
    (pages / "broken.html").write_text("<html><body><div><p>Unclosed <b>tags <i>everywhere" + good[:4000])
    (pages / "latin1_declared.html").write_bytes(
        b'<html><head><meta charset="iso-8859-1"></head><body><p>'
        + "Café crème, déjà vu. ".encode("latin-1") * 60
        + b"</p></body></html>"
    )
    (pages / "cp1252_undeclared.html").write_bytes(
        b"<html><body><p>"
        + "“Smart quotes” – and a dash; naïve façade. ".encode("cp1252") * 50
        + b"</p></body></html>"
    )
    (pages / "empty.html").write_text("")
    (pages / "huge.html").write_text("<html><body><p>" + "word " * (11 * 1024 * 1024) + "</p></body></html>")
    (pages / "big.html").write_text("<html><body><p>" + "word " * (5 * 1024 * 1024) + "</p></body></html>")
    (pages / "junk.html").write_bytes(bytes(range(256)) * 400)
    blob = gzip.compress(_page("csv").encode())
    (pages / "cut.html.gz").write_bytes(blob[: len(blob) // 2])
    _warc(
        tmp_path / "crawl.warc.gz",
        {
            "http://example.org/a": _page("heapq"),
            "http://example.org/b": good,
            "http://example.org/c": _page("bisect"),
        },
        truncate=True,
    )
    spec = {
        "name": "bad",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "pages": {"uses": "files", "params": {"paths": ["pages"], "max_doc_mb": 50}},
            "crawl": {"uses": "warc", "params": {"paths": ["crawl.warc.gz"]}},
            "raw": {"uses": "union", "inputs": ["pages", "crawl"]},
            "text": {"uses": "extract_html", "inputs": ["raw"], "params": {"max_html_mb": 20}},
            "lang": {"uses": "langid", "inputs": ["text"], "params": {"mode": "route"}},
            "clean": {"uses": "heuristic_filters", "inputs": ["lang"]},
            "exact": {"uses": "dedup_exact", "inputs": ["clean"]},
        },
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    p = load_pipeline(str(tmp_path / "pipeline.yaml"))
    engine = Engine(p)
    for n in p.order:
        engine.run_node(n)
    engine.close()
    store = Store(str(tmp_path / "store"))
    refs = store.read_refs("bad")
    m = {n: store.manifest(refs[n]["fingerprint"]) for n in p.order}
    for node, manifest in m.items():
        c = manifest["counts"]
        assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"], node
    pages_m = m["pages"]
    assert (
        pages_m["counts"]["in"] == 9
    )  # one row per file (the truncated gzip held one page: it is quarantined)
    assert set(pages_m["quarantine_errors"]) >= {"gzip_truncated", "binary_content", "document_too_large"}
    assert m["crawl"]["quarantine_errors"].get("warc_truncated") == 1
    assert (
        m["text"]["drop_reasons"].get("extract_too_large") == 1
    )  # the 25 MB page (the 55 MB one never got in)
    assert m["text"]["drop_reasons"].get("extract_empty", 0) >= 1  # the empty page
    # every good page reached the extractor: the files kept and the WARC records read before the cut
    assert m["text"]["counts"]["in"] == m["pages"]["counts"]["kept"] + m["crawl"]["counts"]["kept"]
