"""`dedup_minhash`: MinHash near-duplicate dedup over all input shards (datatrove's four stages on the
cluster).

Phases: (1) one task per input shard computes MinHash signatures and writes their LSH band keys to
``_work/bands/`` (one row group per band); (2) one task per band finds the candidate pairs of its buckets,
so bucketing runs in parallel over bands, and turns them into star edges (document -> its component's smallest
key) at once; (3) connected components as a merge tree: tasks merge groups of star files level by level, the
last one numbering the clusters, so no task holds every band's pairs and the driver holds none; (4) on
workers, the kept documents' ids are looked up and one assignment table written; ``ctx.run_shards`` writes one output shard per input shard: kept rows unchanged, dropped rows with reason
``minhash_duplicate``, ``cluster_id`` and ``duplicate_of`` (the kept id); kept rows get ``dup_cluster_size``
(FineWeb-2's ``minhash_cluster_size``, summed over earlier dedup nodes' sizes: see ``tasks._dedup``). In each
cluster the document with the smallest (input shard, row) is kept, so the result does not depend on the number of
workers.

Params are ``data_pipes.dedup.params.MinHashParams`` (datatrove's defaults: word 5-grams, 14 bands x 8
hashes, threshold ~0.72). Departures from datatrove are documented in ``data_pipes.dedup`` (32-bit
signatures, one 64-bit hash per band, deterministic keeper). Reports: clusters, a cluster-size histogram,
documents removed.
"""

from __future__ import annotations

import functools
from typing import ClassVar

from data_pipes.dedup.params import MinHashParams
from data_pipes.dedup.phases import bucket_phase, number_clusters, roots_phase, signature_phase, star_phase
from data_pipes.io.shards import ShardResult
from tasks._dedup import DedupKind, DedupParams, incoming_sizes
from tasks._timing import timed
from tasks.base import RunContext
from tasks.registry import register


class DedupMinHashParams(DedupParams, MinHashParams):
    """``MinHashParams`` (n_grams, num_bands, rows_per_band, seed, norm, batch_bytes) + the dedup params."""

    def minhash(self) -> MinHashParams:
        return MinHashParams(**self.model_dump(include=set(MinHashParams.model_fields)))


def _signature_task(params: DedupMinHashParams, work: str, item: tuple[str, int]) -> tuple[str, str | None]:
    in_path, shard = item
    out = f"{work}/bands/part-{shard:05d}.parquet"
    bands = signature_phase(in_path, shard, out, params.minhash(), column=params.text_column)
    return bands, incoming_sizes(in_path, shard, work)


def _bucket_task(band_paths: list[str], work: str, band: int) -> tuple[str, int]:
    """One band's candidate pairs, then their star edges (the merge tree's first level) in the same task: the
    stars of a band need only its own pairs, so no round of tasks waits between the two."""
    pairs = f"{work}/pairs/band-{band:04d}.parquet"
    count = bucket_phase(band_paths, band, pairs)
    star = f"{work}/stars/L0-{band:04d}.parquet"
    star_phase([pairs], star)
    return star, count


FAN_IN = 4  # star files merged per task at each level of the merge tree


def _star_task(item: tuple[list[str], str]) -> str:
    star_phase(*item)
    return item[1]


def _final_task(item: tuple[list[str], str, str, str]) -> tuple[str, str]:
    """The last merge, the clusters' numbers and their distinct roots in one task (one after the other on one
    file)."""
    paths, star, out, roots = item
    star_phase(paths, star)
    return number_clusters(star, out), roots_phase(out, roots)


def merge_tree(ctx: RunContext, star_paths: list[str], work: str) -> tuple[str, str]:
    """Connected components over every band's pairs without one task holding them all: each band's pairs have
    become star edges (in its bucket task), then groups of ``FAN_IN`` star files merge, level by level, until one
    task merges the last ``FAN_IN`` or fewer, numbers the clusters and lists their roots. Returns the paths of
    the clustered duplicates (doc, root, cluster) and of their roots."""
    level, depth = list(star_paths), 0
    with timed(ctx, "merge_s"):
        while len(level) > FAN_IN:
            depth += 1
            groups = [level[i : i + FAN_IN] for i in range(0, len(level), FAN_IN)]
            items = [(g, f"{work}/stars/L{depth}-{i:04d}.parquet") for i, g in enumerate(groups)]
            level = ctx.map(_star_task, items, phase="clusters", unit="tasks")
        [out] = ctx.map(
            _final_task,
            [(level, f"{work}/stars/final.parquet", f"{work}/clusters.parquet", f"{work}/roots.parquet")],
            phase="clusters",
            unit="tasks",
        )
    return out


@register
class DedupMinHash(DedupKind):
    name: ClassVar[str] = "dedup_minhash"
    Params = DedupMinHashParams
    reason: ClassVar[str] = "minhash_duplicate"
    cluster_word: ClassVar[str] = "clusters of near-duplicates"
    description = (
        "global MinHash near-duplicate dedup (5-grams, 14 bands x 8); keeps the first of each cluster"
    )

    phases: ClassVar[tuple[str, ...]] = ("signatures", "buckets", "clusters", "assign", "write")

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: DedupMinHashParams = ctx.params  # type: ignore[assignment]
        tasks = self.plan_shards(ctx)
        work = self.work(ctx)

        def find():  # noqa: ANN202
            items = [(t.payload["path"], t.index) for t in tasks]
            with timed(ctx, "signatures_s"):
                signed = ctx.map(functools.partial(_signature_task, params, work), items, phase="signatures")
            band_paths = [b for b, _ in signed]
            with timed(ctx, "buckets_s"):
                bands = ctx.map(
                    functools.partial(_bucket_task, band_paths, work),
                    list(range(params.num_bands)),
                    phase="buckets",
                    unit="bands",
                )
            clustered, roots = merge_tree(ctx, [p for p, _ in bands], work)
            mh = params.minhash()
            figures = {
                "candidate pairs (summed over bands)": sum(n for _, n in bands),
                "shingles": f"word {mh.n_grams}-grams",
                "bands x rows": f"{mh.num_bands} x {mh.rows_per_band} (threshold {mh.threshold:.2f})",
            }
            return [clustered], [roots], figures, [w for _, w in signed]

        return self.finish(ctx, tasks, find)
