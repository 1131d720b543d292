"""Charsets as browsers read them (WHATWG labels) and detection on a bounded sample."""

from __future__ import annotations

import json
from pathlib import Path

import charset_normalizer
import pytest
import resiliparse.parse.encoding

from data_pipes.io.decoding import declared_charset, decode_bytes
from data_pipes.io.readers import read_records
from data_pipes.io.warc_reader import _decode as warc_decode
from data_pipes.web.encoding import DETECT_SAMPLE_BYTES, detection_sample, whatwg_codec

TURKISH = "Fiyat: 25 € (KDV dahil). Öğrenciler için şehir içi ulaşım ücretsizdir; ayrıntılar ığdır şubesinde."
# 镕 (U+9555) is in GBK but not in GB2312: pages labelled gb2312 use it all the time (朱镕基)
CHINESE = "国务院总理朱镕基今天在北京会见了代表团。"
KOREAN = "데비안 관리자 핸드북은 데비안 시스템을 관리하는 방법을 설명합니다."


def _page(body: str, charset: str | None) -> str:
    meta = f'<meta charset="{charset}">' if charset else ""
    return f"<html><head>{meta}<title>t</title></head><body><p>{body}</p></body></html>"


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("iso-8859-9", "cp1254"),
        ("latin5", "cp1254"),
        ("ISO-8859-1", "cp1252"),
        ("latin1", "cp1252"),
        ("us-ascii", "cp1252"),
        ("gb2312", "gb18030"),
        ("GBK", "gb18030"),
        ("shift_jis", "cp932"),
        ("euc-kr", "cp949"),
        ("big5", "big5hkscs"),
        ("tis-620", "cp874"),
        ("koi8-r", "koi8-r"),
        ("utf-16", "utf-8"),  # a meta tag readable as ASCII: the bytes are not UTF-16
        ("x-user-defined", "cp1252"),
        ("no-such-charset", None),
        ("", None),
    ],
)
def test_labels_map_as_browsers_map_them(label: str, codec: str | None) -> None:
    assert whatwg_codec(label) == codec


def test_iso_8859_9_page_with_euro_decodes_to_euro(tmp_path: Path) -> None:
    page = _page(TURKISH, "iso-8859-9")
    data = page.encode("cp1254")  # what the page's author's tools wrote: € is byte 0x80
    assert b"\x80" in data and declared_charset(data) == "cp1254"
    path = tmp_path / "tr.html"
    path.write_bytes(data)
    [rec] = read_records(str(path), "html", source="t")
    assert rec["text"] == page and "\x80" not in rec["text"]
    assert json.loads(rec["meta"])["encoding"] == "cp1254"


def test_short_gb2312_page_with_gbk_only_character() -> None:
    page = _page(CHINESE, "gb2312")
    data = page.encode("gbk")
    with pytest.raises(UnicodeDecodeError):
        data.decode("gb2312")  # what Python's codec of that name does with 镕
    decoded = decode_bytes(data)
    assert decoded.text == page and (decoded.encoding, decoded.encoding_source) == ("gb18030", "declared")


def test_http_charset_is_mapped_too() -> None:
    data = _page(TURKISH, None).encode("cp1254")
    text, meta = warc_decode(data, "iso-8859-9")
    assert text == _page(TURKISH, None) and meta["encoding"] == "cp1254"


def test_short_undeclared_korean_page() -> None:
    page = _page(KOREAN, None)
    decoded = decode_bytes(page.encode("euc-kr"))
    assert decoded.text == page and decoded.encoding_source == "detected"


