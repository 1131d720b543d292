"""Bytes to text for documents of unknown encoding, and the binary-content check.

Decoding order (the first that decodes strictly wins):

1. a byte-order mark (UTF-8, UTF-16, UTF-32);
2. plain UTF-8;
2b. UTF-8 with replacement, when the BOM or the declared charset says UTF-8 and the bytes are UTF-8 but for a few
   stray ones: at most ``LOSSY_UTF8_MAX_SHARE`` (20%) of the non-ASCII units (valid non-ASCII characters plus
   invalid bytes) invalid. Each bad sequence becomes U+FFFD, as in a browser, which follows the label; flagged
   ``encoding_source="declared_lossy"`` (or ``"bom_lossy"``) with ``decode_errors`` (how many U+FFFD were put
   in). Why 20%: a page wholly in another encoding but labelled UTF-8 has nearly every non-ASCII byte invalid as
   UTF-8 (measured on short pages: cp1251 and cp1252 100%, GBK 81%, Shift_JIS 83%; legacy bytes seldom form valid
   UTF-8 sequences), while a UTF-8 page with a few pasted cp1252 bytes is near 0 on a long page but not on a
   short one: two stray bytes among 20 umlauts are already 9%, so 1% or 5% would send such a page to detection,
   which turns every umlaut into mojibake. 20% keeps a 4x margin below the mislabelled pages, which go on to
   detection as before (as does a UTF-8 template around a longer body pasted in cp1252);
3. the charset the document declares in its first 4 KiB: ``<meta charset=...>``, ``<meta http-equiv ...
   content="...; charset=...">`` or an XML declaration's ``encoding=``, mapped as browsers map labels (WHATWG:
   ``iso-8859-1`` / ``us-ascii`` -> windows-1252, ``iso-8859-9`` -> windows-1254, ``gb2312`` -> gb18030, ...;
   see ``data_pipes.web.encoding``); a label browsers do not know is ignored;
4. an encoding the caller already found for this file (``prefer``, mapped the same way; the JSONL reader
   passes the one that decoded an earlier line, so a cp1252 file is not re-detected line by line; the WARC
   reader passes the HTTP charset);
5. the detectors' guesses (uchardet, then ``charset_normalizer`` when it has language evidence; see
   ``data_pipes.web.encoding``), made on a sample of at most 64 KiB (head and tail), each checked by decoding
   the whole document strictly;
6. ``cp1252`` (flagged ``encoding_source="fallback"``); then charset_normalizer's guess without evidence;
   then ``latin-1``, which cannot fail (also flagged ``fallback``).

Only UTF-8 (with or without BOM) counts as plain text; for anything else the readers put ``encoding`` and
``encoding_source`` in ``meta``.

Binary junk is recognised before decoding (a NUL byte or many control bytes in the first 8 KiB, unless a
UTF-16/32 BOM explains the NULs) and again on the decoded text (JSON and Parquet text can carry control
characters too).
"""

from __future__ import annotations

import codecs
import re
from typing import NamedTuple

from data_pipes.io.records import BadInput
from data_pipes.web.encoding import detect_codecs, whatwg_codec

SNIFF_BYTES = 4096
BINARY_SAMPLE = 8192
CONTROL_RATIO_MAX = 0.10
LOSSY_UTF8_MAX_SHARE = 0.20  # see the module docstring, step 2b
# Controls that ordinary text does contain: tab, newlines, form feed, vertical tab, ESC (ISO-2022-JP).
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\x1b")
_CONTROL_BYTES = bytes(b for b in range(32) if b not in _TEXT_CONTROLS) + b"\x7f"
# C0 controls except the ones above, DEL and the C1 range (what binary junk decoded as latin-1 is full of).
_CONTROL_CHARS = re.compile("[" + "".join(f"\\x{b:02x}" for b in _CONTROL_BYTES) + "\\x80-\\x9f]")
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_META_CHARSET = re.compile(rb"<meta[^>]{0,512}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:\-]+)", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"<\?xml[^>]{0,256}?encoding\s*=\s*[\"']([A-Za-z0-9_.:\-]+)[\"']", re.IGNORECASE)


class Decoded(NamedTuple):
    """Decoded text, the Python codec name that decoded it, and how that codec was chosen."""

    text: str
    encoding: str
    encoding_source: str  # "utf-8" | "bom" | "declared" | "bom_lossy" | "declared_lossy" | "preferred" | ...
    decode_errors: int = 0  # U+FFFD put in for invalid bytes (only the *_lossy sources have any)


def _bom_encoding(data: bytes) -> str | None:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    return None


def declared_charset(data: bytes) -> str | None:
    """The codec a browser would use for the charset a document declares in its first 4 KiB (HTML meta or
    XML declaration), or None when it declares none or one browsers do not know."""
    head = data[:SNIFF_BYTES]
    match = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    if match is None:
        return None
    return whatwg_codec(match.group(1).decode("ascii"))


