"""Fixtures for the training-plumbing tests: a small byte-level BPE trained on standard-library docstrings, packed
shards of real text tokenized with it inside a store-like layout (a tokenizer node and a pack node, as
``flows/store.py`` lays them out), and chat records."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from data_pipes.reasoning.tool_calls import format_tool_call, format_tool_response
from data_pipes.tokens.bpe_train import save_hf_folder, train_bpe
from model.train.sft import Doc, pack_docs

MODULES = [
    "json",
    "os",
    "re",
    "pathlib",
    "textwrap",
    "string",
    "collections",
    "functools",
    "itertools",
    "shutil",
]
SEQ = 64


def _texts() -> list[str]:
    import importlib

    out = []
    for name in MODULES:
        mod = importlib.import_module(name)
        out.append(inspect.getdoc(mod) or name)
        for _, obj in sorted(vars(mod).items()):
            doc = inspect.getdoc(obj) if callable(obj) else None
            if doc:
                out.append(doc)
    return out


def make_tokenizer(folder: Path, vocab_size: int) -> Path:
    tok = train_bpe(_texts(), vocab_size, min_frequency=2)
    save_hf_folder(tok, str(folder))
    return folder


def write_packed(
    folder: Path, tok_dir: Path, seq_len: int = SEQ, n_docs: int = 120, shards: int = 2
) -> list[str]:
    """Real text, tokenized and packed best-fit into ``shards`` Parquet files under ``folder``."""
    tok = Tokenizer.from_file(str(tok_dir / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    docs = []
    for i, text in enumerate(_texts()[:n_docs]):
        ids = [*tok.encode(text[:400], add_special_tokens=False).ids, eos][:seq_len]
        docs.append(Doc(np.asarray(ids, np.int32), None, f"doc-{i}", "stdlib", "", "docs"))
    table = pack_docs(docs, seq_len, seed=0, pad_id=eos)
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-table.num_rows // shards)
    files = []
    for k in range(shards):
        path = folder / f"part-{k:05d}.parquet"
        pq.write_table(table.slice(k * per, per), path)
        files.append(str(path))
    return files


def write_store(root: Path) -> dict[str, Path]:
    """``root/<tok fp>/`` (tokenizer node) and ``root/<pack fp>/`` (pack node) with their manifests (also built
    outside pytest, by tests/model/train/_zero_build.py)."""
    tok_node = root / ("a" * 64)
    tok_dir = make_tokenizer(tok_node / "tokenizer", 512)
    digest = hashlib.sha256((tok_dir / "tokenizer.json").read_bytes()).hexdigest()
    pq.write_table(
        __import__("pyarrow").Table.from_pylist([{"tokenizer_dir": "tokenizer", "sha256": digest}]),
        tok_node / "part-00000.parquet",
    )
    (tok_node / "manifest.json").write_text(
        json.dumps({"kind": "tokenizer_train", "output_type": "tokenizer"})
    )
    pack_node = root / ("b" * 64)
    write_packed(pack_node, tok_dir)
    manifest = {
        "kind": "pack",
        "output_type": "packed_tokens",
        "inputs": [
            {"name": "tokenizer", "fingerprint": tok_node.name, "content_hash": "x"},
            {"name": "docs", "fingerprint": "c" * 64, "content_hash": "y"},
        ],
    }
    (pack_node / "manifest.json").write_text(json.dumps(manifest))
    return {"tokenizer": tok_dir, "packed": pack_node, "root": root}


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``outputs/<tok fp>/`` (tokenizer node) and ``outputs/<pack fp>/`` (pack node) with their manifests."""
    out = write_store(tmp_path_factory.mktemp("store") / "outputs")
    other = make_tokenizer(tmp_path_factory.mktemp("other") / "tokenizer", 400)
    return {**out, "other_tokenizer": other}


def chat_records() -> list[dict]:
    """Records in the docs/CHAT_CONTRACT.md shape: thinking, direct, and an agent turn with a tool call."""
    tools = [
        {
            "name": "run_python",
            "description": "Run Python code",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "timeout": {"type": "integer"}},
            },
        }
    ]
    call = format_tool_call("run_python", {"code": "print(sum(range(4)))\nx = '</arg_value>'", "timeout": 5})
    base = {"problem_id": "p", "difficulty": "easy", "teacher": "procedural", "verified": True, "meta": "{}"}
    return [
        {
            **base,
            "id": "r-think",
            "mode": "thinking",
            "domain": "arithmetic",
            "tools": "[]",
            "messages": [
                {"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": "<think>\n2 plus 3 is 5.\n</think>\n\nThe answer is 5."},
            ],
        },
        {
            **base,
            "id": "r-direct",
            "mode": "direct",
            "domain": "logic",
            "tools": "[]",
            "messages": [
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Is every square a rectangle?"},
                {"role": "assistant", "content": "Yes."},
            ],
        },
        {
            **base,
            "id": "r-agent",
            "mode": "direct",
            "domain": "agent",
            "tools": json.dumps(tools),
            "messages": [
                {"role": "user", "content": "Sum 0..3 with Python."},
                {"role": "assistant", "content": call},
                {"role": "observation", "content": format_tool_response("6")},
                {"role": "assistant", "content": "The sum is 6."},
            ],
        },
    ]


def write_chat(path: Path, records: list[dict]) -> str:
    import polars as pl

    from data_pipes.reasoning.records import CHAT_SCHEMA

    os.makedirs(path.parent, exist_ok=True)
    pl.DataFrame(records, schema=CHAT_SCHEMA).write_parquet(path)
    return str(path)
