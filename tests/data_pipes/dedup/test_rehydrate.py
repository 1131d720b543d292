"""Cluster sizes kept by dedup (summed over earlier dedup nodes) and FineWeb-2's rehydration weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from data_pipes.dedup.bands import doc_keys
from data_pipes.dedup.phases import cluster_sizes, weights_phase
from data_pipes.dedup.rehydrate import FINEWEB2_WEIGHTS, RehydrateParams, weights_for


def test_fineweb2_weights_as_published() -> None:
    """FineWeb-2's README: no duplicates 1; N = 2 or 3: N; N = 4: 3; 5 <= N < 100: 5; 100 <= N < 1000: 8;
    N >= 1000: 1."""
    sizes = np.arange(1, 2001)
    expected = np.select(
        [sizes == 1, sizes <= 3, sizes == 4, sizes < 100, sizes < 1000], [1, sizes, 3, 5, 8], default=1
    )
    assert np.array_equal(weights_for(sizes, FINEWEB2_WEIGHTS), expected.astype(float))
    params = RehydrateParams()
    assert params.weight_map() == FINEWEB2_WEIGHTS
    assert [label for label, _, _ in params.ranges()] == ["1", "2", "3-4", "5-99", "100-999", ">=1000"]


def test_custom_weight_maps_are_checked() -> None:
    params = RehydrateParams(weights={1: 1, 10: 0.5, 2: 2})
    assert params.weight_map() == {1: 1, 2: 2, 10: 0.5}
    assert weights_for(np.array([1, 2, 9, 10, 50]), params.weight_map()).tolist() == [1, 2, 2, 0.5, 0.5]
    with pytest.raises(ValidationError, match="must start at cluster size 1"):
        RehydrateParams(weights={2: 2})
    with pytest.raises(ValidationError, match="weights are >= 0"):
        RehydrateParams(weights={1: 1, 5: -1})
    with pytest.raises(ValidationError, match="extra"):
        RehydrateParams(weight={1: 1})  # type: ignore[call-arg]


def test_cluster_sizes_sum_the_members_incoming_sizes(tmp_path: Path) -> None:
    """Roots 0 and 10 of shard 0; doc 3 arrives with size 5 (an earlier dedup kept it for 5 copies), doc 20 with
    size 3 but is in no cluster here (it keeps 3)."""
    w = tmp_path / "w.parquet"
    pq.write_table(pa.table({"doc": doc_keys(0, np.array([3, 20])), "size": np.array([5, 3])}), w)
    doc = doc_keys(0, np.array([3, 4, 11]))
    root = doc_keys(0, np.array([0, 0, 10]))
    roots, sizes, histogram = cluster_sizes(doc, root, [str(w)])
    assert roots.tolist() == doc_keys(0, np.array([0, 10])).tolist()
    assert sizes.tolist() == [1 + 5 + 1, 1 + 1]
    assert histogram == {"2": 1, "3": 1, "7": 1}
    none = cluster_sizes(doc, root)  # no earlier dedup: every member counts once
    assert none[1].tolist() == [3, 2] and none[2] == {"2": 1, "3": 1}


def test_weights_phase_reads_only_sizes_above_one(tmp_path: Path) -> None:
    shard = tmp_path / "in.parquet"
    pq.write_table(
        pa.table({"text": ["a", "b", "c"], "dup_cluster_size": pa.array([1, None, 4], pa.int64())}), shard
    )
    out = weights_phase(str(shard), 2, str(tmp_path / "w.parquet"))
    table = pq.read_table(out)
    assert table["doc"].to_pylist() == doc_keys(2, np.array([2])).tolist() and table["size"].to_pylist() == [
        4
    ]
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": ["a"]}), plain)
    assert weights_phase(str(plain), 0, str(tmp_path / "none.parquet")) is None
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": ["a"], "dup_cluster_size": [0]}), bad)
    with pytest.raises(ValueError, match="row 0 has dup_cluster_size = 0"):
        weights_phase(str(bad), 0, str(tmp_path / "bad-w.parquet"))
