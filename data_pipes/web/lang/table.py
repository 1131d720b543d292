"""Per-language figures for the Gopher, C4 and FineWeb heuristics, keyed by the `lang` codes of `langid`
(lid.176: ISO 639-1 where one exists).

The numbers and stop words are FineWeb-2's published per-language filter settings (Penedo et al. 2025,
arXiv 2506.20920; the `configs/<lang>_<script>.yml` files of huggingface/fineweb-2), restated in our own
format: they were tuned on datatrove's word tokens for each language, which our segmenters reproduce
(`segmenters.py`). FineWeb-2's `max_non_alpha_words_ratio` is the minimum share of words holding a letter
(`min_alpha_words_ratio` here, as in datatrove's code). Korean is the one exception: FineWeb-2 counted Kiwi
morphemes, whose model does not install as a wheel, so Korean words are whitespace words and its stop words are
our own list of frequent standalone words (the figures stay FineWeb-2's).

English has no row: it runs the node's own sections, datatrove's English defaults. A language without a row
falls back as the node's `unknown_lang` param says (see `scripts.py`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from data_pipes.web.lang.calibrated import CALIBRATED


@dataclass(frozen=True)
class LangFigures:
    """One language's tuned figures; `segmenter` names a word tokeniser of `segmenters.py`."""

    source: str  # where the figures come from (FineWeb-2 config name)
    segmenter: str
    min_avg_word_length: float
    max_avg_word_length: float
    min_alpha_words_ratio: float
    dup_line_frac: float
    top_n_grams: tuple[tuple[int, float], ...]  # Gopher repetition, n = 2, 3, 4
    dup_n_grams: tuple[tuple[int, float], ...]  # Gopher repetition, n = 5 .. 10
    line_punct_thr: float  # FineWeb
    new_line_ratio: float  # FineWeb
    stop_words: tuple[str, ...]


# word segmenter per language: as datatrove's tokenizer for it splits (measured with spaCy's blank tokenizers:
# which keep "E-Mail" whole, which split elisions); "plain" splits hyphens (Slavic, Turkish, Arabic, ...);
# "polish" splits dotted numbers as spaCy's Polish tokenizer does (section numbers moved the alphabetic share
# of numbered Polish pages by up to 0.21 against datatrove's words)
_SEGMENTER = {
    "zh": "zh", "ja": "ja", "th": "th", "fr": "elision", "it": "elision", "ca": "elision",
    **dict.fromkeys(("de", "da", "el", "es", "fi", "hu", "nb", "nl", "pt", "ro", "sv"), "compound"),
    "ar": "arabic", "fa": "arabic", "pl": "polish",
}  # fmt: skip


def _fw2(
    source: str,
    min_avg: float,
    max_avg: float,
    min_alpha: float,
    dup_line: float,
    top: tuple[float, float, float],
    dup: tuple[float, float, float, float, float, float],
    line_punct: float,
    new_line: float,
    stop_words: str,
) -> LangFigures:
    lang = _ISO1[source.split("_")[0]]
    return LangFigures(
        source=f"FineWeb-2 {source}",
        segmenter=_SEGMENTER.get(lang, "plain"),
        min_avg_word_length=min_avg,
        max_avg_word_length=max_avg,
        min_alpha_words_ratio=min_alpha,
        dup_line_frac=dup_line,
        top_n_grams=tuple(zip((2, 3, 4), top, strict=True)),
        dup_n_grams=tuple(zip(range(5, 11), dup, strict=True)),
        line_punct_thr=line_punct,
        new_line_ratio=new_line,
        stop_words=tuple(stop_words.split()),
    )


