"""Code-preserving pre-processing for the ``code`` extraction mode.

Main-text extractors treat ``<pre>`` blocks as just more text: trafilatura re-flows or drops many of them (on
the Python docs it kept 52 of 122 multi-line blocks verbatim), and both engines may prune a code-only
``<div>`` as boilerplate. So before extraction each ``<pre>`` block is cut out of the HTML and replaced by a
placeholder paragraph (a single unique word); the extractor decides, as for any paragraph, whether that place
is main content, and the placeholder is then replaced by the block's original text (tags stripped, entities
unescaped, indentation and newlines untouched), fenced by triple backticks. A placeholder the extractor
dropped drops its block.

Departure from GLM-4.5's recipe: the report re-extracts code-related pages "keeping code formatting" with its
own parser; here the same effect comes from protecting ``<pre>`` blocks around an unchanged off-the-shelf
extractor. Inline ``<code>`` keeps its text through the extractor (it is short and has no layout to lose).
"""

from __future__ import annotations

import html
import re

_PRE = re.compile(r"<pre\b[^>]*>(.*?)</pre\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
PLACEHOLDER = "ArcflowCodeBlock{:05d}Q"
_PLACEHOLDER = re.compile(r"ArcflowCodeBlock(\d{5})Q")


def pre_text(inner_html: str) -> str:
    """The text of a ``<pre>`` block's inner HTML: ``<br>`` as newlines, tags dropped, entities unescaped."""
    text = html.unescape(_TAG.sub("", _BR.sub("\n", inner_html)))
    return text.strip("\n").rstrip()


def protect_code(raw_html: str) -> tuple[str, list[str]]:
    """HTML with each non-empty ``<pre>`` block replaced by a placeholder paragraph, and the blocks' texts."""
    blocks: list[str] = []

    def swap(match: re.Match[str]) -> str:
        text = pre_text(match.group(1))
        if not text.strip():
            return ""
        blocks.append(text)
        return f"<p>{PLACEHOLDER.format(len(blocks) - 1)}</p>"

    return _PRE.sub(swap, raw_html), blocks


def restore_code(text: str, blocks: list[str]) -> str:
    """Put each block back where its placeholder survived, fenced, on lines of its own."""

    def back(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return f"\n```\n{blocks[index]}\n```\n" if index < len(blocks) else ""

    restored = _PLACEHOLDER.sub(back, text)
    return re.sub(r"\n{3,}(?=```)|(?<=```)\n{3,}", "\n\n", restored).strip("\n")


def has_code(raw_html: str) -> bool:
    """Whether the page has code blocks worth the code mode (a ``<pre>`` element)."""
    return _PRE.search(raw_html) is not None
