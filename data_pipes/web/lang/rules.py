"""Which rules a document's language gets: the node's sections (datatrove's English defaults) with one
language's tuned figures (`table.py`) and the user's per-language overrides laid over them.

- `en`: the sections as given, datatrove's spaCy-English words: English keeps 100% agreement with datatrove.
- a language of the table: its figures (`thresholds`: `calibrated`, the default, FineWeb-2's with the
  thresholds matched to English's on parallel text where that is measurable; `fineweb2`, FineWeb-2's as
  published) replace the fields FineWeb-2 tuned (stop words, word-length
  bounds, share of alphabetic words, duplicate-line share, top / duplicated n-gram shares, FineWeb's line
  punctuation and newline ratios) and its segmenter gives the words; C4 accepts any sentence terminal or closing
  quote at a line's end (Thai, written without sentence punctuation, skips that check). Every other field
  keeps the section's value.
- any other language, or none (empty `lang`): `unknown_lang` decides: `script` (default) uses the segmenter
  and word-length bounds of the text's dominant script without a stop-word rule, `english` the English
  rules, `drop` drops the document (`heuristic_unknown_language`).
- `languages:` in the node's params overrides any field of any language (a known one, one without a row, or
  `en`), and may name its segmenter.
Language codes are read case-insensitively, before any region or script suffix (`pt-BR`, `zh_Hant` -> pt, zh),
and ISO 639-3 codes of the table's languages are accepted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from data_pipes.web.c4 import C4Params
from data_pipes.web.fineweb import FineWebParams
from data_pipes.web.gopher_quality import GopherQualityParams
from data_pipes.web.gopher_repetition import GopherRepetitionParams
from data_pipes.web.lang.scripts import NO_TERMINAL_PUNCT, fallback_for
from data_pipes.web.lang.table import ALIASES, LANGS, LangFigures, Thresholds, figures

UnknownLang = Literal["script", "english", "drop"]
UNKNOWN_DROP_REASON = "heuristic_unknown_language"


class LanguageOverride(BaseModel):
    """Per-language overrides in the node's `languages:` param: fields of any section, and the segmenter."""

    model_config = ConfigDict(extra="forbid")

    segmenter: Literal["en", "plain", "compound", "elision", "arabic", "polish", "zh", "ja", "th"] | None = (
        Field(
            None,
            description="word tokeniser: en (spaCy English), plain, compound (hyphenated words whole), elision "
            "(fr/it/ca), arabic (ar/fa), polish (pl: dotted numbers split), zh, ja, th",
        )
    )
    gopher_quality: dict[str, Any] = Field(default_factory=dict)
    gopher_repetition: dict[str, Any] = Field(default_factory=dict)
    c4: dict[str, Any] = Field(default_factory=dict)
    fineweb: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_exist(self) -> LanguageOverride:
        # validate against each section's model now, so a typo fails before any shard runs
        for name, model in _SECTIONS.items():
            try:
                model.model_validate({**model().model_dump(), **getattr(self, name)})
            except ValidationError as exc:
                where = "; ".join(f"{name}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"{where} (see `arcflow schema --kind heuristic_filters`)") from None
        return self


_SECTIONS: dict[str, type[BaseModel]] = {
    "gopher_quality": GopherQualityParams,
    "gopher_repetition": GopherRepetitionParams,
    "c4": C4Params,
    "fineweb": FineWebParams,
}


@dataclass(frozen=True)
class Sections:
    """The node's four rule sections (None: that filter is off)."""

    gopher_quality: GopherQualityParams | None
    gopher_repetition: GopherRepetitionParams | None
    c4: C4Params | None
    fineweb: FineWebParams | None


@dataclass(frozen=True)
class Rules:
    """The resolved rules of one group of documents: `name` says which (a language code, `script:Hani`, ...)."""

    name: str
    segmenter: str
    sections: Sections


def normalise_lang(code: str | None) -> str:
    """`pt-BR` -> `pt`, `ZH_Hant` -> `zh`, `deu` -> `de`; "" for none."""
    base = (code or "").strip().lower().replace("_", "-").split("-")[0]
    return ALIASES.get(base, base)


def normalise_lang_column(langs: pl.Series) -> pl.Series:
    """`normalise_lang` over a column (nulls become "")."""
    base = (
        langs.cast(pl.String).fill_null("").str.strip_chars().str.to_lowercase().str.split("-").list.first()
    )
    base = base.str.split("_").list.first().fill_null("")
    return base.replace(ALIASES)


def _update(section: BaseModel | None, fields: dict[str, Any]) -> Any:
    if section is None or not fields:
        return section
    return type(section).model_validate({**section.model_dump(), **fields})


def _tuned(base: Sections, f: LangFigures) -> Sections:
    unspaced_thai = f.segmenter == "th"
    return Sections(
        gopher_quality=_update(
            base.gopher_quality,
            {
                "min_avg_word_length": f.min_avg_word_length,
                "max_avg_word_length": f.max_avg_word_length,
                "min_alpha_words_ratio": f.min_alpha_words_ratio,
                "stop_words": f.stop_words,
            },
        ),
        gopher_repetition=_update(
            base.gopher_repetition,
            {"dup_line_frac": f.dup_line_frac, "top_n_grams": f.top_n_grams, "dup_n_grams": f.dup_n_grams},
        ),
        c4=_update(
            base.c4,
            {"end_punct": "unicode", **({"filter_no_terminal_punct": False} if unspaced_thai else {})},
        ),
        fineweb=_update(
            base.fineweb, {"line_punct_thr": f.line_punct_thr, "new_line_ratio": f.new_line_ratio}
        ),
    )


def _script_fallback(base: Sections, script: str) -> tuple[str, Sections]:
    fb = fallback_for(script)
    # an unsegmented script's whitespace-cut "words" are phrases: no rule counts them (0 / -1: off)
    words_off = {"min_doc_words": 0, "min_alpha_words_ratio": 0} if fb.unsegmented else {}
    c4_off = {"min_words_per_line": -1} if fb.unsegmented else {}
    if script in NO_TERMINAL_PUNCT:
        c4_off["filter_no_terminal_punct"] = False
    return fb.segmenter, Sections(
        gopher_quality=_update(
            base.gopher_quality,
            {
                "min_avg_word_length": fb.min_avg_word_length,
                "max_avg_word_length": fb.max_avg_word_length,
                "min_stop_words": 0,  # no stop-word list for an unknown language
                **words_off,
            },
        ),
        # n-grams of phrases: one 3-gram of a short page already passes the top-n-gram share
        gopher_repetition=_update(base.gopher_repetition, {"top_n_grams": [], "dup_n_grams": []})
        if fb.unsegmented
        else base.gopher_repetition,
        c4=_update(base.c4, {"end_punct": "unicode", **c4_off}),
        fineweb=base.fineweb,
    )


def _override(rules: Rules, o: LanguageOverride | None) -> Rules:
    if o is None:
        return rules
    s = rules.sections
    return Rules(
        rules.name,
        o.segmenter or rules.segmenter,
        Sections(
            gopher_quality=_update(s.gopher_quality, o.gopher_quality),
            gopher_repetition=_update(s.gopher_repetition, o.gopher_repetition),
            c4=_update(s.c4, o.c4),
            fineweb=_update(s.fineweb, o.fineweb),
        ),
    )


def resolve(
    key: str,
    base: Sections,
    overrides: dict[str, LanguageOverride],
    thresholds: Thresholds = "calibrated",
) -> Rules | None:
    """The rules of a group key: a language code, `script:<script>` (a fallback) or `drop` (None);
    `thresholds` picks a tuned language's table (`table.figures`)."""
    if key == "drop":
        return None
    if key.startswith("script:"):
        segmenter, sections = _script_fallback(base, key.removeprefix("script:"))
        return Rules(key, segmenter, sections)
    if key == "en":
        rules = Rules("en", "en", base)
    elif key in LANGS:
        rules = Rules(key, LANGS[key].segmenter, _tuned(base, figures(key, thresholds)))
    else:  # a language known only through its override: the script-less fallback, then the override
        segmenter, sections = _script_fallback(base, "")
        rules = Rules(key, segmenter, sections)
    return _override(rules, overrides.get(key))
