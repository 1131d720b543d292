"""`code_pages` through the engine: pages with code blocks are kept with their code verbatim, prose is dropped."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import polars as pl
import yaml

from flows.engine import Engine
from flows.store import Store
from flows.validate import load_pipeline


def test_code_pages_are_found_and_keep_formatting(tmp_path: Path) -> None:
    pages = tmp_path / "pages"
    pages.mkdir()
    source = inspect.getsource(textwrap.dedent)  # real code, with indentation
    escaped = source.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    (pages / "code.html").write_text(
        "<html><head><title>dedent</title></head><body><h1>How dedent works</h1>"
        + "<p>The function below removes any common leading whitespace from every line in the text. "
        "It is used throughout the standard library to tidy docstrings and templates.</p>"
        * 2
        + f'<pre class="highlight">{escaped}</pre></body></html>'
    )
    (pages / "prose.html").write_text(
        "<html><body>"
        + "<p>A page about gardening, with no code at all, only words about plants.</p>" * 10
        + "</body></html>"
    )
    spec = {
        "name": "c",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "raw": {"uses": "files", "params": {"paths": ["pages"]}},
            "code_web": {"uses": "code_pages", "inputs": ["raw"]},
        },
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    p = load_pipeline(str(tmp_path / "pipeline.yaml"))
    engine = Engine(p)
    for n in p.order:
        engine.run_node(n)
    engine.close()
    store = Store(str(tmp_path / "store"))
    m = store.manifest(store.read_refs("c")["code_web"]["fingerprint"])
    assert m["counts"] == {"in": 2, "kept": 1, "dropped": 1, "quarantined": 0, "out": 1}
    assert m["drop_reasons"] == {"code_pages_not_code": 1}
    out = pl.read_parquet(Path(store.output_dir(m["fingerprint"])) / "part-00000.parquet")
    text = out["text"][0]
    # the whole function, every line with its indentation, fenced as a code block
    assert f"```\n{source.rstrip()}\n```" in text, text
