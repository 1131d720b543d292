"""Tests for the column-wise Gopher / C4 / FineWeb heuristics (data_pipes.web)."""

from __future__ import annotations

import os

import polars as pl
import pytest

from data_pipes.web.c4 import C4Params, c4_apply
from data_pipes.web.fineweb import FineWebParams, fineweb_reasons
from data_pipes.web.gopher_quality import GopherQualityParams, gopher_quality_reasons
from data_pipes.web.gopher_repetition import GopherRepetitionParams, gopher_repetition_reasons
from data_pipes.web.heuristic_chain import heuristic_chain
from data_pipes.web.word_tokenizer import split_chunk, tokenize

PROSE = [
    "The river runs past the old mill and through the valley, where farmers grow wheat.",
    "In spring the water rises with the melting snow, and the village children gather to watch it.",
    "Most of the houses were built with stone from the hills, which gives the streets a warm colour.",
    "Visitors often stay at the inn near the bridge, a building open to travellers since 1820.",
    "The museum keeps records of the floods, the harvests and the families that have lived here.",
    "On market days the square fills with stalls selling bread, cheese, honey and vegetables.",
]
GOOD = "\n".join(PROSE)
GREEK = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda"


def one(fn, text: str, params) -> str | None:
    return fn(pl.Series([text]), params)[0]


@pytest.fixture
def gq() -> GopherQualityParams:
    return GopherQualityParams()


def test_tokenizer_matches_spacy_style_splits() -> None:
    assert split_chunk("(hello),") == ("(", "hello", ")", ",")
    assert split_chunk("don't") == ("do", "n't")
    assert split_chunk("U.S.") == ("U.S.",)
    assert split_chunk("end.") == ("end", ".")
    assert split_chunk("well-known") == ("well", "-", "known")
    assert split_chunk("10km") == ("10", "km")
    assert split_chunk("https://example.com/a.html") == ("https://example.com/a.html",)
    tokens = tokenize(pl.Series(["Hi there, friend.", "", "a\tb"]))
    assert tokens["tok"].to_list() == ["Hi", "there", ",", "friend", ".", "a", "b"]
    assert tokens["doc"].to_list() == [0, 0, 0, 0, 0, 2, 2]


def test_good_prose_passes_every_filter(gq: GopherQualityParams) -> None:
    texts, reasons = heuristic_chain(
        pl.Series([GOOD]), gq, GopherRepetitionParams(), C4Params(), FineWebParams()
    )
    assert reasons.to_list() == [None]
    assert texts[0] == GOOD


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("only a few words here", "gopher_quality_min_words"),
        (" ".join(["a"] * 60), "gopher_quality_min_avg_word_length"),
        (" ".join(["extraordinarilylong"] * 60), "gopher_quality_max_avg_word_length"),
        (GOOD + "\n" + "# " * 40, "gopher_quality_hash_ratio"),
        (GOOD + "\n" + "... " * 40, "gopher_quality_ellipsis_ratio"),
        ("\n".join("- " + p for p in PROSE), "gopher_quality_bullet_lines"),
        ("\n".join(p[:-1] + "..." for p in PROSE), "gopher_quality_ellipsis_lines"),
        (GOOD + "\n" + " ".join(str(i) for i in range(80)), "gopher_quality_alpha_words"),
        (" ".join(["bread cheese honey market river stone"] * 12), "gopher_quality_stop_words"),
    ],
)
def test_gopher_quality_reasons(gq: GopherQualityParams, text: str, reason: str) -> None:
    assert one(gopher_quality_reasons, text, gq) == reason


def test_gopher_quality_thresholds_are_honoured() -> None:
    short = " ".join(PROSE[:2])  # about 40 words
    assert one(gopher_quality_reasons, short, GopherQualityParams()) == "gopher_quality_min_words"
    assert one(gopher_quality_reasons, short, GopherQualityParams(min_doc_words=10)) is None
    capped = GopherQualityParams(max_doc_words=20)
    assert one(gopher_quality_reasons, GOOD, capped) == "gopher_quality_max_words"
    with pytest.raises(ValueError):
        GopherQualityParams(max_bullet_lines_ratio=2)
    with pytest.raises(ValueError):
        GopherQualityParams(unknown=1)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "gopher_repetition_empty"),
        ("\n\n".join([PROSE[0]] * 3 + PROSE[1:3]), "gopher_repetition_dup_para_frac"),
        ("\n".join([PROSE[0]] * 4 + PROSE), "gopher_repetition_dup_line_frac"),
        ("\n".join([PROSE[0] * 3] * 2 + PROSE), "gopher_repetition_dup_line_char_frac"),
        (GOOD + " " + "the cat " * 60, "gopher_repetition_top_2_gram"),
        (GOOD + " " + " ".join([GREEK] * 5), "gopher_repetition_dup_5_gram"),
    ],
)
def test_gopher_repetition_reasons(text: str, reason: str) -> None:
    assert one(gopher_repetition_reasons, text, GopherRepetitionParams()) == reason


