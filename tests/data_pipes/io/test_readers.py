"""Tests for data_pipes.io.readers on tiny real files made in tmp_path."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipes.io.paths import UnknownFormatError
from data_pipes.io.readers import detect_format, expand_paths, read_records

HTML_UTF8 = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Café menu</title></head>
<body><nav><a href="/">Home</a></nav><main><h1>Crème brûlée</h1><p>Naïve café — 3 €.</p></main></body></html>
"""
HTML_CP1252 = """<html><head>
<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">
<title>Prix</title></head><body><p>“Déjà vu” coûte 5 € – façade.</p></body></html>
"""
HTML_LATIN1_DECLARED = (
    '<?xml version="1.0" encoding="ISO-8859-1"?>\n<html><body><p>Ångström “q”</p></body></html>\n'
)


def _read(path: Path | str, fmt: str | None = None, **kwargs: object) -> list[dict]:
    path = str(path)
    return list(read_records(path, fmt or detect_format(path), source="test", **kwargs))


def _split(records: list[dict]) -> tuple[list[dict], list[dict]]:
    good = [r for r in records if "error" not in r]
    bad = [r for r in records if "error" in r]
    return good, bad


def _error_class(record: dict) -> str:
    return record["error"].split(":", 1)[0]


def _jsonl_lines(n: int) -> list[str]:
    return [json.dumps({"text": f"document number {i} " * 20, "id": f"d{i}", "stars": i}) for i in range(n)]


# ---------------------------------------------------------------- paths and formats


def test_expand_paths_globs_dirs_dedup_and_sorting(tmp_path: Path) -> None:
    (tmp_path / "a" / "deep").mkdir(parents=True)
    for rel in ["a/x.jsonl", "a/deep/y.jsonl.gz", "b.html", "a/.hidden.txt"]:
        (tmp_path / rel).write_text("{}")
    got = expand_paths(["a", "**/*.jsonl*", "b.html", str(tmp_path / "b.html")], base_dir=str(tmp_path))
    expected = sorted(str(tmp_path / rel) for rel in ["a/x.jsonl", "a/deep/y.jsonl.gz", "b.html"])
    assert got == expected
    assert all(os.path.isabs(p) for p in got)


def test_expand_paths_names_the_pattern_that_matches_nothing(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"'nope/\*\.jsonl'"):
        expand_paths(["x.txt", "nope/*.jsonl"], base_dir=str(tmp_path))


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.txt", "text"),
        ("a.TXT.gz", "text"),
        ("p/a.html", "html"),
        ("a.htm.gz", "html"),
        ("a.jsonl.gz", "jsonl"),
    ]
    + [("a.ndjson", "jsonl"), ("a.parquet", "parquet")],
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


@pytest.mark.parametrize("name", ["a.csv", "a.parquet.gz", "README"])
def test_detect_format_rejects_unknown(name: str) -> None:
    with pytest.raises(UnknownFormatError, match="a.csv|gzipped parquet|README"):
        detect_format(name)


def test_read_records_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format 'csv'"):
        read_records("x.csv", "csv", source="s")


# ---------------------------------------------------------------- text and html


