"""`math_density`: a heuristic math/science score, the default "teacher" that a fastText student is distilled
from.

It counts, per 100 words, the signals of mathematical writing: LaTeX commands and inline math (``\\frac``,
``$x^2$``), equations and operators between operands (``a = b + c``), numbers, Greek letters and math symbols,
and a vocabulary of math/science terms (theorem, variance, integral, ...). The weighted density is squashed
into [0, 1) with ``1 - exp(-density / scale)``. It is deliberately simple and transparent: a stronger teacher
(an LLM grader, a bigger classifier) plugs in through ``data_pipes.web.scorers`` the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

_LATEX = re.compile(
    r"\\(?:frac|sum|int|sqrt|alpha|beta|gamma|delta|theta|lambda|sigma|mu|pi|infty|cdot|leq|geq|"
    r"partial|mathbb|mathrm|begin\{(?:equation|align)|left|right|times|prod|lim)\b"
)
_INLINE_MATH = re.compile(r"\$[^$\n]{1,200}\$")
_EQUATION = re.compile(r"[\w)\]]\s*(?:[=<>≤≥≈≠]|\*\*|[+\-*/^])\s*[\w(\[]")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:[.,/]\d+)?(?:[eE][-+]?\d+)?(?![\w])")
_SYMBOL = re.compile(r"[∑∫√∞≤≥≈≠±×÷∂∇πσμλθαβγδΣΠΔ]")
_TERMS = frozenset(
    """theorem lemma proof corollary equation equations formula integral derivative matrix vector
    variance deviation mean median mode probability distribution polynomial exponent logarithm fraction
    fractions decimal rational irrational prime integer integers denominator numerator quotient remainder
    sum product coefficient
    algebra geometry calculus statistics statistical sample population regression correlation hypothesis
    arithmetic modulo modulus square root sqrt sine cosine tangent radians angle hypotenuse physics energy
    velocity acceleration mass force quantum molecule""".split()
)
_WORD = re.compile(r"[A-Za-z]+")
WEIGHTS = {"latex": 3.0, "inline_math": 3.0, "equation": 1.5, "number": 0.5, "symbol": 2.0, "term": 1.0}


def signals(text: str) -> dict[str, int]:
    """Counts of each math signal in ``text``, and its word count."""
    words = _WORD.findall(text)
    return {
        "latex": len(_LATEX.findall(text)),
        "inline_math": len(_INLINE_MATH.findall(text)),
        "equation": len(_EQUATION.findall(text)),
        "number": len(_NUMBER.findall(text)),
        "symbol": len(_SYMBOL.findall(text)),
        "term": sum(1 for w in words if w.lower() in _TERMS),
        "words": len(words),
    }


def math_density(text: str | None, scale: float = 8.0) -> float:
    """A score in [0, 1): the weighted math signals per 100 words, squashed."""
    if not text:
        return 0.0
    counts = signals(text)
    weighted = sum(WEIGHTS[k] * counts[k] for k in WEIGHTS)
    density = 100.0 * weighted / max(counts["words"], 20)  # short texts cannot score high on a few digits
    return 1.0 - math.exp(-density / scale)


def score_texts(texts: Sequence[str | None], scale: float = 8.0, max_chars: int = 20_000) -> list[float]:
    """``math_density`` of each text's first ``max_chars`` characters."""
    return [math_density((t or "")[:max_chars], scale) for t in texts]
