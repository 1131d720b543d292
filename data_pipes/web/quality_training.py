"""Training data for quality classifiers: labelled samples from document shards, capped and split by seeded
hashes.

Phase 1 (one task per input shard) turns each document into a fastText line with its label and language, and
writes them to a sample file beside the node's output; it returns each (label[, lang]) group's smallest sample
hashes, at most ``max_per_label`` of them. The driver merges those into one global cap per group (the
``max_per_label``-th smallest hash), so the kept sample is the same however the inputs are sharded. Phase 2
reads the sample files, applies the caps, holds out a seeded ``heldout_fraction`` for metrics and trains.

Evaluation inputs (``eval_inputs``): their documents never enter training; every one is scored by the model
``quality_score`` would use for it (its language's model, else the fallback) and ``evaluate`` gives accuracy,
precision, recall, F1 and ROC AUC per language and over all. This is the figure to trust for data from elsewhere;
the default held-out split is drawn from the same inputs as training (in-distribution), so it overstates it.

Per-language models (``per_language``): the ``lang`` column (from the ``langid`` kind) groups documents. A
language gets its own model when every label has at least ``min_docs_per_language`` training documents in it
(and, if ``languages`` is given, it is listed); the fallback model is trained on all languages together and
scores the rest. Labels are the same for every language: positives and negatives come from the same labelled
inputs, split by language.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from data_pipes.io.shards import write_parquet_atomic
from data_pipes.web import quality_fasttext as ft

FALLBACK = ""
_U53 = float(1 << 53)


@dataclass(frozen=True)
class SampleSpec:
    """What phase 1 needs to turn one shard into labelled lines."""

    path: str
    out_path: str
    label: str | None  # the input's label; None: read ``label_column``
    label_column: str | None
    preprocess: ft.Preprocess
    per_language: bool
    max_per_label: int | None
    seed: int


def _unit(ids: pl.Series, seed: int) -> pl.Series:
    return (ids.hash(seed=seed) % (1 << 53)).cast(pl.Float64) / _U53


def collect_shard(spec: SampleSpec) -> dict[str, list[float]]:
    """Write the shard's labelled lines to ``spec.out_path``; return ``{group: smallest sample hashes}``."""
    columns = ["id", "text"]
    if spec.label is None:
        columns.append(spec.label_column or "label")
    frame = pl.read_parquet(spec.path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{spec.path}: missing column(s) {missing}; columns are {frame.columns}")
    label = (
        pl.lit(spec.label) if spec.label is not None else pl.col(spec.label_column or "label").cast(pl.String)
    )
    lang = pl.col("lang").fill_null("") if "lang" in frame.columns and spec.per_language else pl.lit(FALLBACK)
    out = frame.select(
        pl.col("id"),
        label.alias("label"),
        lang.alias("lang"),
        pl.Series("line", [spec.preprocess.line(t) for t in frame["text"].to_list()], dtype=pl.String),
    ).filter(pl.col("label").is_not_null() & (pl.col("label") != "") & (pl.col("line") != ""))
    out = out.with_columns(
        _unit(out["id"], spec.seed).alias("h_sample"), _unit(out["id"], spec.seed + 1).alias("h_split")
    )
    write_parquet_atomic(out.to_arrow(), spec.out_path)
    groups: dict[str, list[float]] = {}
    for (lab, lng), part in out.group_by(["label", "lang"], maintain_order=True):
        key = group_key(str(lab), str(lng))
        hashes = np.sort(part["h_sample"].to_numpy())
        if spec.max_per_label is not None:
            hashes = hashes[: spec.max_per_label]
        groups[key] = hashes.tolist()
    return groups


def group_key(label: str, lang: str) -> str:
    return json.dumps([label, lang])


def global_caps(per_shard: Sequence[dict[str, list[float]]], max_per_label: int | None) -> dict[str, float]:
    """``{group: largest sample hash kept}``; every document of a group is kept when there is no cap."""
    merged: dict[str, list[float]] = {}
    for groups in per_shard:
        for key, hashes in groups.items():
            merged.setdefault(key, []).extend(hashes)
    caps = {}
    for key, hashes in sorted(merged.items()):
        hashes.sort()
        caps[key] = hashes[min(len(hashes), max_per_label) - 1] if max_per_label else 1.0
    return caps


@dataclass
class ModelData:
    """Train and held-out lines of one model, in seeded-hash order."""

    lang: str
    train: list[tuple[str, str]] = field(default_factory=list)
    heldout: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for label, _ in self.train:
            out[label] = out.get(label, 0) + 1
        return dict(sorted(out.items()))


def load_samples(paths: Sequence[str], caps: dict[str, float], heldout_fraction: float) -> pl.DataFrame:
    """All sample rows within their group's cap, with a ``heldout`` flag, ordered by sample hash then id."""
    frame = pl.concat([pl.read_parquet(p) for p in paths], how="vertical")
    cap_frame = pl.DataFrame(
        {"key": list(caps), "cap": list(caps.values())}, schema={"key": pl.String, "cap": pl.Float64}
    )
    keys = [
        group_key(lab, lng)
        for lab, lng in zip(frame["label"].to_list(), frame["lang"].to_list(), strict=True)
    ]
    frame = frame.with_columns(pl.Series("key", keys, dtype=pl.String)).join(cap_frame, on="key", how="left")
    frame = frame.filter(pl.col("h_sample") <= pl.col("cap"))
    frame = frame.unique(subset=["id", "label"], keep="first", maintain_order=True)
    return frame.with_columns((pl.col("h_split") < heldout_fraction).alias("heldout")).sort(
        ["h_sample", "id"]
    )


def split_models(
    samples: pl.DataFrame, per_language: bool, languages: Sequence[str], min_docs: int
) -> list[ModelData]:
    """The fallback model's data (all documents) and, per language, a model's data where every label has at
    least ``min_docs`` training documents."""
    labels = sorted(set(samples["label"].to_list()))
    models = [ModelData(FALLBACK)]
    if per_language:
        train = samples.filter(~pl.col("heldout"))
        counts = train.group_by(["lang", "label"]).len()
        for (lang,), part in sorted(counts.group_by(["lang"]), key=lambda kv: str(kv[0][0])):
            if not lang or (languages and lang not in languages):
                continue
            have = dict(zip(part["label"].to_list(), part["len"].to_list(), strict=True))
            if all(have.get(lab, 0) >= min_docs for lab in labels):
                models.append(ModelData(str(lang)))
    by_lang = {m.lang: m for m in models}
    for row in samples.select("label", "lang", "line", "heldout").iter_rows():
        label, lang, line, heldout = row
        targets = [by_lang[FALLBACK]] + ([by_lang[lang]] if lang and lang in by_lang else [])
        for m in targets:
            (m.heldout if heldout else m.train).append((label, line))
    return models


def model_file(lang: str) -> str:
    """The model's file name inside the node's output folder."""
    return "model.bin" if lang == FALLBACK else f"model-{lang}.bin"


def sample_path(out_dir: str, index: int) -> str:
    return os.path.join(out_dir, "_samples", f"part-{index:05d}.parquet")


def eval_path(out_dir: str, index: int) -> str:
    return os.path.join(out_dir, "_samples", f"eval-{index:05d}.parquet")


def load_eval(paths: Sequence[str]) -> pl.DataFrame:
    """Every evaluation row (no cap, no split), one per (id, label), in seeded-hash order."""
    frame = pl.concat([pl.read_parquet(p) for p in paths], how="vertical")
    return frame.unique(subset=["id", "label"], keep="first", maintain_order=True).sort(["h_sample", "id"])


def roc_auc(truth: Sequence[str], probs: Sequence[float], positive: str) -> float | None:
    """ROC AUC of P(positive) (Mann-Whitney, ties count one half); None when one class is absent."""
    scores = np.asarray(probs, dtype=np.float64)
    is_pos = np.asarray([t == positive for t in truth], dtype=bool)
    n_pos, n_neg = int(is_pos.sum()), int((~is_pos).sum())
    if not n_pos or not n_neg:
        return None
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    start = 0
    while start < len(scores):  # average ranks over tie blocks
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    u = ranks[is_pos].sum() - n_pos * (n_pos + 1) / 2
    return round(float(u / (n_pos * n_neg)), 4)


def evaluate(
    frame: pl.DataFrame,
    score: Callable[[str, list[str]], list[float]],
    has_model: Callable[[str], bool],
    positive: str,
    metrics: Callable[[Sequence[str], Sequence[float], str], dict],
) -> list[dict]:
    """Rows of metrics per language (the language's model, else the fallback's) and one ``all`` row.

    ``score(model_lang, lines)`` gives P(positive) with the model of ``model_lang`` (``""``: fallback)."""
    truth_all: list[str] = []
    probs_all: list[float] = []
    rows = []
    for (lang,), part in sorted(frame.group_by(["lang"]), key=lambda kv: str(kv[0][0])):
        lang = str(lang or "")
        model = lang if lang and has_model(lang) else FALLBACK
        truth = part["label"].to_list()
        probs = score(model, part["line"].to_list())
        truth_all += truth
        probs_all += probs
        rows.append(_eval_row(lang or "(none)", model, truth, probs, positive, metrics))
    if len(rows) != 1 or rows[0]["lang"] != "(none)":
        rows.append(_eval_row("all", "(per language)", truth_all, probs_all, positive, metrics))
    return rows


def _eval_row(
    lang: str,
    model: str,
    truth: list[str],
    probs: list[float],
    positive: str,
    metrics: Callable[[Sequence[str], Sequence[float], str], dict],
) -> dict:
    scores = metrics(truth, probs, positive)
    return {
        "lang": lang,
        "model": model or "fallback",
        "docs": scores.pop("heldout_docs"),
        "positives": sum(t == positive for t in truth),
        **scores,
        "auc": roc_auc(truth, probs, positive),
    }
