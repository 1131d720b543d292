"""Clusters from candidate pairs (union-find) and the keep/duplicate decision per document.

The pair list is small (linear in the number of duplicates), so connected components are computed in one
process with vectorised label propagation plus pointer jumping: every component ends labelled by its smallest
document key, which is the document we keep. datatrove keeps the root of a union-by-size forest instead, which
depends on the order pairs were read.
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
    """Union-find over (n, 2) doc-key ``pairs``; each component is labelled by its smallest doc key."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    nodes, inverse = np.unique(pairs, return_inverse=True)
    u, v = inverse.reshape(-1, 2).T
    label = np.arange(nodes.size)  # nodes are sorted, so the smallest index is the smallest key
    while True:
        low = np.minimum(label[u], label[v])
        new = label.copy()
        np.minimum.at(new, u, low)
        np.minimum.at(new, v, low)
        while True:  # pointer jumping: follow labels to their own labels
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, label):
            break
        label = new
    root = nodes[label]
    _, cluster = np.unique(root, return_inverse=True)
    return Clusters(doc=nodes, root=root, cluster=cluster.astype(np.int64))
