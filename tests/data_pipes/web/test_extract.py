"""HTML extraction on real pages: pydoc's HTML of stdlib modules, with real stdlib source in <pre> blocks."""

from __future__ import annotations

import html
import inspect
import pydoc
import textwrap

import pytest

from data_pipes.web.extract import ExtractionError, TooLarge, extract
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
