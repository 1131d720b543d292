"""`warc_write` -> `warc`: pages written as WARC files and read back, reproducibly."""

from __future__ import annotations

import hashlib
import pydoc
from pathlib import Path

import polars as pl
import pytest
import yaml

from flows.engine import Engine
from flows.errors import SpecError
from flows.store import Store
from flows.validate import load_pipeline


def _run(tmp_path: Path, store: str) -> dict:
    spec = {
        "name": "w",
        "workdir": str(tmp_path / store),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "pages": {"uses": "files", "params": {"paths": ["pages"]}},
            "crawl": {"uses": "warc_write", "inputs": ["pages"]},
            "read": {"uses": "warc", "inputs": ["crawl"]},
        },
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    p = load_pipeline(str(tmp_path / "pipeline.yaml"))
    engine = Engine(p)
    for n in p.order:
        engine.run_node(n)
    engine.close()
    s = Store(str(tmp_path / store))
    return {n: s.manifest(r["fingerprint"]) for n, r in s.read_refs("w").items()}


def test_pages_round_trip_through_warc(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    for name in ("json", "csv", "heapq"):
        (pages / f"{name}.html").write_text(
            pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().docmodule(__import__(name)))
        )
    m = _run(tmp_path, "a")
    assert m["crawl"]["output_type"] == "warc" and m["read"]["counts"]["kept"] == 3
    out = Path(Store(str(tmp_path / "a")).output_dir(m["read"]["fingerprint"]))
    texts = pl.read_parquet(out / "part-00000.parquet").sort("url")["text"].to_list()
    originals = sorted((p.read_text() for p in pages.glob("*.html")), key=len)
    assert sorted(texts, key=len) == originals
    warcs = sorted(
        (Path(Store(str(tmp_path / "a")).output_dir(m["crawl"]["fingerprint"])) / "warc").glob("*.gz")
    )
    again = _run(tmp_path, "b")
    warcs_b = sorted(
        (Path(Store(str(tmp_path / "b")).output_dir(again["crawl"]["fingerprint"])) / "warc").glob("*.gz")
    )
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in warcs] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in warcs_b
    ]


def test_warc_needs_paths_or_inputs(tmp_path: Path) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        yaml.safe_dump({"name": "w", "nodes": {"read": {"uses": "warc"}}})
    )
    with pytest.raises(SpecError, match="no WARC files"):
        load_pipeline(str(tmp_path / "pipeline.yaml"))
