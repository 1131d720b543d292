"""`dedup_repos`: near-duplicate repositories (forks, vendored copies) removed at repository level.

Input: repository-level documents (``repo_samples`` output; a row without ``meta.repo`` is its own repository,
keyed by its id). A first pass (``ctx.map``, one task per input shard) computes each row's MinHash signature
(data_pipes/dedup: word n-grams, bands x rows LSH); the driver merges the parts of a repository by taking
the element-wise minimum of their signatures, which is exactly the MinHash of the union of their shingle
sets, so a repository cut into parts is compared whole. LSH band pairs and connected components follow
(``band_table``, ``band_pairs``, ``connected_components``). Each cluster keeps one repository: the one
with the most characters, ties by smallest name (repositories are numbered in that order, and a component
keeps its smallest number). Every row of the other repositories is dropped with reason
``repo_near_duplicate`` and a ``duplicate_of`` column naming the kept repository.

Departure from datatrove's MinHash stage: the clustering runs in the driver on the per-repository signatures
(``num_perm`` x 4 bytes each, 448 bytes by default), which fits millions of repositories; the documents
themselves are never gathered.
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import polars as pl
from pydantic import Field

from data_pipes.dedup.bands import band_table
from data_pipes.dedup.buckets import band_pairs, band_rows
from data_pipes.dedup.clusters import connected_components
from data_pipes.dedup.params import MinHashParams
from data_pipes.dedup.signatures import minhash_signatures
from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.registry import register

REASON = "repo_near_duplicate"


class DedupReposParams(KindParams):
    minhash: MinHashParams = Field(default_factory=MinHashParams, description="shingles, bands, rows, seed")


def repo_keys(frame: pl.DataFrame) -> pl.Series:
    """``meta.repo`` of each row, or ``"id:<id>"`` for a row without one."""
    repo = frame.get_column("meta").str.json_path_match("$.repo")
    return pl.select(pl.coalesce(repo, pl.lit("id:") + frame.get_column("id"))).to_series()


class _Signatures:
    """Picklable first pass: (repo keys, signatures, text lengths) of one shard."""

    def __init__(self, params: MinHashParams) -> None:
        self.params = params

    def __call__(self, path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        frame = pl.read_parquet(path, columns=["id", "text", "meta"])
        texts = frame.get_column("text").fill_null("").to_list()
        lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        return repo_keys(frame).to_list(), minhash_signatures(texts, self.params), lengths


def duplicate_repos(
    keys: list[str], signatures: np.ndarray, lengths: np.ndarray, params: MinHashParams
) -> tuple[dict[str, str], int]:
    """``({dropped repo: kept repo}, clusters)`` from per-row repo keys, signatures and lengths."""
    if not keys:
        return {}, 0
    names, inverse = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
    sig = np.full((names.size, signatures.shape[1]), np.iinfo(np.uint32).max, dtype=np.uint32)
    np.minimum.at(sig, inverse, signatures)  # MinHash of the union of a repository's parts
    chars = np.bincount(inverse, weights=lengths, minlength=names.size)
    rank_order = sorted(range(names.size), key=lambda i: (-chars[i], names[i]))  # number 0 = largest repo
    ordered_names = names[rank_order]
    table = band_table(sig[rank_order], 0, params)
    pairs = [band_pairs(*band_rows([table], band)) for band in range(params.num_bands)]
    clusters = connected_components(np.concatenate(pairs) if pairs else np.empty((0, 2), np.int64))
    dups = clusters.doc != clusters.root
    drop = {
        str(ordered_names[d]): str(ordered_names[r])
        for d, r in zip(clusters.doc[dups], clusters.root[dups], strict=True)
    }
    return drop, clusters.n_clusters


@register
class DedupRepos(DocumentMapKind):
    name: ClassVar[str] = "dedup_repos"
    Params = DedupReposParams
    packages = ("polars", "numpy", "pyarrow")
    description = "MinHash near-duplicate removal of whole repositories (one kept per cluster)"
    phases: ClassVar[tuple[str, ...]] = ("signatures", "write")

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: DedupReposParams = ctx.params  # type: ignore[assignment]
        tasks = self.plan_shards(ctx)
        scans = ctx.map(_Signatures(params.minhash), [t.payload["path"] for t in tasks], phase="signatures")
        keys = [k for s in scans for k in s[0]]
        sigs = np.concatenate([s[1] for s in scans]) if scans else np.empty((0, params.minhash.num_perm))
        lengths = np.concatenate([s[2] for s in scans]) if scans else np.empty(0, np.int64)
        drop, n_clusters = duplicate_repos(keys, sigs, lengths, params.minhash)
        tasks = [ShardTask(t.index, {**t.payload, "drop": drop}, t.label) for t in tasks]
        results = ctx.run_shards(tasks)
        kept_by_root: dict[str, list[str]] = {}
        for dup, root in sorted(drop.items()):
            kept_by_root.setdefault(root, []).append(dup)
        ctx.add_report(
            "Near-duplicate repositories",
            markdown=f"{len(set(keys))} repositories, {n_clusters} clusters, {len(drop)} dropped "
            f"(MinHash {params.minhash.num_bands}x{params.minhash.rows_per_band}, "
            f"threshold ~{params.minhash.threshold:.2f}).",
            table=[
                {"kept": k, "dropped": ", ".join(v), "n_dropped": len(v)} for k, v in kept_by_root.items()
            ],
        )
        return results

    def run_shard(self, params: DedupReposParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        drop: dict[str, str] = task.payload["drop"]
        of = repo_keys(frame).replace_strict(drop, default=None, return_dtype=pl.String)
        kept = frame.filter(of.is_null())
        dropped = frame.with_columns(of.alias("duplicate_of"), pl.lit(REASON).alias("reason")).filter(
            pl.col("duplicate_of").is_not_null()
        )
        return write_shard(out_dir, task.index, kept, rows_in=frame.height, dropped=dropped, started=started)
