"""Main-text extraction from raw HTML with resiliparse (default) or trafilatura, in ``text`` or ``code`` mode.

The default engine was chosen by measurement (``benchmarks/extraction.py --limit 80``, 400 pages of five
shared web corpora, token F1 against each page's known main-content element): resiliparse 269 pages/s, mean F1
0.881; trafilatura (``fast=True``) 18 pages/s, mean F1 0.849. trafilatura is better on the Sphinx / DocBook
manuals (F1 0.95 vs 0.91) but loses half of the Debian Handbook's body (recall 0.51 vs 0.74) and, in text
mode, more than half of the code blocks (45% kept verbatim vs 97%). Fifteen times the throughput at equal
quality decided it; trafilatura stays selectable with ``engine="trafilatura"``. Both run with their
main-content heuristics on, formatting kept (paragraph breaks, list bullets), comments and link targets off.

``code`` mode protects ``<pre>`` blocks around the extractor (see ``extract_code``) so code keeps its
indentation and newlines, fenced by triple backticks. The page title and language hint (``extract_hints``) are
returned with the text whatever the engine. Departure from the references: no per-document wall-clock timeout,
because shard tasks run on Dask worker threads where neither engine's C/lxml code can be interrupted; a size
limit (``max_bytes``) is the guard instead, checked before parsing.

Nothing is lost silently: when the main-content pass returns less than ``min_main_share`` of the page's
visible text (resiliparse with ``main_content=False``: everything a reader sees, scripts and styles excluded),
the page falls back (``fallback``) to resiliparse's full-text mode, or first to trafilatura and, when that too
keeps less than the share, to full text. ``Extraction.extractor`` names the pass whose text was kept. The
visible text is computed only when the main text is shorter than ``min_main_share`` of the raw HTML's
characters: visible text is never longer than its HTML (tags and entities outnumber the characters they stand
for; true of every one of the 10,562 shared-corpora pages), so a longer main text already holds the share.

Measured on all 10,562 pages of the five shared web corpora, token F1 against each page's structural reference
(``benchmarks/extraction.py --limit 4000 --only fallback`` repeats the figures at 0.1): resiliparse's
main-content pass keeps < 5% of the visible text on 185 pages (14 of them empty) whose reference it recalls at
0.003-0.045: python docs' indexes and long module pages, javadoc class pages, LibreOffice help pages. A
threshold of 0.1 gave the best mean F1 (javadoc 0.749 -> 0.814, python docs 0.922 -> 0.971, LibreOffice 0.947
-> 0.950; PostgreSQL 0.920 -> 0.922; the handbook unchanged; 0.2 lowers javadoc to 0.792 as boilerplate floods
in); 573 pages (5.4%) fall back. Full text and trafilatura-then-full-text reach the same F1 (0.814 vs 0.804
javadoc, 0.971 vs 0.975 python docs), but cost differs: over the five corpora, as the node runs it on one
(loaded) core, 197 pages/s without a fallback, 184 with full text (-7%), 76 with trafilatura (0.35 s per
fallen-back python docs page); so ``full_text`` is the default. All 14 pages the main pass left empty (13
LibreOffice help pages, Python's copyright page) come out with text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from data_pipes.io.decoding import text_binary_reason
from data_pipes.web.extract_code import has_code, protect_code, restore_code
from data_pipes.web.extract_hints import lang_hint, title

Engine = Literal["resiliparse", "trafilatura"]
Mode = Literal["text", "code"]
Fallback = Literal["full_text", "trafilatura", "none"]
ENGINES: tuple[str, ...] = ("resiliparse", "trafilatura")
FULL_TEXT = "resiliparse_full_text"  # ``Extraction.extractor`` when the full-text fallback produced the text
MIN_MAIN_SHARE = 0.1  # by measurement, see the module docstring


class ExtractionError(Exception):
    """The page cannot be extracted (binary junk, a parser failure): the row is quarantined."""


class TooLarge(Exception):
    """The page is larger than the size guard: the row is dropped."""


@dataclass(frozen=True)
class Extraction:
    text: str
    title: str
    lang_hint: str
    code_blocks: int = 0  # <pre> blocks restored (code mode)
    extractor: str = "resiliparse"  # the pass whose text this is: an engine name or FULL_TEXT
    main_share: float | None = None  # main-pass / visible characters, when the visible text was measured


def _resiliparse(raw_html: str, main_content: bool = True) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(
        raw_html,
        preserve_formatting=True,
        main_content=main_content,
        list_bullets=True,
        alt_texts=False,
        links=False,
        form_fields=False,
        noscript=False,
        comments=False,
    )


def _trafilatura(raw_html: str, url: str) -> str:
    import trafilatura

    out = trafilatura.extract(
        raw_html,
        url=url or None,
        include_comments=False,
        include_tables=True,
        include_images=False,
        include_links=False,
        deduplicate=False,
        fast=True,
    )
    return out or ""


def run_engine(raw_html: str, engine: Engine, url: str = "") -> str:
    """The engine's main text for ``raw_html``; engine errors propagate."""
    if engine == "resiliparse":
        return _resiliparse(raw_html)
    if engine == "trafilatura":
        return _trafilatura(raw_html, url)
    raise ValueError(f"unknown extraction engine {engine!r}; expected one of {', '.join(ENGINES)}")