def test_html_utf8_is_one_good_record_with_stable_id(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(HTML_UTF8, encoding="utf-8")
    [rec] = _read(path)
    assert rec["text"] == HTML_UTF8
    assert set(rec) == {"id", "text", "source", "url", "lang", "meta"}
    assert rec["url"] == str(path) and rec["source"] == "test" and len(rec["id"]) == 16
    assert json.loads(rec["meta"]) == {"path": str(path), "format": "html"}
    assert _read(path)[0]["id"] == rec["id"]
    assert list(read_records(str(path), "html", source="other"))[0]["id"] != rec["id"]


@pytest.mark.parametrize(
    ("content", "declared"), [(HTML_CP1252, "cp1252"), (HTML_LATIN1_DECLARED, "cp1252")], ids=["meta", "xml"]
)
def test_html_declared_charset_is_used(tmp_path: Path, content: str, declared: str) -> None:
    path = tmp_path / "legacy.html"
    path.write_bytes(content.encode("cp1252"))
    [rec] = _read(path)
    assert rec["text"] == content
    meta = json.loads(rec["meta"])
    assert (meta["encoding"], meta["encoding_source"]) == (declared, "declared")


def test_undeclared_cp1252_text_is_decoded_and_flagged(tmp_path: Path) -> None:
    text = "Les élèves ont réussi l’examen « très difficile » – bravo à eux.\n" * 5
    path = tmp_path / "notes.txt.gz"
    path.write_bytes(gzip.compress(text.encode("cp1252")))
    [rec] = _read(path)
    meta = json.loads(rec["meta"])
    assert meta["encoding_source"] in {"detected", "fallback"}
    assert "élèves" in rec["text"] and "réussi" in rec["text"]


def test_utf16_with_bom_is_text_not_binary(tmp_path: Path) -> None:
    path = tmp_path / "u16.txt"
    path.write_bytes("hello wörld\n".encode("utf-16"))
    [rec] = _read(path)
    assert rec["text"] == "hello wörld\n"
    assert json.loads(rec["meta"])["encoding_source"] == "bom"


def test_binary_junk_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "junk.html"
    path.write_bytes(bytes(range(256)) * 40)
    [rec] = _read(path)
    assert _error_class(rec) == "binary_content"
    assert set(rec) == {"id", "source", "url", "error"} and rec["url"] == str(path)


def test_empty_file_is_a_good_empty_document(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    [rec] = _read(path)
    assert "error" not in rec and rec["text"] == ""


def test_too_large_documents_are_quarantined(tmp_path: Path) -> None:
    plain, packed = tmp_path / "big.txt", tmp_path / "big.html.gz"
    plain.write_text("a" * 2000)
    packed.write_bytes(gzip.compress(b"<p>" + b"b" * 5000 + b"</p>"))
    for path in (plain, packed):
        [rec] = _read(path, max_doc_bytes=1000)
        assert _error_class(rec) == "document_too_large"
    assert "error" not in _read(plain, max_doc_bytes=2000)[0]


def test_truncated_and_corrupt_gzip_single_document(tmp_path: Path) -> None:
    data = gzip.compress(HTML_UTF8.encode() * 50)
    cut, fake = tmp_path / "cut.html.gz", tmp_path / "fake.html.gz"
    cut.write_bytes(data[: len(data) // 2])
    fake.write_bytes(b"this is not gzip at all")
    assert _error_class(_read(cut)[0]) == "gzip_truncated"
    assert _error_class(_read(fake)[0]) == "gzip_corrupt"


def test_missing_file_is_quarantined_not_raised(tmp_path: Path) -> None:
    [rec] = _read(tmp_path / "gone.txt", "text")
    assert _error_class(rec) == "read_error" and "gone.txt" in rec["error"]


# ---------------------------------------------------------------- jsonl


def test_jsonl_mixed_good_and_bad_lines_add_up(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {"text": "first", "url": "https://a.example/1", "lang": "en", "stars": 3, "path": "src/a.py"}
        ),
        '{"text": "unterminated',  # malformed
        "",  # blank: not a record
        json.dumps({"body": "no text field"}),
        json.dumps(["a", "list"]),
        json.dumps({"text": 42}),
        json.dumps({"text": ""}),  # empty document: good
        json.dumps({"text": "bad \u0000\u0001\u0002 bytes"}),
        json.dumps({"text": "last"}),
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    records = _read(path, url_field="url")
    good, bad = _split(records)
    assert len(good) + len(bad) == len(lines) - 1
    assert [r["text"] for r in good] == ["first", "", "last"]
    assert [_error_class(r) for r in bad] == [
        "jsonl_decode_error",
        "missing_text_field",
        "jsonl_not_object",
        "invalid_text_field",
        "binary_content",
    ]
    assert "line 2" in bad[0]["error"]
    first = good[0]
    assert (first["url"], first["lang"]) == ("https://a.example/1", "en")
    assert json.loads(first["meta"]) == {
        "path": str(path),
        "format": "jsonl",
        "record": 0,
        "stars": 3,
        "row_path": "src/a.py",
    }
    assert good[-1]["url"] == f"{path}#8"  # no url field: the locator
    assert len({r["id"] for r in records}) == len(records)


def test_jsonl_id_field_prefixes_source_and_missing_id_is_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_text(json.dumps({"text": "a", "doc_id": 7}) + "\n" + json.dumps({"text": "b"}) + "\n")
    good, bad = _split(_read(path, id_field="doc_id"))
    assert [r["id"] for r in good] == ["test:7"]
    assert [_error_class(r) for r in bad] == ["missing_id_field"]


def test_jsonl_ids_depend_on_path_and_line_not_on_content(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "x"}\n{"text": "y"}\n')
    before = [r["id"] for r in _read(path)]
    path.write_text('{"text": "x"}\n{"text": "changed"}\n{"text": "new"}\n')
    after = [r["id"] for r in _read(path)]
    assert after[:2] == before and len(set(after)) == 3


def test_truncated_gzip_jsonl_yields_prefix_then_one_quarantined_rest(tmp_path: Path) -> None:
    lines = _jsonl_lines(400)
    data = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: int(len(data) * 0.6)])
    good, bad = _split(_read(path))
    assert 0 < len(good) < len(lines)
    assert [_error_class(r) for r in bad] == ["gzip_truncated"]
    assert "end-of-stream marker" in bad[0]["error"] and f"after line {len(good)}" in bad[0]["error"]
    assert [r["text"] for r in good] == [json.loads(line)["text"] for line in lines[: len(good)]]
    assert bad[0]["id"] not in {r["id"] for r in good}


def test_jsonl_cp1252_lines_are_decoded(tmp_path: Path) -> None:
    rows = [{"text": "naïve café – déjà vu"}, {"text": "plain ascii"}, {"text": "œuvre “quoted”"}]
    path = tmp_path / "legacy.jsonl"
    path.write_bytes(b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode("cp1252") for r in rows))
    good, bad = _split(_read(path))
    assert not bad
    assert [r["text"] for r in good] == [r["text"] for r in rows]
    assert "encoding" in json.loads(good[0]["meta"]) and "encoding" not in json.loads(good[1]["meta"])


def test_jsonl_overlong_line_is_skipped_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    long_line = json.dumps({"text": "z" * 5000})
    path.write_text("\n".join([json.dumps({"text": "ok"}), long_line, json.dumps({"text": "after"})]) + "\n")
    records = _read(path, max_doc_bytes=1000)
    assert [r["text"] if "text" in r else _error_class(r) for r in records] == [
        "ok",
        "document_too_large",
        "after",
    ]
    assert str(len(long_line) + 1) in records[1]["error"]


# ---------------------------------------------------------------- parquet


def test_parquet_rows_in_batches_with_extra_columns_and_bad_rows(tmp_path: Path) -> None:
    n = 700  # more than one batch and more than one row group
    texts: list[str | None] = [f"<html><body><p>page {i}</p></body></html>" for i in range(n)]
    texts[5], texts[6] = None, "\x00\x01\x02\x03 junk"
    table = pa.table(
        {
            "html": texts,
            "id": [f"p{i}" for i in range(n)],
            "url": [f"https://docs.example/{i}.html" for i in range(n)],
            "lang_hint": ["en"] * n,
        }
    )
    path = tmp_path / "web.parquet"
    pq.write_table(table, path, row_group_size=300)
    good, bad = _split(_read(path, text_field="html", id_field="id", url_field="url"))
    assert len(good) + len(bad) == n
    assert [_error_class(r) for r in bad] == ["missing_text_field", "binary_content"]
    assert good[0]["id"] == "test:p0" and good[0]["url"] == "https://docs.example/0.html"
    assert json.loads(good[0]["meta"]) == {
        "path": str(path),
        "format": "parquet",
        "record": 0,
        "lang_hint": "en",
    }


def test_parquet_binary_text_column_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "bytes.parquet"
    pq.write_table(pa.table({"text": [b"caf\xe9 au lait, cr\xe8me br\xfbl\xe9e", b"ok"]}), path)
    good, bad = _split(_read(path))
    assert not bad and good[0]["text"] == "café au lait, crème brûlée"
    [rec] = _read(path, text_field="html")
    assert _error_class(rec) == "missing_text_field" and "columns: text" in rec["error"]


def test_unreadable_parquet_is_one_quarantined_record(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    [rec] = _read(path)
    assert _error_class(rec) == "parquet_unreadable"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (
            "Привет мир, как у тебя дела сегодня? Всё хорошо, спасибо. Погода прекрасная и солнечная.",
            "cp1251",
        ),
        ("日本語のテキストです。これはテストです。", "shift_jis"),
        ("Grüße aus Köln", "cp1252"),
    ],
)
def test_undeclared_legacy_encodings_round_trip(tmp_path: Path, text: str, encoding: str) -> None:
    path = tmp_path / "legacy.txt"
    path.write_bytes(text.encode(encoding))
    [rec] = _read(path)
    assert rec["text"] == text
    assert json.loads(rec["meta"])["encoding_source"] in {"detected", "fallback"}
