"""Clusters from candidate pairs and the keep/duplicate decision per document.

Connected components of the candidate-pair graph are found in O(n + m) with
``scipy.sparse.csgraph.connected_components`` (a linear graph traversal over a sparse adjacency matrix), so a long
chain costs no more than many small clusters. Every component is then labelled by its smallest document key,
which is the document we keep: the result depends only on the set of pairs, never on the order they were read
(datatrove keeps the root of a union-by-size forest instead, which depends on that order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clusters:
    """Documents that belong to a cluster of near-duplicates (singletons are not listed).

    ``doc``: sorted int64 doc keys; ``root``: the kept doc key of each one's cluster; ``cluster``: a dense
    cluster number (numbered in the order of their kept documents, so it does not depend on sharding).
    """

    doc: np.ndarray
    root: np.ndarray
    cluster: np.ndarray

    @property
    def n_clusters(self) -> int:
        return int(self.cluster.max()) + 1 if self.cluster.size else 0

    @property
    def duplicates(self) -> np.ndarray:
        """Doc keys to drop: every clustered document except its cluster's root."""
        return self.doc[self.doc != self.root]


def connected_components(pairs: np.ndarray) -> Clusters:
    """Connected components of (n, 2) doc-key ``pairs``; each component is labelled by its smallest doc key."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as components

    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    nodes, inverse = np.unique(pairs, return_inverse=True)
    if nodes.size == 0:
        empty = np.empty(0, np.int64)
        return Clusters(doc=empty, root=empty.copy(), cluster=empty.copy())
    u, v = inverse.reshape(-1, 2).T
    graph = coo_matrix((np.ones(u.size, np.int8), (u, v)), shape=(nodes.size, nodes.size)).tocsr()
    _, comp = components(graph, directed=False)
    # nodes are sorted, so the first index reached per component is its smallest key
    first = np.full(comp.max() + 1, nodes.size, dtype=np.int64)
    np.minimum.at(first, comp, np.arange(nodes.size))
    root = nodes[first[comp]]
    _, cluster = np.unique(root, return_inverse=True)
    return Clusters(doc=nodes, root=root, cluster=cluster.astype(np.int64).reshape(-1))