def test_gopher_repetition_thresholds_are_honoured() -> None:
    text = "\n".join([PROSE[0]] * 4 + PROSE)
    loose = GopherRepetitionParams(dup_line_frac=0.9, dup_line_char_frac=0.9, dup_para_char_frac=0.9)
    assert one(gopher_repetition_reasons, text, GopherRepetitionParams()) == "gopher_repetition_dup_line_frac"
    assert one(gopher_repetition_reasons, text, loose) != "gopher_repetition_dup_line_frac"
    # None turns a check off (the params allow it), like a loose threshold
    off = GopherRepetitionParams(dup_line_frac=None, dup_line_char_frac=None, dup_para_char_frac=None)
    assert one(gopher_repetition_reasons, text, off) == one(gopher_repetition_reasons, text, loose)


def test_c4_removes_lines_and_drops_documents() -> None:
    junk = "Please enable JavaScript to view this site.\nRead our privacy policy here today.\nMenu\n[1]"
    text = GOOD + "\n" + junk
    new, reasons = c4_apply(pl.Series([text]), C4Params())
    assert reasons.to_list() == [None]
    assert new[0] == GOOD
    assert c4_apply(
        pl.Series(
            [
                GOOD + "\nLorem ipsum dolor sit amet, consectetur.",
            ]
        ),
        C4Params(),
    )[1][0] == ("c4_lorem_ipsum")
    code = GOOD + "\nfunction f() { return 1; }."
    assert c4_apply(pl.Series([code]), C4Params())[1][0] == "c4_curly_bracket"
    assert c4_apply(pl.Series(["\n".join(PROSE[:3])]), C4Params())[1][0] == "c4_too_few_sentences"
    # two sentences per line: enough sentences from three lines
    two = "\n".join(p + " It was so." for p in PROSE[:3])
    assert c4_apply(pl.Series([two]), C4Params())[1][0] is None
    assert c4_apply(pl.Series(["\n".join(PROSE[:3])]), C4Params(min_num_sentences=3))[1][0] is None
    long_word = GOOD + "\n" + "x" * 1200 + " is a very long word."
    assert c4_apply(pl.Series([long_word]), C4Params())[0][0] == GOOD


def test_c4_sentence_mode_filters_sentences_not_lines() -> None:
    text = (
        "Menu\nThe river runs past the mill. It floods in spring! Why? Farmers grow wheat there.\n"
        "Cookies: we use cookies on this site. Visitors stay at the inn."
    )
    # sentences: "Menu\nThe river runs past the mill." kept (ends in a full stop, 6 words); "It floods in
    # spring!" kept; "Why?" dropped (1 word); "Farmers grow wheat there." kept; the cookie sentence dropped
    # (policy); "Visitors stay at the inn." kept: 4 sentences, joined by spaces
    sentences = C4Params(split_paragraph=False, min_num_sentences=4)
    new, reasons = c4_apply(pl.Series([text]), sentences)
    assert reasons[0] is None
    assert new[0] == (
        "Menu\nThe river runs past the mill. It floods in spring! Farmers grow wheat there. "
        "Visitors stay at the inn."
    )
    assert c4_apply(pl.Series([text]), C4Params(split_paragraph=False))[1][0] == "c4_too_few_sentences"
    # lines: "Menu" dropped (no full stop), the second kept whole (4 sentences), the third dropped (policy)
    new, reasons = c4_apply(pl.Series([text]), C4Params(min_num_sentences=4))
    assert reasons[0] is None
    assert new[0] == "The river runs past the mill. It floods in spring! Why? Farmers grow wheat there."


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("\n  \n", "fineweb_empty"),
        ("\n".join(p.rstrip(".") for p in PROSE), "fineweb_line_punct_ratio"),
        (GOOD + "\n" + "\n".join(f"Item {i}." for i in range(20)), "fineweb_short_line_ratio"),
        (GOOD + "\n" + PROSE[0], "fineweb_char_dup_ratio"),
        ("\n".join(f"Internationalization{i}considerations." for i in range(12)), "fineweb_list_ratio"),
    ],
)
def test_fineweb_reasons(text: str, reason: str) -> None:
    assert one(fineweb_reasons, text, FineWebParams()) == reason


def test_fineweb_thresholds_are_honoured() -> None:
    text = GOOD + "\n" + PROSE[0]
    assert one(fineweb_reasons, text, FineWebParams(char_duplicates_ratio=0.5)) is None


CRAFTED = [GOOD, GOOD + "\n" + PROSE[0], "\n".join("- " + p for p in PROSE), "\n".join(PROSE[:3])]


def test_agreement_with_datatrove() -> None:
    """The crafted cases; ~420 real documents are in test_datatrove_agreement.py."""
    for module in ("datatrove", "spacy"):  # scripts/setup installs both: under CI a missing one fails
        __import__(module) if os.environ.get("CI") else pytest.importorskip(module)
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    docs = CRAFTED + [t for t, _ in _ALL_CASES()]
    ours = heuristic_chain(
        pl.Series(docs), GopherQualityParams(), GopherRepetitionParams(), C4Params(), FineWebParams()
    )[1].to_list()
    filters = [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()]
    for text, mine in zip(docs, ours, strict=True):
        doc, kept = Document(text=text, id="x"), True
        for flt in filters:
            if flt.filter(doc) is not True:
                kept = False
                break
        assert kept == (mine is None), (text[:80], mine)


def _ALL_CASES() -> list[tuple[str, str]]:  # noqa: N802
    marks = [test_gopher_quality_reasons, test_gopher_repetition_reasons, test_fineweb_reasons]
    cases: list[tuple[str, str]] = []
    for fn in marks:
        for mark in fn.pytestmark:
            if mark.name == "parametrize":
                cases.extend(mark.args[1])
    return cases
