"""SemDedup steps 3 and 4: rank inside each cluster, then each item's max cosine to a better-ranked item.

Ranking (``keep``): ``hard`` puts the items farthest from the centroid first (the paper's default, "keep hard
examples"), ``easy`` the closest first, ``random`` orders by a seeded hash of the document id (so the order
does not depend on sharding). Ties break on the global input index, so the order is total and deterministic.

The pairwise step follows the paper's implementation exactly: with the cluster's unit vectors in rank order,
item j's score is ``max_{i<j} cos(x_i, x_j)`` (the column max of the strict upper triangle of the cluster's
similarity matrix), and j is removed at ``eps`` when that score is ``>= 1 - eps``. ``i`` ranges over every
better-ranked item, removed or not, so a chain a~b~c removes b and c even if c is not close to a. This is what
makes one pass give the whole eps sweep: retention(eps) = mean(score < 1 - eps). (A "closest *kept* item" rule
would need a greedy pass per eps.) The paper uses ``>``; we use ``>=`` as our design brief states. The
similarity matrix is never built for the corpus, nor whole for a big cluster: it is computed in [row chunk x
column chunk] tiles of one cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

Keep = Literal["hard", "easy", "random"]
TILE = 4096
NO_MATCH = -np.inf  # score of a cluster's first item (nothing ranked before it)


def random_keys(ids: Sequence[str], seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 per document id (blake2b), independent of position and sharding."""
    import hashlib

    salt = seed.to_bytes(8, "little", signed=True)
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8, salt=salt).digest(), "little")
            for i in ids
        ),
        dtype=np.uint64,
        count=len(ids),
    )


def rank_order(
    labels: np.ndarray, distance: np.ndarray, keep: Keep, keys: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Global indices grouped by cluster, best-to-keep first; and the cluster boundaries ([k+1] offsets)."""
    index = np.arange(len(labels))
    if keep == "hard":
        primary = -distance.astype(np.float64)
    elif keep == "easy":
        primary = distance.astype(np.float64)
    elif keep == "random":
        if keys is None:
            raise ValueError("keep='random' needs the documents' random keys")
        primary = keys
    else:
        raise ValueError(f"keep must be 'hard', 'easy' or 'random', not {keep!r}")
    order = np.lexsort((index, primary, labels))
    counts = np.bincount(labels, minlength=int(labels.max()) + 1 if len(labels) else 0)
    return order, np.concatenate([[0], np.cumsum(counts)])


def earlier_max(emb: Any, tile: int = TILE) -> tuple[Any, Any]:
    """For unit rows ``emb`` [m, dim] in rank order: max cosine to any earlier row, and that row (local
    index); ``-inf`` and -1 for row 0. Tiles of at most ``tile x tile`` similarities."""
    import torch

    m = emb.shape[0]
    best = torch.full((m,), float("-inf"), dtype=torch.float32, device=emb.device)
    arg = torch.full((m,), -1, dtype=torch.int64, device=emb.device)
    for c0 in range(1, m, tile):  # columns: the items scored
        c1 = min(m, c0 + tile)
        cols = emb[c0:c1]
        for r0 in range(0, c1 - 1, tile):  # rows: candidates ranked before some item in the tile
            r1 = min(c1 - 1, r0 + tile)
            sims = emb[r0:r1] @ cols.T  # [rows, cols]
            r = torch.arange(r0, r1, device=emb.device)[:, None]
            c = torch.arange(c0, c1, device=emb.device)[None, :]
            sims.masked_fill_(r >= c, float("-inf"))
            val, idx = sims.max(dim=0)
            better = val > best[c0:c1]
            best[c0:c1] = torch.where(better, val, best[c0:c1])
            arg[c0:c1] = torch.where(better, idx + r0, arg[c0:c1])
    return best, arg


def score_clusters(
    emb: Any, order: np.ndarray, bounds: np.ndarray, clusters: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score the items of ``clusters`` (all when None). ``emb`` is indexable by global index (tensor or
    array). Returns (global index, score, global index of the best earlier item or -1), in rank order per
    cluster."""
    import torch

    chosen = range(len(bounds) - 1) if clusters is None else clusters
    out_idx, out_best, out_dup = [], [], []
    for k in chosen:
        members = order[bounds[k] : bounds[k + 1]]
        if len(members) == 0:
            continue
        if torch.is_tensor(emb):
            rows = emb[torch.from_numpy(members).to(emb.device)]
        else:
            rows = torch.from_numpy(np.ascontiguousarray(emb[members], dtype=np.float32))
        best, arg = earlier_max(rows.float())
        arg = arg.cpu().numpy()
        out_idx.append(members)
        out_best.append(best.cpu().numpy())
        out_dup.append(np.where(arg >= 0, members[np.maximum(arg, 0)], -1))
    if not out_idx:
        empty = np.empty(0, np.int64)
        return empty, np.empty(0, np.float32), empty
    return np.concatenate(out_idx), np.concatenate(out_best), np.concatenate(out_dup)
