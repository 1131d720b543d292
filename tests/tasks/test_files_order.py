"""`files` reads its paths in the order listed (each glob sorted), so "keep the first" dedup keeps the copy from
the pattern listed first, whatever the folders' names."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml

from flows.engine import Engine
from flows.validate import load_pipeline
from tasks._file_source import file_listing, relative_to_patterns

SHARED = "The same paragraph, published by two mirrors of one site, word for word.\n"


def _tree(root: Path) -> None:
    for folder, names in (("z_preferred", ("b.txt", "a.txt")), ("a_mirror", ("c.txt", "d.txt"))):
        (root / folder).mkdir(parents=True)
        for name in names:
            text = SHARED if name in ("a.txt", "d.txt") else f"only in {folder}/{name}\n"
            (root / folder / name).write_text(text)


def test_listing_follows_patterns_then_sorts_within_each(tmp_path: Path) -> None:
    _tree(tmp_path)
    patterns = [
        str(tmp_path / "z_preferred" / "*.txt"),
        str(tmp_path / "a_mirror"),
        str(tmp_path / "**/*.txt"),
    ]
    got = [str(Path(e.path).relative_to(tmp_path)) for e in file_listing(patterns)]
    # the third pattern adds nothing new: each file once, at its first place
    assert got == ["z_preferred/a.txt", "z_preferred/b.txt", "a_mirror/c.txt", "a_mirror/d.txt"]


def test_dedup_keeps_the_copy_listed_first(tmp_path: Path) -> None:
    _tree(tmp_path)
    spec = {
        "name": "order",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "docs": {"uses": "files", "params": {"paths": ["z_preferred/*.txt", "a_mirror/*.txt"]}},
            "exact": {"uses": "dedup_exact", "inputs": ["docs"]},
        },
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(tmp_path / "pipeline.yaml"))
    engine = Engine(pipeline)
    try:
        manifests = {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()
    out = tmp_path / "store" / "outputs" / manifests["exact"]["fingerprint"]
    kept = pl.read_parquet(out / "part-00000.parquet")
    dropped = pl.read_parquet(out / "excluded" / "part-00000.parquet")
    paths = [json.loads(m)["path"] for m in kept["meta"]]
    # named relative to the patterns' common folder, so same-named files of two folders stay apart
    assert paths == ["z_preferred/a.txt", "z_preferred/b.txt", "a_mirror/c.txt"]
    [copy] = dropped.rows(named=True)
    # the copy kept is z_preferred's (listed first), though "a_mirror" sorts before it
    assert copy["reason"] == "exact_duplicate" and json.loads(copy["meta"])["path"] == "a_mirror/d.txt"
    assert copy["duplicate_of"] == kept.filter(pl.col("text") == SHARED)["id"].item()
    docs_dir = tmp_path / "store" / "outputs" / manifests["docs"]["fingerprint"]
    docs = pl.read_parquet(docs_dir / "part-00000.parquet")
    names = [json.loads(m)["path"] for m in docs["meta"]]
    assert names == ["z_preferred/a.txt", "z_preferred/b.txt", "a_mirror/c.txt", "a_mirror/d.txt"]


def test_same_file_name_in_two_pattern_folders_gets_two_names(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "x.txt").write_text(folder)
    two = [str(tmp_path / "data" / "a" / "*.txt"), str(tmp_path / "data" / "b" / "*.txt")]
    names = [relative_to_patterns(e.path, two) for e in file_listing(two)]
    assert names == ["a/x.txt", "b/x.txt"]
    one = [str(tmp_path / "data" / "a" / "*.txt")]  # one folder: named inside it, as before
    assert [relative_to_patterns(e.path, one) for e in file_listing(one)] == ["x.txt"]
    assert relative_to_patterns(str(tmp_path / "elsewhere.txt"), two) == "elsewhere.txt"
