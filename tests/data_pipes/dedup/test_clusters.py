"""Connected components of candidate pairs: against a plain union-find, on long chains and empty input."""

from __future__ import annotations

import numpy as np

from data_pipes.dedup.clusters import connected_components


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
