"""Sentence counts on scripts whose words end in combining marks (Tamil, Devanagari) and on Georgian."""

from __future__ import annotations

import polars as pl
import pytest

from data_pipes.web.sentences import count_sentences
from data_pipes.web.word_tokenizer import tokenize

TAMIL = "அது நல்லது. இது நல்லது. அவன் வந்தான். அவள் போனாள்."
GEORGIAN = "ის მოვიდა. ის წავიდა. ჩვენ დავიძინეთ."


@pytest.mark.parametrize("profile", ["en", "plain"])
def test_full_stop_after_a_combining_mark_ends_a_sentence(profile: str) -> None:
    texts = pl.Series(
        ["ஒன்று. இரண்டு. மூன்று.", TAMIL, "नमस्ते दुनिया. यह ठीक है.", "Hello there. How are you? Fine."]
    )
    # datatrove's split_into_sentences(..., Languages.english) gives 3, 4, 2, 3 on these texts
    assert count_sentences(texts, profile).to_list() == [3, 4, 2, 3]
    assert tokenize(pl.Series(["ஒன்று. இரண்டு,"]), profile)["tok"].to_list() == ["ஒன்று", ".", "இரண்டு", ","]


def test_georgian_full_stops_split() -> None:
    # spaCy's character lists lack Georgian, so datatrove keeps "მოვიდა." whole and counts 1 sentence; Unicode
    # classes Mkhedruli as lower-case letters, so the full stop splits off and each sentence counts
    assert count_sentences(pl.Series([GEORGIAN]), "plain").to_list() == [3]
