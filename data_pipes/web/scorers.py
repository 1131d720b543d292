"""Pluggable document scorers: a small registry by name, plus any Python callable named by dotted path.

A scorer maps a batch of texts (and, optionally, their ``lang`` codes) to one float per text. Built in:

* ``fasttext``: P(positive label) from a fastText classifier, one model or one per language with a fallback
  (options: ``models`` {lang: path, "": fallback} or ``model_path``, ``positive_label``, ``text_chars``,
  ``lowercase``);
* ``math_density``: the math/science heuristic of ``data_pipes.web.quality_math`` (options: ``scale``,
  ``max_chars``);
* ``edu_rubric``: a rule-based educational-value rubric, 0..5 points, for any language
  (``data_pipes.web.edu_rubric``; options: ``min_words``, ``full_words``). It is not an LLM grader.

Anything else is a dotted path to a function of the user's own importable module, ``package.module:function``
(or ``package.module.function``), called as ``function(texts, **options)`` and returning one number per text.
That is how a "stronger scorer" (an LLM grader, a bigger model) labels data that a fastText student is then
trained on. The source file of a dotted-path scorer enters the node's fingerprint (``scorer_signature``), so
editing it reruns.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from data_pipes.web import edu_rubric
from data_pipes.web import quality_fasttext as ft
from data_pipes.web.quality_math import score_texts as math_scores


class Scorer(Protocol):
    def __call__(self, texts: Sequence[str | None], langs: Sequence[str] | None = None) -> list[float]: ...


_REGISTRY: dict[str, Callable[..., Scorer]] = {}


def register_scorer(name: str) -> Callable[[Callable[..., Scorer]], Callable[..., Scorer]]:
    """Decorator: make a scorer factory ``factory(**options) -> Scorer`` available by ``name``."""

    def wrap(factory: Callable[..., Scorer]) -> Callable[..., Scorer]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def scorer_names() -> list[str]:
    return sorted(_REGISTRY)


class FastTextScorer:
    """P(positive) from fastText; with per-language models, each text goes to its language's model or the
    fallback (key ``""``)."""

    def __init__(self, models: dict[str, str], positive_label: str, preprocess: ft.Preprocess) -> None:
        if "" not in models:
            raise ValueError(
                f"fasttext scorer needs a fallback model (key ''); got languages {sorted(models)}"
            )
        self.models = {lang: ft.load(path) for lang, path in models.items()}
        self.positive_label = positive_label
        self.preprocess = preprocess
        for lang, model in self.models.items():
            if positive_label not in ft.labels_of(model):
                raise ValueError(
                    f"positive label {positive_label!r} is not a label of the {lang or 'fallback'} model "
                    f"{models[lang]!r}; its labels are {ft.labels_of(model)}: set `positive_label`"
                )

    def __call__(self, texts: Sequence[str | None], langs: Sequence[str] | None = None) -> list[float]:
        lines = [self.preprocess.line(t) for t in texts]
        if langs is None or len(self.models) == 1:
            return ft.probabilities(self.models[""], lines, self.positive_label)
        out = [0.0] * len(lines)
        groups: dict[str, list[int]] = {}
        for i, lang in enumerate(langs):
            groups.setdefault(lang if lang in self.models else "", []).append(i)
        for lang, idx in sorted(groups.items()):
            probs = ft.probabilities(self.models[lang], [lines[i] for i in idx], self.positive_label)
            for i, p in zip(idx, probs, strict=True):
                out[i] = p
        return out


@register_scorer("fasttext")
def _fasttext(
    models: dict[str, str] | None = None,
    model_path: str | None = None,
    positive_label: str = "hq",
    text_chars: int = 10_000,
    lowercase: bool = False,
) -> Scorer:
    if models is None:
        if model_path is None:
            raise ValueError("the fasttext scorer needs `model_path` (or a quality_train input)")
        models = {"": model_path}
    return FastTextScorer(models, positive_label, ft.Preprocess(text_chars, lowercase))


class _MathDensity:
    def __init__(self, scale: float, max_chars: int) -> None:
        self.scale, self.max_chars = scale, max_chars

    def __call__(self, texts: Sequence[str | None], langs: Sequence[str] | None = None) -> list[float]:
        return math_scores(texts, self.scale, self.max_chars)


@register_scorer("math_density")
def _math_density(scale: float = 8.0, max_chars: int = 20_000) -> Scorer:
    return _MathDensity(scale, max_chars)


class _EduRubric:
    def __init__(self, min_words: int, full_words: int) -> None:
        if not 0 < min_words < full_words:
            raise ValueError(f"edu_rubric: need 0 < min_words < full_words; got {min_words}, {full_words}")
        self.min_words, self.full_words = min_words, full_words

    def __call__(self, texts: Sequence[str | None], langs: Sequence[str] | None = None) -> list[float]:
        return edu_rubric.score_texts(texts, self.min_words, self.full_words)


@register_scorer("edu_rubric")
def _edu_rubric(min_words: int = 40, full_words: int = 250) -> Scorer:
    return _EduRubric(min_words, full_words)


class NonFiniteScore(ValueError):
    """A scorer gave NaN or an infinity for some texts: ``scores`` holds every score of the batch, ``bad`` the
    positions of the non-finite ones; a caller may quarantine those rows and keep the rest."""

    def __init__(self, spec: str, scores: list[float], bad: list[int]) -> None:
        self.spec, self.scores, self.bad = spec, scores, bad
        first = scores[bad[0]]
        super().__init__(
            f"scorer {spec!r} returned a non-finite score {first} for {len(bad)} of {len(scores)} texts "
            f"(first at batch position {bad[0]})"
        )

    def row_error(self, i: int) -> str:
        """The quarantine error of batch position ``i``: the error class, then the scorer and its value."""
        return f"quality_score_non_finite: scorer {self.spec!r} returned {self.scores[i]}"


class _CallableScorer:
    """A user function ``fn(texts, **options) -> scores``, with its result checked."""

    def __init__(self, spec: str, fn: Callable[..., Sequence[float]], options: dict[str, Any]) -> None:
        self.spec, self.fn, self.options = spec, fn, options

    def __call__(self, texts: Sequence[str | None], langs: Sequence[str] | None = None) -> list[float]:
        scores = [float(s) for s in self.fn(list(texts), **self.options)]
        if len(scores) != len(texts):
            raise ValueError(f"scorer {self.spec!r} returned {len(scores)} scores for {len(texts)} texts")
        bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
        if bad:
            raise NonFiniteScore(self.spec, scores, bad)
        return scores


def _resolve_dotted(spec: str) -> Callable[..., Sequence[float]]:
    module_name, _, attr = spec.partition(":") if ":" in spec else spec.rpartition(".")
    if not module_name or not attr:
        raise ValueError(
            f"scorer {spec!r} is neither a registered scorer ({', '.join(scorer_names())}) nor a dotted path "
            "`package.module:function`"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"scorer {spec!r}: cannot import module {module_name!r} ({exc}); it must be importable on every "
            "worker (install it, or put its folder on PYTHONPATH)"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"scorer {spec!r}: module {module_name!r} has no callable {attr!r}")
    return fn


def build_scorer(spec: str, options: dict[str, Any] | None = None) -> Scorer:
    """The scorer named ``spec`` (registered name or dotted path), built with ``options``."""
    options = dict(options or {})
    if spec in _REGISTRY:
        factory = _REGISTRY[spec]
        try:
            inspect.signature(factory).bind(**options)
        except TypeError as exc:
            raise ValueError(f"scorer {spec!r}: bad options {sorted(options)}: {exc}") from exc
        return factory(**options)
    return _CallableScorer(spec, _resolve_dotted(spec), options)


def check_scorer(spec: str) -> str | None:
    """A problem with ``spec`` (an unknown name, an unimportable path), or None; for params validation."""
    if spec in _REGISTRY:
        return None
    try:
        _resolve_dotted(spec)
    except ValueError as exc:
        return str(exc)
    return None


def scorer_signature(spec: str) -> str:
    """Fingerprint material for a dotted-path scorer: the sha256 of its module's source file."""
    if spec in _REGISTRY:
        return ""
    try:
        fn = _resolve_dotted(spec)
    except ValueError as exc:
        return f"unresolved: {exc}"
    module = importlib.import_module(fn.__module__)
    path = getattr(module, "__file__", None)
    if not path:
        return f"{spec}|no-file"
    with open(path, "rb") as fh:
        return f"{spec}|{hashlib.sha256(fh.read()).hexdigest()}"
