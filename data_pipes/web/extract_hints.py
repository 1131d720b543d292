"""Page-level hints read from the raw HTML head: the title and the declared language.

Both extractors return only the main text, so the hints are read here, engine-independently, with regular
expressions over the first 64 KiB (no second DOM parse: the head is small and these three tags are regular).
The language hint prefers ``<html lang>`` (or ``xml:lang``), then ``<meta http-equiv="content-language">``,
then ``<meta name="language">``; it is normalised to a lower-case primary tag plus region (``pt-BR`` ->
``pt-br``) and only a hint: language ID decides later.
"""

from __future__ import annotations

import html
import re

HEAD_CHARS = 65536
_HTML_LANG = re.compile(
    r"<html\b[^>]*?\b(?:xml:)?lang\s*=\s*[\"']?\s*([A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*)", re.IGNORECASE
)
_META = re.compile(r"<meta\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"([a-zA-Z:-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>]+))")
_TITLE = re.compile(r"<title\b[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_LANG_TAG = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$")


def _normalise_lang(value: str) -> str:
    tag = value.strip().split(",")[0].strip().replace("_", "-").lower()
    return tag if _LANG_TAG.match(tag) else ""


def _meta_attrs(tag: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) or m.group(3) or m.group(4) or "" for m in _ATTR.finditer(tag)}


def lang_hint(raw_html: str) -> str:
    """The language the page declares (``en``, ``pt-br``, ...), or ``""``."""
    head = raw_html[:HEAD_CHARS]
    match = _HTML_LANG.search(head)
    if match and (tag := _normalise_lang(match.group(1))):
        return tag
    for meta in _META.finditer(head):
        attrs = _meta_attrs(meta.group(0))
        key = (attrs.get("http-equiv") or attrs.get("name") or "").lower()
        if key in ("content-language", "language") and (tag := _normalise_lang(attrs.get("content", ""))):
            return tag
    return ""


def title(raw_html: str) -> str:
    """The text of ``<title>``, unescaped, whitespace collapsed; ``""`` when absent."""
    match = _TITLE.search(raw_html[:HEAD_CHARS])
    if match is None:
        return ""
    return " ".join(html.unescape(_TAGS.sub(" ", match.group(1))).split())