def test_2mb_undeclared_page_is_detected_on_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    paragraph = "<p>Les élèves ont réussi l’examen « très difficile » – bravo à eux, dit la directrice.</p>\n"
    page = "<html><head><title>Résultats</title></head><body>\n" + paragraph * 24_000 + "</body></html>\n"
    data = page.encode("cp1252")
    assert len(data) > 2_000_000
    seen: list[int] = []
    real_uchardet, real_normalizer = resiliparse.parse.encoding.detect_encoding, charset_normalizer.from_bytes

    def uchardet_spy(sample: bytes, *args: object, **kwargs: object) -> str:
        seen.append(len(sample))
        return real_uchardet(sample, *args, **kwargs)

    def normalizer_spy(sample: bytes, *args: object, **kwargs: object) -> object:
        seen.append(len(sample))
        return real_normalizer(sample, *args, **kwargs)

    monkeypatch.setattr(resiliparse.parse.encoding, "detect_encoding", uchardet_spy)
    monkeypatch.setattr(charset_normalizer, "from_bytes", normalizer_spy)
    decoded = decode_bytes(data)
    assert decoded.text == page and (decoded.encoding, decoded.encoding_source) == ("cp1252", "detected")
    assert 1 <= len(seen) <= 2 and all(0 < n <= DETECT_SAMPLE_BYTES for n in seen)


def test_sample_takes_head_and_tail_without_splitting_characters() -> None:
    head, tail = "<p>" + "前后" * 499 + "。</p>\n", "<p>" + "后前" * 499 + "。</p>\n"
    data = (head * 40 + tail * 40).encode("gb18030")
    sample = detection_sample(data)
    assert DETECT_SAMPLE_BYTES - 2_000 < len(sample) <= DETECT_SAMPLE_BYTES
    text = sample.decode("gb18030")  # strict: no character was cut in two
    assert text.startswith(head) and text.endswith(tail)
    assert detection_sample(b"short") == b"short"


GERMAN_UTF8 = (
    "Grüße aus München! Die Bäume am Ufer der Isar blühen, die Straßen sind voller Füße und Räder. "
    "Über Nacht wurde es kühl; früh am Morgen öffnen die Läden, und Bürger kaufen Brötchen und Äpfel."
)


def test_declared_utf8_page_with_stray_cp1252_bytes_keeps_utf8(tmp_path: Path) -> None:
    head = '<html><head><meta charset="utf-8"><title>München</title></head><body><p>'
    # two bytes pasted from a cp1252 editor (curly quotes), amid valid UTF-8 umlauts
    data = head.encode() + GERMAN_UTF8.encode() + b" Er sagte \x93Hallo\x94." + b"</p></body></html>"
    path = tmp_path / "de.html"
    path.write_bytes(data)
    [rec] = read_records(str(path), "html", source="t")
    assert "Grüße aus München" in rec["text"] and "Brötchen und Äpfel" in rec["text"]
    assert "Ã" not in rec["text"] and "Er sagte \ufffdHallo\ufffd." in rec["text"]
    meta = json.loads(rec["meta"])
    assert (meta["encoding"], meta["encoding_source"], meta["decode_errors"]) == (
        "utf-8",
        "declared_lossy",
        2,
    )
    with_bom = decode_bytes(b"\xef\xbb\xbf" + GERMAN_UTF8.encode() + b" \x96 Ende")
    assert with_bom.text == GERMAN_UTF8 + " \ufffd Ende" and with_bom.encoding_source == "bom_lossy"


def test_page_wholly_in_cp1251_labelled_utf8_is_still_detected() -> None:
    russian = "Привет! Это страница на русском языке, её автор ошибся в объявлении кодировки. " * 3
    data = (
        b'<html><head><meta charset="utf-8"></head><body><p>'
        + russian.encode("cp1251")
        + b"</p></body></html>"
    )
    decoded = decode_bytes(data)
    assert russian in decoded.text and (decoded.encoding, decoded.encoding_source) == ("cp1251", "detected")
    assert decoded.decode_errors == 0
    # past the bar: a UTF-8 page where more than 20% of the non-ASCII units are bad bytes is not forced to UTF-8
    mostly_bad = b'<meta charset="utf-8">' + "Grüße".encode() + "äöüßÄÖÜ".encode("cp1252")
    assert decode_bytes(mostly_bad).encoding_source != "declared_lossy"