# ISO 639-3 (FineWeb-2's config names) -> the lid.176 code used as the table's key
_ISO1 = {
    "arb": "ar", "bul": "bg", "cat": "ca", "ces": "cs", "dan": "da", "deu": "de", "ell": "el", "spa": "es",
    "fas": "fa", "fin": "fi", "fra": "fr", "heb": "he", "hin": "hi", "hrv": "hr", "hun": "hu", "ind": "id",
    "ita": "it", "jpn": "ja", "kor": "ko", "nob": "nb", "nld": "nl", "pol": "pl", "por": "pt", "ron": "ro",
    "rus": "ru", "slk": "sk", "swe": "sv", "tha": "th", "tur": "tr", "ukr": "uk", "vie": "vi", "cmn": "zh",
}  # fmt: skip
# other spellings of a key: ISO 639-3, lid.176's "no" for Norwegian, GlotLID's Chinese, ...
ALIASES = {**_ISO1, "no": "nb", "nob": "nb", "nor": "nb", "zho": "zh", "eng": "en"}

# fmt: off
LANGS: dict[str, LangFigures] = {
    "ar": _fw2("arb_Arab", 2, 9, 0.787, 0.304, (0.197, 0.172, 0.146), (0.165, 0.153, 0.142, 0.131, 0.12, 0.109), 0.143, 0.189, "، في من على إلى عام أن مع أو هو عن التي كان بين ما كانت هي المتحدة بعد"),
    "bg": _fw2("bul_Cyrl", 3, 10, 0.756, 0.317, (0.173, 0.157, 0.139), (0.17, 0.158, 0.144, 0.131, 0.12, 0.108), 0.154, 0.142, "на и в е от за се г. с през да по"),
    "ca": _fw2("cat_Latn", 2, 11, 0.832, 0.294, (0.216, 0.189, 0.168), (0.159, 0.149, 0.137, 0.126, 0.116, 0.105), 0.154, 0.118, "de el la a i d l' en d' que va els per un les una amb es"),
    "cs": _fw2("ces_Latn", 3, 11, 0.781, 0.311, (0.206, 0.183, 0.165), (0.168, 0.157, 0.145, 0.133, 0.121, 0.109), 0.06, 0.182, "v a se na je z s do"),
    "da": _fw2("dan_Latn", 3, 11, 0.798, 0.305, (0.367, 0.297, 0.232), (0.169, 0.158, 0.147, 0.134, 0.123, 0.112), 0.1, 0.182, "i og af en til er den at som på for med det blev var der fra de han et"),
    "de": _fw2("deu_Latn", 0, 15, 0.774, 0.263, (0.169, 0.153, 0.137), (0.141, 0.134, 0.126, 0.117, 0.108, 0.098), 0.0, 0.152, "der und die in von im den des mit das er dem als wurde für"),
    "el": _fw2("ell_Grek", 3, 11, 0.809, 0.31, (0.194, 0.175, 0.156), (0.174, 0.163, 0.153, 0.142, 0.13, 0.119), 0.167, 0.116, "του και το της η την από ο με τον να που των στην για στο σε είναι τη τα οι"),
    "es": _fw2("spa_Latn", 3, 14, 0.825, 0.252, (0.156, 0.14, 0.125), (0.145, 0.136, 0.127, 0.117, 0.108, 0.099), 0.182, 0.138, "de la en el y a que del los se por un con una las su"),
    "fa": _fw2("fas_Arab", 2, 9, 0.812, 0.246, (0.189, 0.164, 0.143), (0.157, 0.147, 0.137, 0.127, 0.117, 0.107), 0.2, 0.15, "در و ، به از که است این را با یک"),
    "fi": _fw2("fin_Latn", 3, 14, 0.755, 0.293, (0.253, 0.202, 0.179), (0.153, 0.143, 0.133, 0.122, 0.112, 0.101), 0.114, 0.161, "ja on oli hän vuonna myös joka se ei sen ovat sekä mutta että tai vuoden kanssa hänen s. jälkeen the"),
    "fr": _fw2("fra_Latn", 2, 11, 0.812, 0.264, (0.161, 0.149, 0.134), (0.15, 0.141, 0.131, 0.121, 0.111, 0.1), 0.1, 0.185, "de la le et à en l' des du les est d' un une il dans par au"),
    "he": _fw2("heb_Hebr", 2, 9, 0.799, 0.34, (0.239, 0.202, 0.173), (0.16, 0.151, 0.14, 0.129, 0.118, 0.108), 0.2, 0.126, "של את על הוא עם בשנת גם היה היא לאחר לא ידי בין או כי"),
    "hi": _fw2("hin_Deva", 2, 21, 0.837, 0.206, (0.208, 0.198, 0.161), (0.135, 0.125, 0.116, 0.108, 0.099, 0.09), 0.091, 0.316, "के में है की और से का को एक हैं पर"),
    "hr": _fw2("hrv_Latn", 2, 11, 0.751, 0.312, (0.215, 0.19, 0.165), (0.173, 0.162, 0.15, 0.138, 0.126, 0.113), 0.099, 0.198, "je u i se na su za od s a"),
    "hu": _fw2("hun_Latn", 3, 15, 0.766, 0.322, (0.226, 0.198, 0.172), (0.169, 0.159, 0.148, 0.136, 0.124, 0.112), 0.067, 0.231, "a az és is egy volt hogy nem meg de magyar első el között"),
    "id": _fw2("ind_Latn", 3, 12, 0.805, 0.241, (0.194, 0.166, 0.145), (0.166, 0.155, 0.144, 0.133, 0.122, 0.111), 0.111, 0.157, "dan yang di pada dari ini dengan adalah untuk dalam"),
    "it": _fw2("ita_Latn", 3, 21, 0.807, 0.246, (0.198, 0.156, 0.133), (0.144, 0.136, 0.127, 0.118, 0.109, 0.1), 0.025, 0.2, "di e il la in a del che è della un per nel l' con da i una"),
    "ja": _fw2("jpn_Jpan", 1, 6, 0.759, 0.328, (0.239, 0.196, 0.172), (0.243, 0.225, 0.207, 0.19, 0.175, 0.159), 0.096, 0.13, "の に を は た て が と で 年 し ・ 月 れ さ"),
    "ko": _fw2("kor_Hang", 1, 6, 0.791, 0.374, (0.282, 0.228, 0.185), (0.201, 0.184, 0.168, 0.154, 0.14, 0.127), 0.062, 0.196, "의 다 이 는 에 을 한 년 하 은 를 했 고 에서 가 있 으로 인 월 로 되"),
    "nb": _fw2("nob_Latn", 3, 12, 0.783, 0.283, (0.204, 0.175, 0.15), (0.146, 0.139, 0.128, 0.119, 0.11, 0.099), 0.107, 0.167, "i og av som en er til på for ble med den det var han de å fra"),
    "nl": _fw2("nld_Latn", 3, 17, 0.828, 0.296, (0.213, 0.182, 0.158), (0.156, 0.146, 0.136, 0.126, 0.115, 0.104), 0.102, 0.154, "de van in het een en is op voor met door zijn werd hij uit"),
    "pl": _fw2("pol_Latn", 3, 12, 0.726, 0.32, (0.222, 0.198, 0.176), (0.172, 0.16, 0.148, 0.136, 0.123, 0.111), 0.087, 0.158, "w i na z do się roku od a jest przez po jako oraz o został był nie"),
    "pt": _fw2("por_Latn", 3, 13, 0.814, 0.287, (0.371, 0.191, 0.163), (0.163, 0.153, 0.141, 0.13, 0.119, 0.108), 0.077, 0.186, "de a e o em do da que um no uma com para na é foi"),
    "ro": _fw2("ron_Latn", 1, 14, 0.779, 0.289, (0.161, 0.146, 0.131), (0.16, 0.149, 0.138, 0.127, 0.117, 0.106), 0.081, 0.207, "de în a și din la o cu este un pe fost care al"),
    "ru": _fw2("rus_Cyrl", 3, 11, 0.713, 0.322, (0.184, 0.164, 0.146), (0.168, 0.156, 0.145, 0.133, 0.121, 0.109), 0.231, 0.139, "в и на с года по году из был к не от что за для его как а он также до после"),
    "sk": _fw2("slk_Latn", 2, 11, 0.752, 0.319, (0.316, 0.218, 0.171), (0.176, 0.165, 0.152, 0.14, 0.127, 0.115), 0.0, 0.214, "v a na sa je z roku s"),
    "sv": _fw2("swe_Latn", 3, 12, 0.841, 0.292, (0.242, 0.195, 0.174), (0.156, 0.147, 0.136, 0.125, 0.116, 0.105), 0.2, 0.135, "i och är av en som den med på till att för"),
    "th": _fw2("tha_Thai", 2, 10, 0.9, 0.349, (0.221, 0.197, 0.162), (0.185, 0.168, 0.152, 0.137, 0.124, 0.111), 0.0, 0.153, "ใน ที่ และ ของ เป็น มี การ ได้"),
    "tr": _fw2("tur_Latn", 3, 21, 0.773, 0.272, (0.214, 0.168, 0.147), (0.154, 0.144, 0.134, 0.124, 0.113, 0.103), 0.091, 0.222, "ve bir olarak bu ile için olan da de tarafından yılında sonra en daha ilk the"),
    "uk": _fw2("ukr_Cyrl", 3, 11, 0.694, 0.3, (0.189, 0.172, 0.153), (0.16, 0.148, 0.136, 0.124, 0.113, 0.102), 0.167, 0.175, "у в на і з та до року за що"),
    "vi": _fw2("vie_Latn", 3, 11, 0.803, 0.293, (0.223, 0.197, 0.171), (0.178, 0.163, 0.15, 0.136, 0.124, 0.111), 0.333, 0.103, "là và của một được trong năm các có loài này đã người"),
    "zh": _fw2("cmn_Hani", 1, 5, 0.735, 0.287, (0.256, 0.201, 0.171), (0.198, 0.182, 0.167, 0.154, 0.14, 0.127), 0.106, 0.178, "的 年 在 月 是 和 日 了 於 · 為 有 被 人 中 为 他 與 後 也 而 由"),
}
# fmt: on

