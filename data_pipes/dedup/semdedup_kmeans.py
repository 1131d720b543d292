"""SemDedup step 2: seeded spherical k-means over normalised embeddings, in torch (CPU or GPU).

Deterministic for a given input order and seed: k-means++ seeding on a seeded sample of
``max(INIT_SAMPLE, SAMPLE_PER_CENTRE * k)`` points (all points when there are fewer), each next centre drawn with a
``numpy.random.Generator`` from the squared distances. A point already chosen (or equal to one up to fp32 noise)
has weight exactly 0, so no centre is drawn twice; if every remaining sample point coincides with a chosen centre
(the data hold fewer distinct points than k), seeding stops there and fewer clusters are used, rather than
duplicate centroids that would leave clusters empty; then a fixed number of Lloyd iterations (stopping early only
when no assignment changes). Assignment is by largest cosine (the embeddings are unit vectors); each centroid is
its members' mean, renormalised (spherical k-means, as the paper's faiss run with ``spherical=True``). An emptied
cluster keeps its previous centroid. Assignment runs in row chunks, so memory stays O(chunk x k). The paper trains
faiss k-means on all points; we seed on a sample for speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

INIT_SAMPLE = 20_000
SAMPLE_PER_CENTRE = 4  # the seeding sample holds at least this many points per centre
SAME_POINT = 1e-6  # squared distances below this (cosine above 1 - 5e-7) count as the same point: fp32 noise
ASSIGN_CHUNK = 65_536


def default_clusters(n: int) -> int:
    """The default k: round(sqrt(n)), so a cluster holds about sqrt(n) items and the pairwise step costs
    O(n^1.5). The paper used 50,000 clusters for 437M documents (about 8,700 per cluster); give `n_clusters`
    explicitly at that scale."""
    return max(1, round(math.sqrt(n)))


@dataclass
class KMeansResult:
    centroids: Any  # tensor [k, dim]
    labels: Any  # int64 tensor [n]
    distance: Any  # fp32 tensor [n]: 1 - cosine to the assigned centroid
    iterations: int


def _assign(x: Any, centroids: Any) -> tuple[Any, Any]:
    """Label and best cosine per row, in chunks."""
    import torch

    labels = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    best = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    for start in range(0, x.shape[0], ASSIGN_CHUNK):
        sims = x[start : start + ASSIGN_CHUNK] @ centroids.T  # [chunk, k]
        best[start : start + ASSIGN_CHUNK], labels[start : start + ASSIGN_CHUNK] = sims.max(dim=1)
    return labels, best


def _member_sums(x: Any, labels: Any, k: int) -> Any:
    """Per-cluster sums of rows as one-hot matrix products: deterministic on GPU, unlike atomic index_add."""
    import torch

    sums = torch.zeros((k, x.shape[1]), dtype=x.dtype, device=x.device)
    for start in range(0, x.shape[0], ASSIGN_CHUNK):
        part = labels[start : start + ASSIGN_CHUNK]
        onehot = torch.zeros((part.shape[0], k), dtype=x.dtype, device=x.device)
        onehot[torch.arange(part.shape[0], device=x.device), part] = 1.0
        sums += onehot.T @ x[start : start + ASSIGN_CHUNK]
    return sums


def _kmeans_pp(x: Any, k: int, rng: np.random.Generator) -> Any:
    """k-means++ seeding on a sample of x (squared Euclidean = 2 - 2 cos for unit vectors). Returns at most k
    distinct centres (fewer only when the sample has fewer distinct points)."""
    import torch

    n = x.shape[0]
    size = max(INIT_SAMPLE, SAMPLE_PER_CENTRE * k)
    sample = x if n <= size else x[torch.from_numpy(np.sort(rng.choice(n, size, replace=False))).to(x.device)]
    m = sample.shape[0]

    def dist2(i: int) -> Any:
        d = 2.0 - 2.0 * (sample @ sample[i])
        return torch.where(d < SAME_POINT, torch.zeros_like(d), d)

    chosen = [int(rng.integers(m))]
    d2 = dist2(chosen[0])
    for _ in range(1, k):
        weights = d2.double().cpu().numpy()
        total = weights.sum()
        if total <= 0:  # every sample point coincides with a chosen centre
            break
        nxt = int(rng.choice(m, p=weights / total))
        chosen.append(nxt)
        d2 = torch.minimum(d2, dist2(nxt))
    return sample[torch.tensor(chosen, device=x.device)].clone()


def spherical_kmeans(
    x: Any, k: int, iters: int = 20, seed: int = 0, on_iter: Callable[[int, int], None] | None = None
) -> KMeansResult:
    """Cluster unit vectors ``x`` ([n, dim] fp32 tensor) into ``min(k, n)`` clusters (fewer when x holds fewer
    distinct points; ``centroids`` then has fewer rows). ``on_iter(done, total)``
    is called after the seeding and after each Lloyd iteration (progress), and with ``(total, total)`` at the
    end, also when the assignments settle early."""
    import torch

    n = x.shape[0]
    k = max(1, min(k, n))
    rng = np.random.default_rng(seed)
    report = on_iter or (lambda _done, _total: None)
    centroids = _kmeans_pp(x, k, rng)
    k = centroids.shape[0]
    labels, best = _assign(x, centroids)
    report(0, iters)
    done = 0
    for step in range(1, iters + 1):
        if step > 1:
            report(step - 1, iters)
        done = step
        sums = _member_sums(x, labels, k)
        counts = torch.bincount(labels, minlength=k)
        filled = counts > 0
        centroids = torch.where(filled[:, None], torch.nn.functional.normalize(sums, dim=1), centroids)
        new_labels, best = _assign(x, centroids)
        if torch.equal(new_labels, labels):
            break
        labels = new_labels
    report(iters, iters)
    return KMeansResult(centroids, labels, (1.0 - best).clamp(min=0), done)
