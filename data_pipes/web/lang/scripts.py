"""The writing system of a text, and the rules a document of an unknown language falls back to.

`dominant_script` counts the letters of each script in a text (column-wise, over its first `SAMPLE_CHARS`
characters) and names the most frequent one; kana anywhere makes Han text Japanese. `SCRIPT_FALLBACK` gives
each script its word segmenter and word-length bounds; a fallback document has no stop-word list, so that
rule is off for it."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

SAMPLE_CHARS = 4000
# script name (ISO 15924) -> regex class of its letters (and combining marks, so an Indic word counts whole);
# order breaks ties
SCRIPTS = {
    "Latn": r"\p{Latin}",
    "Cyrl": r"\p{Cyrillic}",
    "Arab": r"\p{Arabic}",
    "Hani": r"\p{Han}",
    "Kana": r"[\p{Hiragana}\p{Katakana}]",
    "Hang": r"\p{Hangul}",
    "Thai": r"\p{Thai}",
    "Grek": r"\p{Greek}",
    "Hebr": r"\p{Hebrew}",
    "Deva": r"\p{Devanagari}",
    "Beng": r"\p{Bengali}",
    "Guru": r"\p{Gurmukhi}",
    "Gujr": r"\p{Gujarati}",
    "Orya": r"\p{Oriya}",
    "Taml": r"\p{Tamil}",
    "Telu": r"\p{Telugu}",
    "Knda": r"\p{Kannada}",
    "Mlym": r"\p{Malayalam}",
    "Sinh": r"\p{Sinhala}",
    "Laoo": r"\p{Lao}",
    "Khmr": r"\p{Khmer}",
    "Mymr": r"\p{Myanmar}",
    "Ethi": r"\p{Ethiopic}",
    "Geor": r"\p{Georgian}",
    "Armn": r"\p{Armenian}",
}


@dataclass(frozen=True)
class ScriptFallback:
    """A script's fallback: its word segmenter and average-word-length bounds (0: no such rule, as datatrove
    skips a falsy threshold);
    `unsegmented`: the script is written without spaces between words and has no segmenter here, so its
    whitespace-cut "words" are phrases and every word-count rule (word length, words per document, share of
    alphabetic words, words per line, top and duplicated n-grams) is off; line and paragraph repetition stay."""

    segmenter: str
    min_avg_word_length: float
    max_avg_word_length: float
    unsegmented: bool = False


# Han and kana: FineWeb-2's Chinese and Japanese bounds; other scripts: datatrove's minimum, and FineWeb-2's
# most permissive maximum among the tuned space-delimited languages (German, Finnish: 15). Lao, Khmer and
# Myanmar are written without spaces between words and no segmenter of theirs is installed
_UNSEGMENTED = ScriptFallback("plain", 0, 0, unsegmented=True)
SCRIPT_FALLBACK = {
    "Hani": ScriptFallback("zh", 1, 5),
    "Kana": ScriptFallback("ja", 1, 6),
    "Thai": ScriptFallback("th", 2, 10),
    "Hang": ScriptFallback("plain", 1, 6),
    "Laoo": _UNSEGMENTED,
    "Khmr": _UNSEGMENTED,
    "Mymr": _UNSEGMENTED,
}
# scripts with no sentence-final mark in common use (Thai, Lao: a space ends a sentence)
NO_TERMINAL_PUNCT = ("Thai", "Laoo")
OTHER_SCRIPTS = ScriptFallback("plain", 2, 15)


def dominant_script(texts: pl.Series) -> pl.Series:
    """Per text, the script (a key of `SCRIPTS`) with the most letters, "Kana" when kana occur among Han;
    "" for a text without letters of these scripts."""
    head = texts.cast(pl.String).fill_null("").str.slice(0, SAMPLE_CHARS)
    counts = pl.DataFrame({"t": head}).select(
        [pl.col("t").str.count_matches(cls).alias(name) for name, cls in SCRIPTS.items()]
    )
    # Japanese mixes Han and kana: any real share of kana makes the text Japanese
    counts = counts.with_columns(
        Kana=pl.when(pl.col("Kana") * 10 >= pl.col("Hani")).then(pl.col("Kana") + pl.col("Hani")).otherwise(0)
    )
    names = list(SCRIPTS)
    best = counts.select(
        pl.when(pl.max_horizontal(names) > 0)
        .then(pl.concat_list(names).list.arg_max())
        .otherwise(None)
        .alias("i")
    )["i"]
    return best.replace_strict(list(range(len(names))), names, default="", return_dtype=pl.String)


def fallback_for(script: str) -> ScriptFallback:
    return SCRIPT_FALLBACK.get(script, OTHER_SCRIPTS)
