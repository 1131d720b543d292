"""A package's long description as a small web page, so the demo gives HTML extraction real work.

The page has what real pages have around the content: a ``<head>`` with title and meta tags, a navigation bar
built from the ``Project-URL`` entries, and a footer. The description itself (Markdown, reStructuredText or
plain text) is turned into block HTML by a deliberately small converter: fenced and indented code become
``<pre>``, Markdown and reStructuredText headings ``<h2>``, bullet lists ``<ul>``, everything else ``<p>``;
inline ``code``, bold and Markdown links are kept, and so are Markdown's raw HTML blocks. This is not a
Markdown implementation (none is a dependency): it only has to produce plausible page structure. A description
that already is HTML is embedded as is.
"""

from __future__ import annotations

import html
import re

_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_RST_RULE = re.compile(r"^([=\-~^*#+`])\1{2,}\s*$")
_BULLET = re.compile(r"^\s*([-*+]|\d+[.)])\s+")
_INLINE_CODE = re.compile(r"``?([^`]+)``?")
_MD_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")
_MD_STRONG = re.compile(r"\*\*([^*]+)\*\*")
_HTML_TAG = re.compile(r"^\s*</?[A-Za-z][A-Za-z0-9]*[\s>/]")


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = _INLINE_CODE.sub(r"<code>\1</code>", out)
    out = _MD_STRONG.sub(r"<strong>\1</strong>", out)
    return _MD_LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', out)


def _blocks(text: str) -> list[tuple[str, list[str]]]:
    """Split into ("code", lines) for fenced code and ("text", lines) for blank-line separated blocks."""
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] = []
    fence: list[str] | None = None
    for line in text.splitlines():
        if fence is not None:
            if _FENCE.match(line):
                blocks.append(("code", fence))
                fence = None
            else:
                fence.append(line)
        elif _FENCE.match(line):
            blocks.append(("text", current))
            current, fence = [], []
        elif line.strip():
            current.append(line)
        else:
            blocks.append(("text", current))
            current = []
    blocks.append(("code", fence) if fence is not None else ("text", current))
    return [(kind, lines) for kind, lines in blocks if lines]


def _text_block(lines: list[str], markdown: bool) -> str:
    if markdown and _HTML_TAG.match(lines[0]):  # Markdown passes raw HTML blocks through
        return "\n".join(lines)
    if markdown and all(line.startswith(">") for line in lines):
        return f"<blockquote><p>{_inline(' '.join(line.lstrip('> ') for line in lines))}</p></blockquote>"
    words = [line for line in lines if not _RST_RULE.match(line)]
    if len(lines) <= 3 and len(words) == 1 and len(words) < len(lines):  # title with under/overline
        return f"<h2>{_inline(words[0].strip())}</h2>"
    if len(lines) == 1 and (heading := _MD_HEADING.match(lines[0])):
        return f"<h2>{_inline(heading.group(2))}</h2>"
    if all(line.startswith(("    ", "\t")) for line in lines):
        return f"<pre>{html.escape(chr(10).join(lines), quote=False)}</pre>"
    if _BULLET.match(lines[0]):
        items: list[str] = []
        for line in lines:
            if _BULLET.match(line) or not items:
                items.append(_BULLET.sub("", line, count=1).strip())
            else:
                items[-1] += " " + line.strip()
        return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in items) + "</ul>"
    return f"<p>{_inline(' '.join(line.strip() for line in lines))}</p>"


def description_html(description: str, content_type: str) -> str:
    """The description as block HTML (embedded unchanged when it already is HTML)."""
    if content_type.lower().startswith("text/html"):
        return description
    markdown = content_type.lower().startswith("text/markdown")
    parts = []
    for kind, lines in _blocks(description):
        if kind == "code":
            parts.append(f"<pre><code>{html.escape(chr(10).join(lines), quote=False)}</code></pre>")
        elif len(lines) == 1 and _RST_RULE.match(lines[0]):
            continue
        else:
            parts.append(_text_block(lines, markdown))
    return "\n".join(parts)


def description_page(
    name: str, version: str, summary: str, description: str, content_type: str, links: list[tuple[str, str]]
) -> str:
    """A complete HTML document for one installed distribution."""
    title = html.escape(f"{name} {version}")
    nav = "".join(f'<li><a href="{html.escape(url)}">{html.escape(label)}</a></li>' for label, url in links)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<title>{title}</title>\n<meta name="description" content="{html.escape(summary)}">\n</head>\n'
        f'<body>\n<header><a class="logo" href="/">Package index</a><nav><ul>{nav}</ul></nav></header>\n'
        f'<main>\n<h1>{title}</h1>\n<p class="summary">{html.escape(summary)}</p>\n'
        f'<article class="description">\n{description_html(description, content_type)}\n</article>\n</main>\n'
        f"<footer><p>Metadata of the installed distribution {title}.</p></footer>\n</body>\n</html>\n"
    )
