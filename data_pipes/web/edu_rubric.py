"""A rule-based educational-value rubric for documents in any language (the ``edu_rubric`` scorer).

FineWeb-Edu asks an LLM to add up to five points, one per criterion of an educational-value rubric. No LLM runs
here, so this rubric is rule-based: five criteria measured from the text's form, each worth up to one point
(a linear ramp between a floor and a ceiling, so scores rarely tie), summed to a score in [0, 5]. The criteria
use no word lists, so they apply to every language and script; words are whitespace tokens, and a text in a
script without spaces (CJK, Thai) counts one word per two characters.

1. **Substance:** the text has enough words to teach something (``min_words`` .. ``full_words``).
2. **Sentences:** it is written in sentences: sentence-final punctuation (Latin, CJK, Devanagari, Arabic and
   others) per word, neither absent (a list of links) nor every other word.
3. **Well-formed sentences:** after a sentence end, the next sentence starts as a sentence does (an upper-case
   letter, a digit, or a letter of a script without case). Shuffled words ("word salad") fail this.
4. **No boilerplate:** few navigation separators (``|``, ``»``, ``·``, ``©`` ...) and few very short lines (under 20 characters).
5. **Vocabulary:** distinct words per word (over the first 400 words): menus and spam repeat a few words.

It is a teacher for ``distill_labels``: rank documents, label the top and bottom shares, and train a fastText
student (``quality_train``) that scores the crawl. For an LLM-graded rubric, pass your own function as a
dotted-path scorer instead; the rest of the DAG is the same.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

_END = re.compile(r"[。！？]|[.!?।॥؟።…](?=[\s\"'”’»)\]]|$)")  # full-width ends need no space after
_AFTER_END = re.compile(r"(?:[。！？]|[.!?।॥؟።…][\"'”’»)\]]*\s+)(\S)")
_SEPARATORS = frozenset("|»«·•›‹©®>/")
_NO_SPACE_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "THAI", "LAO", "KHMER", "MYANMAR")


def _ramp(value: float, low: float, high: float) -> float:
    if high == low:
        return float(value >= high)
    return min(1.0, max(0.0, (value - low) / (high - low)))


def _no_space_share(text: str) -> float:
    letters = [c for c in text[:2000] if c.isalpha()]
    if not letters:
        return 0.0
    spaced = sum(1 for c in letters if unicodedata.name(c, "").startswith(_NO_SPACE_SCRIPTS))
    return spaced / len(letters)


def _starts_sentence(char: str) -> bool:
    if char.isdigit() or char in "\"'“‘«([¿¡":
        return True
    if not char.isalpha():
        return False
    return char.isupper() or char.lower() == char.upper()  # a letter of a script without case counts


def criteria(text: str, min_words: int = 40, full_words: int = 250) -> list[float]:
    """The five criteria of one text, each in [0, 1]."""
    words = text.split()
    n_words = len(words)
    if _no_space_share(text) > 0.5:
        n_words = max(n_words, len("".join(words)) // 2)
    if n_words == 0:
        return [0.0] * 5
    substance = _ramp(n_words, min_words / 4, full_words)
    ends = len(_END.findall(text))
    per_word = ends / n_words
    sentences = min(_ramp(per_word, 0.005, 0.03), 1 - _ramp(per_word, 0.25, 0.5))
    starts = _AFTER_END.findall(text)
    formed = _ramp(sum(map(_starts_sentence, starts)) / len(starts), 0.5, 0.95) if starts else 0.0
    separators = sum(1 for w in words if len(w) <= 2 and any(c in _SEPARATORS for c in w))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    short_lines = sum(1 for ln in lines if len(ln.strip()) < 20) / len(lines)
    clean = 1 - max(_ramp(separators / n_words, 0.02, 0.15), _ramp(short_lines, 0.3, 0.7))
    head = [w.lower() for w in words[:400]]
    vocabulary = _ramp(len(set(head)) / len(head), 0.25, 0.5) if head else 0.0
    return [substance, sentences, formed, clean, vocabulary]


def score_texts(texts: Sequence[str | None], min_words: int = 40, full_words: int = 250) -> list[float]:
    """The rubric score of each text, in [0, 5] (rounded to 1e-6 so it is the same on every platform)."""
    return [round(sum(criteria(t or "", min_words, full_words)), 6) for t in texts]
