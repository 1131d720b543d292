"""Connected components of candidate pairs: against a plain union-find, on long chains and empty input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipes.dedup.clusters import connected_components
from data_pipes.dedup.phases import number_clusters, star_phase


def _union_find_roots(pairs: np.ndarray) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(a: int) -> int:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)  # smallest key wins, so roots are component minima
    return {k: find(k) for k in parent}


def test_matches_union_find_on_random_graphs() -> None:
    rng = np.random.default_rng(7)
    for n_nodes, n_pairs in ((50, 30), (2_000, 1_500), (5_000, 6_000)):
        keys = rng.choice(10**12, n_nodes, replace=False).astype(np.int64)
        pairs = keys[rng.integers(0, n_nodes, (n_pairs, 2))]
        clusters = connected_components(pairs)
        expected = _union_find_roots(pairs)
        assert clusters.doc.tolist() == sorted(expected)
        assert clusters.root.tolist() == [expected[k] for k in clusters.doc.tolist()]
        assert clusters.n_clusters == len(set(expected.values()))
        # cluster numbers follow the order of the kept documents
        first_root_per_cluster = [clusters.root[clusters.cluster == c][0] for c in range(clusters.n_clusters)]
        assert first_root_per_cluster == sorted(first_root_per_cluster)


def test_long_chain_with_shuffled_keys_is_one_cluster() -> None:
    rng = np.random.default_rng(3)
    keys = rng.permutation(100_000).astype(np.int64) * 13 + 5
    pairs = np.stack([keys[:-1], keys[1:]], axis=1)[rng.permutation(keys.size - 1)]
    clusters = connected_components(pairs)
    assert clusters.n_clusters == 1
    assert (clusters.root == keys.min()).all()
    assert clusters.duplicates.size == keys.size - 1


def test_pair_order_and_direction_do_not_matter() -> None:
    pairs = np.array([[5, 9], [1, 5], [20, 30], [9, 2], [30, 20]], dtype=np.int64)
    a = connected_components(pairs)
    b = connected_components(pairs[::-1, ::-1])
    assert a.root.tolist() == b.root.tolist() == [1, 1, 1, 1, 20, 20]


def test_no_pairs() -> None:
    clusters = connected_components(np.empty((0, 2), np.int64))
    assert clusters.doc.size == clusters.root.size == clusters.duplicates.size == 0
    assert clusters.n_clusters == 0


def test_merge_tree_of_band_stars_equals_components_of_all_pairs(tmp_path: Path) -> None:
    """Per-band components written as star edges, merged four files at a time, give the same clusters as one
    pass over every band's pairs (what the dedup_minhash kind's merge tree relies on)."""
    rng = np.random.default_rng(11)
    keys = rng.choice(10**12, 3_000, replace=False).astype(np.int64)
    bands = [keys[rng.integers(0, keys.size, (400, 2))] for _ in range(14)]
    level = []
    for i, pairs in enumerate(bands):
        path = tmp_path / f"band-{i}.parquet"
        pq.write_table(pa.table({"a": pairs[:, 0], "b": pairs[:, 1]}), path)
        out = str(tmp_path / f"L0-{i}.parquet")
        star_phase([str(path)], out)
        level.append(out)
    depth = 0
    while len(level) > 1:
        depth += 1
        groups = [level[i : i + 4] for i in range(0, len(level), 4)]
        level = [str(tmp_path / f"L{depth}-{i}.parquet") for i in range(len(groups))]
        for group, out in zip(groups, level, strict=True):
            star_phase(group, out)
    final = pq.read_table(number_clusters(level[0], str(tmp_path / "clusters.parquet")))
    whole = connected_components(np.concatenate(bands))
    dropped = whole.doc != whole.root
    assert final["doc"].to_numpy().tolist() == whole.doc[dropped].tolist()
    assert final["root"].to_numpy().tolist() == whole.root[dropped].tolist()
    assert final["cluster"].to_numpy().tolist() == whole.cluster[dropped].tolist()