def _tidy(text: str) -> str:
    """Trailing spaces off every line, runs of blank lines down to one."""
    lines = [line.rstrip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")


def _fallback(
    source: str, main: str, engine: Engine, url: str, fallback: Fallback, min_share: float
) -> tuple[str, str, float | None]:
    """(text, extractor, main_share): the main text unless it holds less than ``min_share`` of the visible
    text, then the fallback's. A fallback pass that fails is skipped (the main pass worked: nothing to
    quarantine)."""
    if fallback == "none" or min_share <= 0 or len(main) >= min_share * len(source):
        return main, engine, None
    try:
        visible = _tidy(_resiliparse(source, main_content=False))
    except Exception:  # noqa: BLE001 - the main pass's text stands
        return main, engine, None
    if not visible:
        return main, engine, None
    share = min(1.0, len(main) / len(visible))
    if share >= min_share:
        return main, engine, share
    if fallback == "trafilatura" and engine != "trafilatura":
        try:
            alt = _tidy(_trafilatura(source, url))
        except Exception:  # noqa: BLE001 - on to full text
            alt = ""
        if len(alt) >= min_share * len(visible):
            return alt, "trafilatura", share
    return visible, FULL_TEXT, share


def extract(
    raw_html: str,
    *,
    engine: Engine = "resiliparse",
    mode: Mode = "text",
    url: str = "",
    max_bytes: int | None = None,
    fallback: Fallback = "full_text",
    min_main_share: float = MIN_MAIN_SHARE,
) -> Extraction:
    """Extract one page. Raises ``TooLarge`` above ``max_bytes`` (UTF-8 bytes) and ``ExtractionError`` for
    binary junk or an engine failure; an empty ``text`` in the result means the page had no visible text
    (or, with ``fallback="none"``, no main content)."""
    if max_bytes is not None and len(raw_html) * 4 > max_bytes:  # a character is at most 4 UTF-8 bytes
        size = len(raw_html.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise TooLarge(f"{size} bytes > max_bytes={max_bytes}")
    reason = text_binary_reason(raw_html)
    if reason is not None:
        raise ExtractionError(f"binary content: {reason}")
    blocks: list[str] = []
    source = raw_html
    if mode == "code" and has_code(raw_html):
        source, blocks = protect_code(raw_html)
    try:
        main = _tidy(run_engine(source, engine, url))
    except Exception as exc:  # noqa: BLE001 - engines raise parser-specific types; all mean "cannot extract"
        raise ExtractionError(f"{engine}: {type(exc).__name__}: {exc}") from exc
    text, extractor, share = _fallback(source, main, engine, url, fallback, min_main_share)
    kept = text.count("ArcflowCodeBlock") if blocks else 0
    if blocks:
        text = restore_code(text, blocks)
    return Extraction(text, title(raw_html), lang_hint(raw_html), kept, extractor, share)
