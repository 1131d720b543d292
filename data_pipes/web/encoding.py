"""Charset labels mapped as browsers map them (WHATWG Encoding), and charset detection on a bounded sample.

Labels: a declared ``iso-8859-9`` is read as windows-1254, ``gb2312`` as GBK, ``latin1`` / ``iso-8859-1`` /
``us-ascii`` as windows-1252, and so on, because that is what browsers do and what pages written for them
expect (a € declared as ISO-8859-9 is byte 0x80, a C1 control in ISO-8859-9 proper). The table is
resiliparse's ``map_encoding_to_html5`` (already a dependency, kept up to date, C). ``webencodings`` was the
alternative: its last release (2017) predates the spec mapping ``hz-gb-2312`` and ``iso-2022-kr`` to the
replacement decoder, and it would be a new dependency; on the 214 labels it knows, the two agree except those,
``x-mac-cyrillic``, ``x-user-defined`` and windows-874. Where resiliparse departs from the spec in a way
Python can follow, the spec wins, by naming the Python codec that is the spec's decoder: windows-874 (labels
``tis-620``, ``iso-8859-11``, ...) is ``cp874`` (resiliparse says ``iso8859-11``, which lacks the € and quotes
at 0x80-0x9F); GBK is ``gb18030`` (the spec's GBK decoder is the gb18030 decoder, four-byte sequences
included); Shift_JIS is ``cp932`` (Windows-31J, with the NEC and IBM rows), EUC-KR is ``cp949`` (Unified
Hangul Code) and Big5 is ``big5hkscs`` (the spec's Big5 index holds the HKSCS extensions). Each is a superset
of the narrower codec, so text that decoded before decodes the same. As the spec's meta prescan does, a
declared UTF-16 means UTF-8 (the declaration was readable as ASCII, so the bytes are not UTF-16; real UTF-16
has a byte-order mark) and ``x-user-defined`` means windows-1252. A label the spec does not know is ignored
(``None``): the caller detects instead, as a browser would fall back.

Detection, on a sample of at most ``DETECT_SAMPLE_BYTES`` (the first and last halves of that budget, each cut
at a space, newline or ``>`` so no multi-byte character is split), never the whole document
(charset_normalizer took 0.78 s on a 2 MB page): first uchardet (Mozilla's universal detector, shipped inside
resiliparse), then ``charset_normalizer`` when it has language evidence (coherence above 0; ties go to
windows-1252). The caller (``data_pipes.io.decoding``) takes the first guess that decodes the whole document
strictly. Measured on real text (the Debian Handbook's extracted pages in 25 languages, re-encoded in each
language's legacy code pages: windows-125x, ISO-8859-2, KOI8-R, Shift_JIS, EUC-JP, EUC-KR, GB18030, Big5;
undeclared): uchardet decodes 95% of 3,000-character pages exactly, charset_normalizer 71% (it reads Western
and Turkish pages as windows-1250 or 1257: "élèves" came out "élčves"); uchardet alone misses EUC-KR (it
answers UTF-8, which does not decode), where charset_normalizer is right, hence both, in that order: together
98.6% (300-character pages: 94.3%; uchardet 90.9%, charset_normalizer 78.4%). ``benchmarks/extraction.py``
repeats this measurement.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator

DETECT_SAMPLE_BYTES = 64 * 1024
_SAFE_CUTS = (b"\n", b" ", b">")  # bytes that are never part of a multi-byte character in the legacy codecs
# (resiliparse's answer -> the spec's decoder as Python names it) where the two differ
_SPEC_FIXES = {
    "iso8859-11": "cp874",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
}
# East Asian multi-byte codecs: text in another encoding seldom forms their byte pairs, so a guess of one that
# decodes the whole document strictly is evidence enough (charset_normalizer reports no coherence for short
# Korean text, which windows-1252 would otherwise turn into mojibake)
_MULTI_BYTE = frozenset(
    {"cp932", "shift_jis", "euc_jp", "euc_jis_2004", "cp949", "euc_kr", "gb18030", "gbk", "big5hkscs", "big5"}
)
_META_PRESCAN = {"utf-16-le": "utf-8", "utf-16-be": "utf-8", "x-user-defined": "cp1252"}


def whatwg_codec(label: str | None, declared: bool = True) -> str | None:
    """The Python codec a browser would decode ``label`` with, or None for a label the spec does not know.
    ``declared``: the label was read from the document itself (meta tag, XML declaration), so the meta
    prescan's rules apply (UTF-16 means UTF-8, x-user-defined means windows-1252)."""
    if not label:
        return None
    from resiliparse.parse.encoding import map_encoding_to_html5

    clean = label.strip().strip("\"'").lower()
    if clean == "x-user-defined":
        return _META_PRESCAN[clean] if declared else None
    mapped = map_encoding_to_html5(clean, fallback_utf8=False)
    if mapped is None:
        return None
    name = codecs.lookup(mapped).name
    name = _SPEC_FIXES.get(name, name)
    return _META_PRESCAN.get(name, name) if declared else name


