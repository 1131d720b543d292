"""`heuristic_filters` through the engine on real pages: pydoc HTML extracted to text, then the four rule sets."""

from __future__ import annotations

import json
import pydoc
from pathlib import Path

import polars as pl
import yaml

from flows.engine import Engine
from flows.store import Store
from flows.validate import load_pipeline

MODULES = ("json", "csv", "textwrap", "string", "shlex", "fnmatch", "heapq", "bisect", "base64", "glob")


def _pipeline(tmp_path: Path, heuristics: dict) -> Path:
    data = tmp_path / "pages"
    data.mkdir(exist_ok=True)
    for name in MODULES:
        module = __import__(name)
        (data / f"{name}.html").write_text(pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().docmodule(module)))
    prose = (
        "The quick brown fox jumps over the lazy dog and then it runs to the river with the other animals."
    )
    (data / "prose.html").write_text(
        "<html><body>" + "".join(f"<p>{prose} Line {i}.</p>" for i in range(12)) + "</body></html>"
    )
    (data / "lorem.html").write_text(
        "<html><body><p>" + "Lorem ipsum dolor sit amet. " * 40 + "</p></body></html>"
    )
    spec = {
        "name": "h",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "pages": {"uses": "files", "params": {"paths": ["pages"]}},
            "text": {"uses": "extract_html", "inputs": ["pages"], "params": {"min_chars": 1}},
            "clean": {"uses": "heuristic_filters", "inputs": ["text"], "params": heuristics},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run(path: Path) -> dict:
    p = load_pipeline(str(path))
    engine = Engine(p)
    for n in p.order:
        engine.run_node(n)
    engine.close()
    store = Store(str(path.parent / "store"))
    return store.manifest(store.read_refs("h")["clean"]["fingerprint"])


def test_rules_drop_with_their_own_reasons(tmp_path: Path) -> None:
    m = _run(_pipeline(tmp_path, {}))
    c = m["counts"]
    assert c["in"] == 12 and c["in"] == c["kept"] + c["dropped"] + c["quarantined"]
    assert "c4_lorem_ipsum" in m["drop_reasons"] or any(r.startswith("gopher") for r in m["drop_reasons"])
    assert all(r.split("_")[0] in ("gopher", "c4", "fineweb") for r in m["drop_reasons"])
    out = Path(tmp_path / "store" / "outputs" / m["fingerprint"])
    dropped = pl.concat([pl.read_parquet(f) for f in (out / "excluded").glob("*.parquet")])
    lorem = dropped.filter(pl.col("text").str.contains("Lorem ipsum"))
    assert lorem.height == 1 and lorem["reason"][0].startswith(("c4_", "gopher_"))


def test_switching_a_filter_off_and_thresholds_are_params(tmp_path: Path) -> None:
    strict = _run(
        _pipeline(
            tmp_path,
            {
                "gopher_quality": {"min_doc_words": 100_000, "max_doc_words": None},
                "gopher_repetition": None,
                "c4": None,
                "fineweb": None,
            },
        )
    )
    assert strict["counts"]["kept"] == 0
    assert set(strict["drop_reasons"]) == {"gopher_quality_min_words"}
    assert json.dumps(strict["params"]["c4"]) == "null"
