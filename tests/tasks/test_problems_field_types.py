"""`problems`: every field of a user JSONL row is type-checked (docs/REASONING.md, User JSONL schema); a wrongly
typed field quarantines the line with `problems_bad_field` and is never converted."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import polars as pl
import yaml

from flows.engine import Engine
from flows.validate import load_pipeline


def test_wrongly_typed_fields_are_quarantined_and_good_rows_kept_unchanged(tmp_path: Path) -> None:
    rows = [
        {"prompt": "What is 7+2?", "answer": "9", "tests": 5},  # int tests
        {"prompt": "What is 1+1?", "answer": ["2"]},  # list answer
        {"prompt": 12, "answer": "12"},  # int prompt
        {"prompt": "Is it?", "answer": "yes", "difficulty": True},  # bool difficulty
        {"prompt": "Meta?", "answer": "m", "meta": "not an object"},
        {"prompt": "Bool id?", "answer": "b", "id": False},
        {"id": "ok", "prompt": "What is 3+4?", "answer": "7", "difficulty": "easy", "meta": {"k": 1}},
        {"id": 7, "prompt": "What is 2*3?", "answer": "6", "tests": None},  # integer id, null = absent
    ]
    src = tmp_path / "set.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = {
        "name": "r",
        "workdir": str(tmp_path / ".arcflow"),
        "nodes": {"probs": {"uses": "problems", "params": {"jsonl": [str(src)]}}},
        "executor": {"n_workers": 1, "processes": False},
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    engine = Engine(load_pipeline(str(tmp_path / "pipeline.yaml"), []))
    try:
        m = engine.run_node("probs")[1]
    finally:
        engine.close()
    c = m["counts"]
    assert c["in"] == 8 and c["in"] == c["kept"] + c["dropped"] + c["quarantined"]
    assert c["kept"] == 2 and m["quarantine_errors"] == {"problems_bad_field": 6}

    (out,) = {
        os.path.dirname(p)
        for p in glob.glob(str(tmp_path / ".arcflow" / "**" / "manifest.json"), recursive=True)
    }
    kept = pl.concat([pl.read_parquet(f) for f in sorted(glob.glob(os.path.join(out, "part-*.parquet")))])
    by_id = {r["id"]: r for r in kept.iter_rows(named=True)}
    ok, seven = by_id["jsonl:set.jsonl:ok"], by_id["jsonl:set.jsonl:7"]
    assert (ok["prompt"], ok["answer"], ok["tests"], ok["domain"], ok["difficulty"]) == (
        "What is 3+4?",
        "7",
        "",
        "math",
        "easy",
    )
    assert json.loads(ok["meta"])["k"] == 1
    assert (seven["answer"], seven["tests"], seven["domain"]) == ("6", "", "math")

    q = pl.concat([pl.read_parquet(f) for f in glob.glob(os.path.join(out, "quarantine", "*.parquet"))])
    errors = dict(zip(q["url"], q["error"], strict=True))
    assert errors["set.jsonl#1"] == (
        "problems_bad_field: set.jsonl#1: field 'tests' must be a string (got int 5); "
        "write it as a JSON string of Python test code or leave the field out"
    )
    assert errors["set.jsonl#2"].startswith(
        "problems_bad_field: set.jsonl#2: field 'answer' must be a string (got list [\"2\"])"
    )
    assert "field 'prompt' must be a string (got int 12)" in errors["set.jsonl#3"]
    assert "field 'difficulty' must be a string (got bool true)" in errors["set.jsonl#4"]
    assert "field 'meta' must be an object" in errors["set.jsonl#5"]
    assert "field 'id' must be a string or an integer (got bool false)" in errors["set.jsonl#6"]
