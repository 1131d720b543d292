"""HTML extraction on real pages: pydoc's HTML of stdlib modules, with real stdlib source in <pre> blocks."""

from __future__ import annotations

import html
import inspect
import pydoc
import textwrap

import pytest

from data_pipes.web.extract import FULL_TEXT, ExtractionError, TooLarge, extract
from data_pipes.web.extract_code import protect_code, restore_code
from data_pipes.web.extract_hints import lang_hint, title

ENGINES = ("resiliparse", "trafilatura")


def pydoc_page(name: str) -> str:
    module = __import__(name)
    return pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().docmodule(module))


def docs_page_with_code() -> tuple[str, list[str]]:
    """A python-docs-like page: nav, real docstrings as prose, two real functions' source in <pre>, footer."""
    blocks = [inspect.getsource(textwrap.dedent).rstrip(), inspect.getsource(textwrap.indent).rstrip()]
    body = "".join(
        f"<p>{html.escape(doc)}</p>"
        f"<div class='highlight'><pre><span class='k'>{html.escape(code)}</span></pre></div>"
        for doc, code in zip([textwrap.dedent.__doc__, textwrap.indent.__doc__], blocks, strict=True)
    )
    nav = "<nav><ul>" + "".join(f"<li><a href='/{i}'>Section {i}</a></li>" for i in range(12)) + "</ul></nav>"
    doc = (
        f"<!DOCTYPE html><html lang='en'><head><title>textwrap — Text wrapping</title></head><body>{nav}"
        f"<div role='main'><h1>textwrap — Text wrapping and filling</h1>{body}</div>"
        "<footer>© Copyright. Last updated. Found a bug?</footer></body></html>"
    )
    return doc, blocks


@pytest.mark.parametrize("engine", ENGINES)
def test_pydoc_page_text_title_and_hint(engine: str) -> None:
    result = extract(pydoc_page("json"), engine=engine)  # type: ignore[arg-type]
    assert "JavaScript Object Notation" in " ".join(result.text.split())
    assert result.title == "Python: json"
    assert result.lang_hint == "en"


@pytest.mark.parametrize("engine", ENGINES)
def test_code_mode_keeps_pre_blocks_verbatim(engine: str) -> None:
    html, blocks = docs_page_with_code()
    result = extract(html, engine=engine, mode="code")  # type: ignore[arg-type]
    for block in blocks:
        assert f"```\n{block}\n```" in result.text
    assert result.code_blocks == 2
    assert "Section 7" not in result.text  # the navigation is still boilerplate


def test_code_placeholders_round_trip() -> None:
    html, blocks = docs_page_with_code()
    protected, found = protect_code(html)
    assert found == blocks and "<pre" not in protected
    restored = restore_code("intro\nArcflowCodeBlock00001Q\nend", found)
    assert restored == f"intro\n\n```\n{blocks[1]}\n```\n\nend"


def test_hints() -> None:
    assert lang_hint('<html xml:lang="pt-BR"><head>') == "pt-br"
    assert lang_hint('<html><head><meta http-equiv="Content-Language" content="de, en"></head>') == "de"
    assert lang_hint("<html><head><title>x</title>") == ""
    assert title("<title>  A &amp; B\n page </title>") == "A & B page"


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_pages_never_crash(engine: str) -> None:
    empty = extract("<html><body><script>var x = 1;</script><img src='a.png'></body></html>", engine=engine)  # type: ignore[arg-type]
    assert empty.text == ""
    assert extract("<div><p>unclosed <b>tags & stray </i> ends", engine=engine).text is not None  # type: ignore[arg-type]
    with pytest.raises(ExtractionError, match="binary content"):
        extract("\x00\x01\x02 PNG junk" * 50, engine=engine)  # type: ignore[arg-type]
    with pytest.raises(TooLarge):
        extract(pydoc_page("csv"), engine=engine, max_bytes=1000)  # type: ignore[arg-type]


def copyright_page() -> str:
    """A Sphinx-like page whose whole body sits in ``<section id="copyright">``, as Python's own docs'
    copyright page does (its text is the interpreter's real ``copyright``): resiliparse's main-content pass
    takes the section for a footer and returns nothing."""
    paras = "".join(f"<p>{html.escape(line)}</p>" for line in str(copyright).splitlines() if line.strip())
    return (
        "<!DOCTYPE html><html lang='en'><head><title>Copyright</title></head><body>"
        "<nav><a href='/'>Python</a> | <a href='index.html'>3.11 Documentation</a></nav>"
        f"<div class='body' role='main'><section id='copyright'><h1>Copyright</h1>{paras}</section></div>"
        "</body></html>"
    )


def test_empty_main_content_falls_back_to_full_text() -> None:
    page = copyright_page()
    assert extract(page, fallback="none").text == ""  # what the main-content pass alone gives
    result = extract(page)
    assert result.extractor == FULL_TEXT and result.main_share == 0.0
    assert "Python Software Foundation" in result.text and "Stichting Mathematisch Centrum" in result.text
    traf = extract(page, fallback="trafilatura")
    assert traf.extractor == "trafilatura" and "Python Software Foundation" in traf.text
    assert "3.11 Documentation" not in traf.text  # trafilatura still leaves the navigation out


def test_main_text_that_holds_its_share_is_kept() -> None:
    page = pydoc_page("json")
    result = extract(page)
    assert result.extractor == "resiliparse" and result.text == extract(page, fallback="none").text
    # a threshold above the page's real share forces the fallback, which then reports the share it measured
    forced = extract(page, min_main_share=1.0)
    assert forced.extractor == FULL_TEXT and forced.main_share is not None and 0 < forced.main_share < 1
    assert len(forced.text) > len(result.text)


def test_code_mode_fallback_keeps_code_blocks() -> None:
    page, blocks = docs_page_with_code()
    page = page.replace("<div role='main'>", "<div role='main' id='copyright'>")
    assert extract(page, mode="code", fallback="none").text == ""
    result = extract(page, mode="code")
    assert result.extractor == FULL_TEXT and result.code_blocks == 2
    for block in blocks:
        assert f"```\n{block}\n```" in result.text