# Korean: whitespace words (see the module's docstring); stop words are ours, frequent standalone words of
# formal and technical Korean ("can", "and", "is / there is", "thing", "etc.", "for", "about", "or", "case")
LANGS["ko"] = LangFigures(
    **{
        **LANGS["ko"].__dict__,
        "source": "FineWeb-2 kor_Hang (stop words: arcflow's, for whitespace words)",
        "stop_words": tuple(
            "수 및 있는 있습니다 있다 것 등 이 그 할 하는 위해 대한 또는 경우 때 더 통해 같은 다른 모든".split()
        ),
    }
)

Thresholds = Literal["calibrated", "fineweb2"]


def figures(lang: str, thresholds: Thresholds = "calibrated") -> LangFigures:
    """A tuned language's figures: FineWeb-2's (`fineweb2`), or those with the thresholds matched on parallel
    text laid over them (`calibrated`, `calibrated.py`, made by `calibrate.py`'s method)."""
    base = LANGS[lang]
    if thresholds == "fineweb2" or lang not in CALIBRATED:
        return base
    fields: dict[str, object] = {}
    for name, value in CALIBRATED[lang].items():
        attr, _, n = name.partition(":")
        if n:  # an n-gram share: replace the pair of that n
            pairs = fields.get(attr, getattr(base, attr))
            fields[attr] = tuple((k, value if k == int(n) else v) for k, v in pairs)  # type: ignore[union-attr]
        else:
            fields[attr] = value
    return replace(base, source=f"{base.source}, thresholds calibrated (arcflow)", **fields)  # type: ignore[arg-type]
