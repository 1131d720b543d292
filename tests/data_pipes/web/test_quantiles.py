"""Percentile cut-offs from merged per-shard t-digests, against a full sort of the corpus."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from data_pipes.web import quality_buckets as qb
from data_pipes.web import quantiles

PERCENTS = [99, 90, 70, 50, 25, 10, 1]


def _corpora() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    n = 60_000
    return {
        "uniform": rng.random(n),
        "skewed": rng.beta(2, 8, n),
        "bimodal": np.concatenate([rng.normal(0.2, 0.03, n // 2), rng.normal(0.8, 0.1, n // 2)]),
        "heavy_tail": rng.pareto(1.5, n),
        "ties": np.round(rng.beta(5, 2, n), 1),  # eleven distinct scores, like a rubric teacher's
    }


def _shards(scores: np.ndarray, k: int) -> list[np.ndarray]:
    return np.array_split(scores, k)


def _exact(scores: list[np.ndarray], hashes: list[np.ndarray], percents: list[float]) -> list[qb.Cutoff]:
    summaries = [quantiles.summarise(s) for s in scores]
    n = sum(s.n for s in summaries)
    digest = quantiles.merge(summaries)
    out: list[qb.Cutoff] = []
    for p in percents:
        k = quantiles.rank(p, n)
        if k >= n:
            out.append(None)
            continue
        delta, cut = quantiles.DELTA, None
        while cut is None:
            [b] = quantiles.brackets(digest, n, [k], delta)
            parts = [quantiles.bracket_parts(s, h, [b])[0] for s, h in zip(scores, hashes, strict=True)]
            cut = quantiles.resolve(n, b, parts)
            delta *= 4
        out.append(cut)
    return out


@pytest.mark.parametrize("name", list(_corpora()))
@pytest.mark.parametrize("n_shards", [1, 7, 64])
def test_exact_mode_equals_a_full_sort(name: str, n_shards: int) -> None:
    scores = _corpora()[name]
    hashes = qb.id_hashes(pl.Series([f"d{i}" for i in range(scores.size)]), seed=5)
    want = qb.percentile_cutoffs(scores, hashes, PERCENTS + [100, 0])
    got = _exact(_shards(scores, n_shards), _shards(hashes, n_shards), PERCENTS + [100, 0])
    assert got == want


@pytest.mark.parametrize("name", list(_corpora()))
@pytest.mark.parametrize("n_shards", [1, 7, 64])
def test_sketch_rank_error_is_within_the_stated_bound(name: str, n_shards: int) -> None:
    scores = _corpora()[name]
    summaries = [quantiles.summarise(s) for s in _shards(scores, n_shards)]
    digest = quantiles.merge(summaries)
    cutoffs = quantiles.sketch_cutoffs(digest, scores.size, PERCENTS)
    ordered = np.sort(scores)
    for p, cut in zip(PERCENTS, cutoffs, strict=True):
        assert cut is not None
        # the scores next to the cut-off (the digest interpolates between distinct scores)
        a = ordered[max(np.searchsorted(ordered, cut[0], side="right") - 1, 0)]
        b = ordered[min(np.searchsorted(ordered, cut[0], side="left"), ordered.size - 1)]
        low = np.searchsorted(ordered, a, side="left") / scores.size
        high = np.searchsorted(ordered, b, side="right") / scores.size
        # the requested share lies within the bound of the achieved split, documents tied at a or b either way
        assert low - quantiles.SKETCH_RANK_ERROR <= p / 100 <= high + quantiles.SKETCH_RANK_ERROR
        if ties_free(ordered):
            achieved = np.searchsorted(ordered, cut[0], side="left") / scores.size
            assert abs(achieved - p / 100) <= quantiles.SKETCH_RANK_ERROR


def ties_free(ordered: np.ndarray) -> bool:
    return bool((np.diff(ordered) > 0).all())


def test_digests_are_deterministic_and_empty_shards_are_fine() -> None:
    scores = _corpora()["skewed"]
    a = quantiles.merge([quantiles.summarise(s) for s in _shards(scores, 9)])
    b = quantiles.merge([quantiles.summarise(s) for s in _shards(scores, 9)])
    assert a.to_bytes() == b.to_bytes()
    empty = quantiles.summarise(np.zeros(0))
    assert empty.n == 0
    merged = quantiles.merge([empty, quantiles.summarise(scores), empty])
    assert merged.n_values == scores.size


def test_a_missed_bracket_asks_for_a_wider_one() -> None:
    scores = np.arange(1000, dtype=np.float64)
    hashes = np.arange(1000, dtype=np.uint64)
    b = quantiles.Bracket(rank=500, lo=10.0, hi=20.0)  # far from rank 500
    assert quantiles.resolve(1000, b, quantiles.bracket_parts(scores, hashes, [b])) is None
    wide = quantiles.Bracket(rank=500, lo=-np.inf, hi=np.inf)
    assert quantiles.resolve(1000, wide, quantiles.bracket_parts(scores, hashes, [wide])) == (500.0, 500)
