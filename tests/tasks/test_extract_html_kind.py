"""`extract_html` row by row: the input's meta is kept and added to (the source's `lang_hint` survives), the
fallback is recorded, and every dropped row holds its input HTML."""

from __future__ import annotations

import json
import pydoc

import polars as pl

from data_pipes.io.records import dump_meta
from tasks.extract_html import ExtractHtml, ExtractParams
from tests.data_pipes.web.test_extract import copyright_page

EMPTY = "<html lang='de'><body><script>var x = 1;</script><img src='a.png'></body></html>"


def _frame() -> pl.DataFrame:
    json_page = pydoc.HTMLDoc().page("json", pydoc.HTMLDoc().docmodule(__import__("json")))
    rows = [
        ("a", json_page, {"lang_hint": "pt-br", "path": "pt-br/json.html", "extractor": "old"}),
        ("b", copyright_page(), {"path": "copyright.html"}),
        ("c", EMPTY, {"lang_hint": "", "path": "empty.html"}),
        ("d", "<html><body><p>" + "word " * 60_000 + "</p></body></html>", {"path": "big.html"}),
        ("e", "\x00\x01\x02 PNG junk" * 50, {"path": "junk.html"}),
    ]
    return pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "text": [r[1] for r in rows],
            "source": ["web"] * len(rows),
            "url": [r[2]["path"] for r in rows],
            "lang": [""] * len(rows),
            "meta": [dump_meta(r[2]) for r in rows],
        }
    )


def test_meta_kept_fallback_recorded_and_drops_hold_html() -> None:
    frame = _frame()
    kept, dropped, bad = ExtractHtml().split(frame, ExtractParams(max_html_mb=0.2))
    assert kept.height + dropped.height + bad.height == frame.height
    assert kept["id"].to_list() == ["a", "b"]
    meta_a, meta_b = (json.loads(m) for m in kept["meta"])
    # the source's language hint and path survive; the page's own declaration is kept beside it
    assert meta_a["lang_hint"] == "pt-br" and meta_a["path"] == "pt-br/json.html"
    assert meta_a["extractor"] == "resiliparse" and meta_a["extract_mode"] == "text"
    assert meta_a["title"] == "Python: json" and "JavaScript Object Notation" in " ".join(
        kept["text"][0].split()
    )
    # no hint from the source: the page's declaration fills it in; the empty main pass fell back to full text
    assert meta_b["lang_hint"] == meta_b["html_lang"] == "en"
    assert meta_b["extractor"] == "resiliparse_full_text" and meta_b["main_share"] == 0.0
    assert "Python Software Foundation" in kept["text"][1]
    # drops keep their input HTML (and, when extraction ran, what it found)
    by_id = {r["id"]: r for r in dropped.iter_rows(named=True)}
    assert {i: r["reason"] for i, r in by_id.items()} == {"c": "extract_empty", "d": "extract_too_large"}
    for rid in ("c", "d"):
        assert by_id[rid]["text"] == frame.filter(pl.col("id") == rid)["text"].item()
    meta_c = json.loads(by_id["c"]["meta"])
    assert (
        meta_c["path"] == "empty.html"
        and meta_c["lang_hint"] == "de"
        and meta_c["extractor"] == "resiliparse"
    )
    assert bad["id"].to_list() == ["e"] and bad["error"][0].startswith("extract_failed: binary content")


def test_fallback_none_drops_the_page_the_main_pass_loses() -> None:
    frame = _frame().filter(pl.col("id") == "b")
    kept, dropped, _ = ExtractHtml().split(frame, ExtractParams(fallback="none"))
    assert kept.height == 0 and dropped["reason"].to_list() == ["extract_empty"]
    assert dropped["text"].item() == copyright_page()