def _try(data: bytes, encoding: str | None) -> str | None:
    if encoding is None:
        return None
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _lossy_utf8(data: bytes) -> tuple[str, int] | None:
    """``data`` decoded as UTF-8 with U+FFFD for bad sequences, and how many were put in, when at most
    ``LOSSY_UTF8_MAX_SHARE`` of its non-ASCII units are invalid bytes; else None."""
    escaped = data.decode(
        "utf-8", "surrogateescape"
    )  # each invalid byte -> one lone surrogate U+DC80..U+DCFF
    invalid = sum(1 for ch in escaped if "\udc80" <= ch <= "\udcff")
    non_ascii = sum(1 for ch in escaped if ch > "\x7f")
    if not invalid or invalid > LOSSY_UTF8_MAX_SHARE * non_ascii:
        return None
    text = data.decode("utf-8", "replace")
    return text, text.count("\ufffd") - escaped.count("\ufffd")


def binary_reason(data: bytes) -> str | None:
    """Why raw bytes look binary (NUL byte or too many control bytes in the first 8 KiB), else None."""
    if _bom_encoding(data) is not None:
        return None  # UTF-16/32 text has NUL bytes; its decoded text is checked instead
    sample = data[:BINARY_SAMPLE]
    nul = sample.find(b"\x00")
    if nul >= 0:
        return f"NUL byte at offset {nul}"
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if sample and controls / len(sample) > CONTROL_RATIO_MAX:
        return f"{controls} control bytes in the first {len(sample)} bytes"
    return None


def text_binary_reason(text: str) -> str | None:
    """Why decoded text looks binary (NUL, or >10% C0/C1 controls in the first 64 Ki chars), else None."""
    sample = text[: BINARY_SAMPLE * 8]
    nul = sample.find("\x00")
    if nul >= 0:
        return f"NUL character at position {nul}"
    controls = len(_CONTROL_CHARS.findall(sample))
    if sample and controls / len(sample) > CONTROL_RATIO_MAX:
        return f"{controls} control characters in the first {len(sample)} characters"
    return None


def decode_bytes(data: bytes, prefer: str | None = None) -> Decoded:
    """Decode ``data`` by the order in the module docstring; never fails."""
    bom = _bom_encoding(data)
    if bom is not None and (text := _try(data, bom)) is not None:
        return Decoded(text, "utf-8" if bom == "utf-8-sig" else bom, "utf-8" if bom == "utf-8-sig" else "bom")
    if (text := _try(data, "utf-8")) is not None:
        return Decoded(text, "utf-8", "utf-8")
    declared = declared_charset(data)
    if bom == "utf-8-sig" and (lossy := _lossy_utf8(data[len(codecs.BOM_UTF8) :])) is not None:
        return Decoded(lossy[0], "utf-8", "bom_lossy", lossy[1])
    if bom is None and declared == "utf-8" and (lossy := _lossy_utf8(data)) is not None:
        return Decoded(lossy[0], "utf-8", "declared_lossy", lossy[1])
    if (text := _try(data, declared)) is not None:
        return Decoded(text, declared, "declared")
    prefer = (whatwg_codec(prefer, declared=False) or prefer) if prefer else None
    if (text := _try(data, prefer)) is not None:
        return Decoded(text, prefer, "preferred")
    weak: list[tuple[str, str]] = []
    for codec, evidence in detect_codecs(data):
        if (text := _try(data, codec)) is not None:
            if evidence:
                return Decoded(text, codec, "detected")
            weak.append((text, codec))
    # Without evidence (short texts) charset_normalizer's guess is near random: windows-1252 is the better bet.
    if (text := _try(data, "cp1252")) is not None:
        return Decoded(text, "cp1252", "fallback")
    if weak:
        return Decoded(weak[0][0], weak[0][1], "detected")
    return Decoded(data.decode("latin-1"), "latin-1", "fallback")


def decode_document(data: bytes, prefer: str | None = None) -> Decoded:
    """Decode a document's bytes, raising ``BadInput("binary_content", ...)`` for binary junk."""
    reason = binary_reason(data)
    if reason is None:
        decoded = decode_bytes(data, prefer)
        reason = text_binary_reason(decoded.text)
        if reason is None:
            return decoded
    raise BadInput("binary_content", reason)


def encoding_meta(decoded: Decoded) -> dict[str, str | int]:
    """The ``meta`` entries for a decoded document: empty for plain UTF-8 (with or without BOM); a lossy
    decode adds ``decode_errors``."""
    if decoded.encoding_source == "utf-8":
        return {}
    meta: dict[str, str | int] = {"encoding": decoded.encoding, "encoding_source": decoded.encoding_source}
    if decoded.decode_errors:
        meta["decode_errors"] = decoded.decode_errors
    return meta