def python_codec_as_browser(name: str) -> str:
    """A Python codec name (a detector's answer) as the codec a browser would use for it: ``ascii`` and
    ``latin-1`` become cp1252, ``iso8859-9`` cp1254, ``gb2312`` gb18030; names the spec does not know stay."""
    try:
        python_name = codecs.lookup(name).name
    except LookupError:
        return name
    return whatwg_codec(python_name, declared=False) or python_name


def _cut_after_last(chunk: bytes) -> bytes:
    end = max(chunk.rfind(sep) for sep in _SAFE_CUTS)
    return chunk[: end + 1] if end >= len(chunk) // 2 else chunk


def _cut_before_first(chunk: bytes) -> bytes:
    starts = [i for i in (chunk.find(sep) for sep in _SAFE_CUTS) if i >= 0]
    start = min(starts) if starts else -1
    return chunk[start:] if 0 <= start < len(chunk) // 2 else chunk


def detection_sample(data: bytes, size: int = DETECT_SAMPLE_BYTES) -> bytes:
    """At most ``size`` bytes of ``data`` for detection: all of it when short, else its head and tail."""
    if len(data) <= size:
        return data
    head = _cut_after_last(data[: size // 2])
    tail = _cut_before_first(data[len(data) - (size - len(head) - 1) :])
    return head + b"\n" + tail


def _charset_normalizer(sample: bytes) -> tuple[str, bool] | None:
    """charset_normalizer's guess (as a browser would name it) and whether it rests on language evidence."""
    from charset_normalizer import from_bytes

    matches = from_bytes(sample)
    best = matches.best()
    if best is None or best.encoding is None:
        return None
    # Short Latin texts decode equally well in several code pages; break ties in favour of windows-1252, the
    # most common legacy encoding on the web (and the WHATWG default for Western locales).
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos and match.coherence >= best.coherence:
            best = match
    return python_codec_as_browser(best.encoding), best.coherence > 0.0


def detect_codecs(data: bytes) -> Iterator[tuple[str, bool]]:
    """Guesses of ``data``'s encoding, best first, each with whether it rests on evidence, made on a sample of
    it (``detection_sample``): uchardet's, then charset_normalizer's. Lazy: charset_normalizer (the slower)
    runs only when the caller asks past uchardet's guess."""
    from resiliparse.parse.encoding import detect_encoding

    sample = detection_sample(data)
    guess = detect_encoding(sample, max_len=0)
    first = _SPEC_FIXES.get(codecs.lookup(guess).name, guess) if guess else ""
    if first and first != "utf-8":  # uchardet's answer when it finds nothing; UTF-8 was tried first anyway
        yield first, True
    normalizer = _charset_normalizer(sample)
    if normalizer is not None and normalizer[0] != first:
        codec, evidence = normalizer
        yield codec, evidence or codec in _MULTI_BYTE
