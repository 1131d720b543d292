"""The web kinds through the engine on a tiny crawl: warc -> extract_html (text, code) -> langid, filter."""

from __future__ import annotations

import io
import json
import pydoc
from pathlib import Path

import polars as pl
import pytest
import yaml
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from flows.engine import Engine
from flows.validate import load_pipeline

GERMAN = (
    "<html lang='de'><head><title>Einführung</title></head><body><main><h1>Einführung</h1>"
    "<p>Die Bibliothek liest Dateien ein und schreibt die Ergebnisse in Tabellen. Jede Zeile wird "
    "geprüft, bevor sie gespeichert wird, und fehlerhafte Einträge werden getrennt aufbewahrt.</p>"
    "</main></body></html>"
)
EMPTY = "<html><body><script>var x = 1;</script></body></html>"


def _record(writer: WARCWriter, url: str, body: bytes, ctype: str):
    headers = StatusAndHeaders("200 OK", [("Content-Type", ctype)], protocol="HTTP/1.1")
    return writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)


def write_crawl(folder: Path) -> None:
    folder.mkdir()
    pages = [
        (f"https://docs.example/{m}", pydoc.HTMLDoc().page(m, pydoc.HTMLDoc().docmodule(__import__(m))))
        for m in ("json", "csv", "shlex")
    ]
    pages += [("https://de.example/intro", GERMAN), ("https://x.example/empty", EMPTY)]
    with open(folder / "a.warc.gz", "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for url, html in pages:
            writer.write_record(_record(writer, url, html.encode("utf-8"), "text/html; charset=utf-8"))
        writer.write_record(
            _record(writer, "https://x.example/logo.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")
        )
    whole = (folder / "a.warc.gz").read_bytes()
    (folder / "b.warc.gz").write_bytes(
        whole[: len(whole) * 4 // 5]
    )  # truncated copy: a few records, then the cut


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], Path]:
    root = tmp_path_factory.mktemp("web")
    write_crawl(root / "crawl")
    nodes = {
        "crawl": {"uses": "warc", "params": {"paths": ["crawl/*.warc.gz"]}},
        "text": {"uses": "extract_html", "inputs": ["crawl"]},
        "code": {
            "uses": "extract_html",
            "inputs": ["crawl"],
            "params": {"mode": "code", "engine": "trafilatura"},
        },
        "english": {"uses": "langid", "inputs": ["text"], "params": {"languages": {"en": 0.3}}},
        "routed": {"uses": "langid", "inputs": ["text"], "params": {"mode": "route"}},
        "german": {
            "uses": "filter",
            "inputs": ["routed"],
            "params": {"expr": "lang = 'de'", "reason": "not_de"},
        },
    }
    spec = {
        "name": "web",
        "workdir": str(root / ".arcflow"),
        "nodes": nodes,
        "executor": {"n_workers": 1, "processes": False},
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))
    engine = Engine(pipeline)
    try:
        manifests = {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()
    for manifest in manifests.values():
        c = manifest["counts"]
        assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"], manifest["node"]
    return manifests, root / ".arcflow" / "outputs"


def rows(run: tuple[dict[str, dict], Path], node: str, part: str = "") -> pl.DataFrame:
    """The node's kept rows (``part=""``), ``excluded`` or ``quarantine`` rows."""
    manifests, outputs = run
    folder = outputs / manifests[node]["fingerprint"] / part
    files = sorted(folder.glob("part-*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal") if files else pl.DataFrame()


def test_warc_source_counts(run) -> None:
    m = run[0]["crawl"]
    assert m["counts"]["kept"] >= 6  # 5 pages from the whole file, at least one before the cut of the copy
    assert m["drop_reasons"] == {"warc_non_html": 1}
    assert m["quarantine_errors"] == {"warc_truncated": 1}
    docs = rows(run, "crawl")
    assert docs["id"].str.starts_with("crawl:urn:uuid:").all()
    assert docs.filter(pl.col("url") == "https://docs.example/json")["text"][0].startswith("<!DOCTYPE html>")
    assert rows(run, "crawl", "excluded")["url"].to_list() == ["https://x.example/logo.png"]


def test_extract_text_and_meta(run) -> None:
    m = run[0]["text"]
    assert m["drop_reasons"] == {"extract_empty": m["counts"]["dropped"]} and m["counts"]["dropped"] >= 1
    docs = rows(run, "text")
    json_doc = docs.filter(pl.col("url") == "https://docs.example/json").row(0, named=True)
    meta = json.loads(json_doc["meta"])
    assert (
        meta["title"] == "Python: json" and meta["lang_hint"] == "en" and meta["extractor"] == "resiliparse"
    )
    assert "<html" not in json_doc["text"] and "JavaScript" in json_doc["text"]
    german = docs.filter(pl.col("url") == "https://de.example/intro").row(0, named=True)
    assert json.loads(german["meta"])["lang_hint"] == "de"
    excluded = rows(run, "text", "excluded")  # drops hold their input HTML, the WARC reader's meta kept
    assert set(excluded["text"]) == {EMPTY} and set(excluded["reason"]) == {"extract_empty"}
    assert all(json.loads(m)["format"] == "warc" for m in excluded["meta"])


def test_code_mode_node(run) -> None:
    m = run[0]["code"]
    assert m["counts"]["in"] == run[0]["text"]["counts"]["in"]
    assert json.loads(rows(run, "code")["meta"][0])["extract_mode"] == "code"


def test_langid_filter_and_route(run) -> None:
    english = run[0]["english"]
    assert english["drop_reasons"].get("langid_not_allowed_language") == 1  # the German page
    kept = rows(run, "english")
    assert set(kept["lang"]) == {"en"} and (kept["lang_score"] >= 0.3).all()
    routed = run[0]["routed"]
    assert routed["counts"]["dropped"] == 0 and routed["counts"]["kept"] == run[0]["text"]["counts"]["kept"]
    german = rows(run, "german")
    assert german["url"].to_list() == ["https://de.example/intro"]
    assert set(german.columns) >= {"lang2", "lang2_share"} and german["lang2"].to_list() == [""]
    # every page's hint (its <html lang>, kept in meta by extract_html) agrees with lid.176 here
    manifests, outputs = run
    hints = json.loads(
        (
            outputs / manifests["routed"]["fingerprint"] / "reports" / "language-id-vs-source-hint.json"
        ).read_text()
    )
    assert {r["hint"]: (r["docs"], r["agree"]) for r in hints} == {
        "de": (1, 1),
        "en": (routed["counts"]["kept"] - 1, routed["counts"]["kept"] - 1),
        "all": (routed["counts"]["kept"], routed["counts"]["kept"]),
    }
    assert run[0]["german"]["drop_reasons"] == {"not_de": routed["counts"]["kept"] - 1}
