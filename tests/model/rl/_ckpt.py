"""A debug-sized arcflow checkpoint for the RL tests: a byte-level BPE of 512 ids trained on a few standard-library
docstrings (data_pipes/tokens/bpe_train.py), the `debug` GLM-4.5-style model exported as an HF folder
(model/export.py) and the one chat template, i.e. what a training kind outputs, in about a second."""

from __future__ import annotations

import inspect
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq


def make_debug_checkpoint(folder: str, seed: int = 0) -> str:
    import collections
    import json as json_mod
    import textwrap

    from data_pipes.tokens.bpe_train import save_hf_folder, train_bpe
    from model.config import model_config
    from model.export import save_hf
    from model.glm import GLMForCausalLM
    from model.train.chat import install_chat_template

    texts = [inspect.getdoc(m) or "" for m in (collections, json_mod, textwrap, inspect, os)]
    texts += ["What is 12 + 7? Answer: 19", "Say hello in lowercase without commas."] * 20
    tok = train_bpe(texts, 512)
    save_hf_folder(tok, folder)
    save_hf(GLMForCausalLM(model_config("debug"), seed=seed), folder)
    install_chat_template(folder)
    return folder


def write_problems(path: str, n: int, checks: list[dict] | None = None) -> str:
    """``n`` problem-table rows scored by the ``instruction`` reward (a dense, easily learnt signal: lowercase,
    no commas, short)."""
    checks = checks or [
        {"check": "lowercase"},
        {"check": "no_commas"},
        {"check": "max_chars", "value": 12},
    ]
    rows = [
        {
            "id": f"toy:{i}",
            "prompt": f"Write note {i} in lowercase, no commas, short.",
            "answer": "",
            "tests": "",
            "source": "toy",
            "domain": "instruction",
            "difficulty": "easy",
            "meta": json.dumps({"instructions": checks, "reward": "instruction"}),
        }
        for i in range(n)
    ]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
