"""The dominant script of texts in the major scripts, and the fallback rules a document of an unknown
language gets from it (no word-length rule for scripts written without spaces and without a segmenter)."""

from __future__ import annotations

import polars as pl

from data_pipes.web.c4 import C4Params
from data_pipes.web.fineweb import FineWebParams
from data_pipes.web.gopher_quality import GopherQualityParams
from data_pipes.web.gopher_repetition import GopherRepetitionParams
from data_pipes.web.heuristic_chain import heuristic_chain_by_language
from data_pipes.web.lang.fallbacks import describe
from data_pipes.web.lang.rules import Sections, resolve
from data_pipes.web.lang.scripts import dominant_script

SAMPLES = {
    "Taml": "அது நல்லது. இது நல்லது.",
    "Deva": "यह अच्छा है।",
    "Beng": "আমি ভাত খাই।",
    "Guru": "ਮੈਂ ਘਰ ਜਾਂਦਾ ਹਾਂ।",
    "Gujr": "હું ઘરે જાઉં છું.",
    "Orya": "ମୁଁ ଘରକୁ ଯାଉଛି।",
    "Telu": "నేను ఇంటికి వెళ్తున్నాను.",
    "Knda": "ನಾನು ಮನೆಗೆ ಹೋಗುತ್ತೇನೆ.",
    "Mlym": "ഞാൻ വീട്ടിലേക്ക് പോകുന്നു.",
    "Sinh": "මම ගෙදර යනවා.",
    "Thai": "ฉันไปตลาด",
    "Laoo": "ຂ້ອຍໄປຕະຫຼາດ",
    "Khmr": "ខ្ញុំទៅផ្សារ។",
    "Mymr": "သူသွားတယ်။",
    "Ethi": "ሰላም ነው።",
    "Geor": "ის მოვიდა.",
    "Armn": "Ես եկա։",
    "Hebr": "שלום עולם",
    "Arab": "مرحبا بالعالم",
    "Hang": "안녕하세요 세계",
    "Kana": "こんにちは世界",
    "Hani": "你好世界",
    "Cyrl": "Привет мир",
    "Grek": "Γειά σου κόσμε",
    "Latn": "hello world",
}


def test_dominant_script_of_major_scripts() -> None:
    got = dominant_script(pl.Series([*SAMPLES.values(), "12 34 !"])).to_list()
    assert got == [*SAMPLES, ""]


def test_unspaced_scripts_without_segmenter_have_no_word_count_rules() -> None:
    base = Sections(GopherQualityParams(), GopherRepetitionParams(), C4Params(), FineWebParams())
    for script in ("Laoo", "Khmr", "Mymr"):
        rules = resolve(f"script:{script}", base, {})
        assert rules is not None
        q, c4 = rules.sections.gopher_quality, rules.sections.c4
        assert (q.min_avg_word_length, q.max_avg_word_length, q.min_doc_words, q.min_alpha_words_ratio) == (
            0,
            0,
            0,
            0,
        )
        assert c4.min_words_per_line == -1
        assert (
            rules.sections.gopher_repetition.top_n_grams == rules.sections.gopher_repetition.dup_n_grams == ()
        )
        assert "no word-count rule" in describe(f"script:{script}")
    tamil = resolve("script:Taml", base, {})
    assert tamil is not None and tamil.sections.gopher_quality.max_avg_word_length == 15
    assert describe("script:Taml").startswith("Taml script: plain words, average word length 2 to 15")


def test_khmer_page_of_unknown_language_is_kept() -> None:
    # Khmer writes no spaces between words, only between phrases: cut at whitespace, its "words" average far
    # over the spaced scripts' 15 characters, so the spaced rules dropped it (gopher_quality_min_words first)
    khmer = (
        "ខ្ញុំទៅផ្សារជាមួយម្តាយរបស់ខ្ញុំនៅព្រឹកនេះ។ គាត់ទិញបន្លែនិងត្រីសម្រាប់អាហារពេលល្ងាច។\n"
        "ប្អូនប្រុសរបស់ខ្ញុំរៀននៅសាលាក្បែរផ្ទះ។ ឪពុកធ្វើការនៅក្រុមហ៊ុនមួយក្នុងទីក្រុងភ្នំពេញ។\n"
        "ពេលល្ងាចយើងទាំងអស់គ្នាញ៉ាំបាយជុំគ្នា។ បន្ទាប់មកខ្ញុំអានសៀវភៅមុនពេលចូលគេង។"
    )
    base = Sections(GopherQualityParams(), GopherRepetitionParams(), C4Params(), FineWebParams())
    _, reasons, keys = heuristic_chain_by_language(
        pl.Series([khmer]), pl.Series([None], dtype=pl.String), base
    )
    assert keys.to_list() == ["script:Khmr"]
    assert reasons.to_list() == [None]
