"""Phase files cut into parts, and key-range reads of sorted files: the same rows as a filtered ``pq.read_table``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_pipes.dedup.parts import read_file, read_key_range, read_part, write_parts


def test_each_part_reads_its_rows_and_an_empty_part_none(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    part = np.sort(rng.choice([0, 1, 3, 6], size=200)).astype(np.uint16)  # parts 2, 4, 5 and 7 empty
    table = pa.table(
        {"part": part, "h0": rng.integers(0, 2**63, 200).astype(np.uint64), "doc": np.arange(200)}
    )
    path = str(tmp_path / "hashes.parquet")
    write_parts(table, "part", 8, path)
    assert pq.ParquetFile(path).num_row_groups == 4
    for p in range(8):
        got = read_part(path, p, ["h0", "doc"])
        want = pq.read_table(path, filters=[("part", "=", p)], columns=["h0", "doc"])
        assert got.num_rows == int((part == p).sum())
        assert got.equals(want.cast(got.schema)), p
    assert read_file(path).num_rows == 200


def test_no_rows_give_a_file_every_part_reads_empty(tmp_path: Path) -> None:
    schema = pa.schema([("band", pa.uint16()), ("doc", pa.int64())])
    path = str(tmp_path / "bands.parquet")
    write_parts(schema.empty_table(), "band", 14, path)
    got = read_part(path, 5, ["doc"])
    assert got.num_rows == 0 and got.schema.field("doc").type == pa.int64()


def test_key_range_matches_a_filter_across_row_groups(tmp_path: Path) -> None:
    keys = np.sort(np.random.default_rng(0).choice(10_000, size=3_000, replace=False)).astype(np.int64)
    path = str(tmp_path / "sorted.parquet")
    pq.write_table(pa.table({"doc": keys, "v": keys * 2}), path, row_group_size=128)
    for lo, hi in [(0, 1), (0, 10_000), (500, 501), (keys[127], keys[128]), (keys[127], keys[129] + 1), (9_990, 20_000),
                   (-5, 0), (20_000, 30_000), (4_000, 4_000)]:  # fmt: skip
        got = read_key_range(path, "doc", int(lo), int(hi))
        want = keys[(keys >= lo) & (keys < hi)]
        assert got["doc"].to_pylist() == want.tolist(), (lo, hi)
        assert got["v"].to_pylist() == (want * 2).tolist()
