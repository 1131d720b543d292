"""A score column's summary from mergeable per-shard parts, against the exact figures from all the scores at once.

Real scores: ``math_density`` of standard-library docstrings, written as Parquet shards (and a copy rescaled out of
[0, 1], so the histogram's bins follow the scores' range). Counts, mean, min, max and the share at or above 0.5
must be exact; percentiles within the digest's stated rank error plus one document.
"""

from __future__ import annotations

import importlib
import inspect
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data_pipes.web import quality_plots as plots
from data_pipes.web import quantiles
from data_pipes.web import score_summary as ss
from data_pipes.web.quality_math import score_texts

MODULES = (
    "statistics", "fractions", "decimal", "math", "cmath", "random", "json", "csv", "argparse", "pathlib",
    "textwrap", "collections", "functools", "datetime", "calendar", "heapq", "string", "re",
)  # fmt: skip
FRACTIONS = [0.1, 0.5, 0.9]


def _docstrings() -> list[str]:
    out = []
    for name in MODULES:
        module = importlib.import_module(name)
        out.append(module.__doc__ or "")
        for _, member in inspect.getmembers(module):
            doc = getattr(member, "__doc__", None)
            if isinstance(doc, str) and len(doc) > 40:
                out.append(doc)
    return out


@pytest.fixture(scope="module")
def scores() -> np.ndarray:
    values = np.asarray(score_texts(_docstrings()), dtype=np.float64)
    assert values.size > 400 and (values == 0).any() and (values > 0.5).any()  # ties at 0 and a tail
    return values


def _write_shards(folder: Path, values: np.ndarray, k: int, column: str = "quality_score") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(values, k)):
        path = folder / f"part-{i:05d}.parquet"
        pl.DataFrame({"id": [f"{i}-{j}" for j in range(part.size)], column: part}).write_parquet(path)
        paths.append(str(path))
    return paths


def _summarise(paths: list[str], max_groups: int) -> tuple[dict, list[float], list[int], object]:
    """The three steps as the kind runs them (the shard stats from the shard's own scores)."""
    stats = ss.merge_stats([ss.shard_stats(pl.read_parquet(p)["quality_score"].to_numpy()) for p in paths])
    edges = ss.edges(stats)
    task = ss.GroupSummary("quality_score", edges)
    counts, digest = ss.merge_groups([task(g) for g in ss.groups(paths, max_groups)])
    return stats, edges, counts, digest


def _assert_within_rank_error(values: np.ndarray, digest: object) -> None:
    n = values.size
    ordered = np.sort(values)
    slack = quantiles.SKETCH_RANK_ERROR + 1.0 / n
    for f, v in zip(FRACTIONS, ss.percentiles(digest, n, FRACTIONS), strict=True):
        below = np.searchsorted(ordered, v, side="left") / n  # share scoring under v
        at_most = np.searchsorted(ordered, v, side="right") / n  # share scoring v or less
        assert below - slack <= f <= at_most + slack, (f, v, below, at_most)


@pytest.mark.parametrize(("k", "max_groups"), [(1, 256), (7, 256), (7, 3), (40, 6)])
def test_exact_figures_and_percentiles_within_bound(
    tmp_path: Path, scores: np.ndarray, k: int, max_groups: int
) -> None:
    paths = _write_shards(tmp_path / "shards", scores, k)
    assert len(ss.groups(paths, max_groups)) <= max_groups
    stats, edges, counts, digest = _summarise(paths, max_groups)
    exact_counts, exact_edges = plots.histogram(scores)
    assert edges == exact_edges == np.linspace(0, 1, 51).tolist()
    assert counts == exact_counts and sum(counts) == scores.size
    assert stats["n"] == scores.size and stats["nan"] == 0
    assert stats["min"] == scores.min() and stats["max"] == scores.max()
    assert stats["ge_0_5"] == int((scores >= 0.5).sum())
    assert math.isclose(stats["sum"] / stats["n"], float(scores.mean()), rel_tol=1e-12)
    _assert_within_rank_error(scores, digest)


def test_range_outside_unit_interval(tmp_path: Path, scores: np.ndarray) -> None:
    """Scores beyond [0, 1]: the bins span their range, as the histogram of all the scores would."""
    rescaled = scores * 40.0 - 7.0
    paths = _write_shards(tmp_path / "shards", rescaled, 5)
    stats, edges, counts, digest = _summarise(paths, 2)
    exact_counts, exact_edges = plots.histogram(rescaled)
    assert edges == exact_edges and edges[0] == -7.0 and counts == exact_counts
    _assert_within_rank_error(rescaled, digest)


def test_nan_and_empty_shards(tmp_path: Path, scores: np.ndarray) -> None:
    with_nan = scores.copy()
    with_nan[::50] = np.nan
    stats = ss.merge_stats(
        [ss.shard_stats(part) for part in np.array_split(with_nan, 4)] + [ss.shard_stats([])]
    )
    finite = with_nan[~np.isnan(with_nan)]
    assert stats["nan"] == int(np.isnan(with_nan).sum()) and stats["n"] == finite.size
    assert stats["min"] == finite.min() and stats["max"] == finite.max()
    empty = ss.merge_stats([ss.shard_stats(np.zeros(0))])
    assert empty["n"] == 0 and empty["min"] is None and ss.edges(empty) == np.linspace(0, 1, 51).tolist()
    counts, digest = ss.merge_groups([])
    assert counts == [0] * ss.BINS and ss.percentiles(digest, 0, FRACTIONS) == []


def test_two_level_merge_keeps_the_bound_on_many_shards() -> None:
    """300 shards merged in groups, then the groups: the sketch's stated bound still holds (heavy tail)."""
    values = np.random.default_rng(3).pareto(1.5, 90_000)
    parts = [quantiles.summarise(s) for s in np.array_split(values, 300)]
    grouped = [parts[i : i + 12] for i in range(0, 300, 12)]
    merged = [quantiles.merge(g) for g in grouped]
    top = quantiles.merge(
        [
            quantiles.ShardSummary(sum(p.n for p in g), m.to_bytes(), 0.0, 0.0)
            for g, m in zip(grouped, merged, strict=True)
        ]
    )
    _assert_within_rank_error(values, top)


def test_groups_are_consecutive_and_bounded() -> None:
    paths = [f"p{i}" for i in range(1000)]
    got = ss.groups(paths, 256)
    assert len(got) == 250 and [p for g in got for p in g] == paths and {len(g) for g in got} == {4}
    assert ss.groups(paths[:3], 256) == [["p0"], ["p1"], ["p2"]] and ss.groups([], 256) == []
