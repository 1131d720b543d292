"""SFT end to end through the entry point (one rank, no launcher): chat records rendered, packed and trained with
loss on assistant tokens only; the exported folder loads in transformers with the chat template; a record without
an assistant turn stops the run before training, naming the file and row."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from model.export import load_hf
from model.train.chat import record_messages, render_chat

from .conftest import chat_records, write_chat


def _spec(tmp: Path, store: dict, chat: str) -> Path:
    spec = {
        "model": {"flavour": "debug"},
        "data": {"chat": [chat], "tokenizer": str(store["tokenizer"]), "seq_len": 512},
        "batch": {"global_batch": 2, "micro_batch": 1},
        "optim": {"name": "adamw", "lr": 0.003},
        "steps": 3,
        "checkpoint": {"dir": str(tmp / "ckpt"), "export": str(tmp / "hf")},
    }
    path = tmp / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _main(spec: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "model.train.main", str(spec)],
        capture_output=True,
        text=True,
        timeout=400,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.slow
def test_sft_trains_and_exports(store: dict, tmp_path: Path) -> None:
    records = [{**r, "id": f"{r['id']}-{i}"} for i, r in enumerate(chat_records() * 3)]
    spec = _spec(tmp_path, store, write_chat(tmp_path / "chat" / "part-00000.parquet", records))
    done = _main(spec)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = pq.read_table(tmp_path / "ckpt" / "metrics.parquet").to_pylist()
    assert [r["step"] for r in rows] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in rows)
    consumed = json.loads((tmp_path / "ckpt" / "consumed.json").read_text())
    assert consumed["samples"] == 6 and sum(s["samples"] for s in consumed["shards"]) == 6
    sft = pq.read_table(tmp_path / "ckpt" / "sft_rows" / "part-00000.parquet")
    assert sorted(i for row in sft.column("doc_ids").to_pylist() for i in row) == sorted(
        r["id"] for r in records
    )
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    messages, tools = record_messages(records[2], "t")
    assert tok.apply_chat_template(messages, tools=tools, tokenize=False) == render_chat(messages, tools).text
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"))
    prompt = tok.apply_chat_template(
        messages[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = model.generate(**prompt, max_new_tokens=4, do_sample=False, eos_token_id=None)  # exactly 4 tokens
    assert out.shape[1] == prompt["input_ids"].shape[1] + 4 and out.dtype == torch.long
    # a next stage starts from the exported folder, with a larger RoPE base (midtraining's override)
    mid = {
        "model": {"flavour": "debug", "init_from": str(tmp_path / "hf"), "overrides": {"rope_theta": 1e6}},
        "data": {"shards": [str(store["packed"])], "tokenizer": str(store["tokenizer"])},
        "batch": {"global_batch": 1, "micro_batch": 1},
        "optim": {"name": "adamw", "lr": 1e-30},
        "schedule": {"floor": 0, "bias_update": [0.0]},
        "steps": 1,
        "checkpoint": {"dir": str(tmp_path / "mid"), "export": str(tmp_path / "hf2")},
    }
    (tmp_path / "mid.json").write_text(json.dumps(mid))
    done = _main(tmp_path / "mid.json")
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads((tmp_path / "hf2" / "config.json").read_text())["rope_parameters"]["rope_theta"] == 1e6
    before, after = load_hf(tmp_path / "hf").state_dict(), load_hf(tmp_path / "hf2").state_dict()
    assert before.keys() == after.keys()
    for name, t in before.items():  # a 1e-30 step leaves the parent's weights as they were
        assert torch.equal(after[name], t), name


@pytest.mark.slow
def test_record_without_assistant_stops_before_training(store: dict, tmp_path: Path) -> None:
    records = chat_records()
    records[2] = {**records[2], "messages": records[2]["messages"][:1]}
    chat = write_chat(tmp_path / "chat" / "part-00007.parquet", records)
    done = _main(_spec(tmp_path, store, chat))
    assert done.returncode != 0
    assert f"{chat} row 2: record 'r-agent' has no assistant turn" in done.stderr
    assert not (tmp_path / "ckpt" / "metrics.parquet").exists()


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(store: dict, tmp_path: Path) -> None:
    spec = {
        "model": {"flavour": "debug"},
        "data": {"shards": [str(store["packed"])], "tokenizer": str(store["tokenizer"])},
        "batch": {"global_batch": 2, "micro_batch": 1},
        "optim": {"name": "adamw", "lr": 1e30, "clip": 0},
        "schedule": {"floor": 0},
        "steps": 6,
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "every": 1},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    done = _main(path)
    assert done.returncode != 0
    assert "FloatingPointError: step 2: loss nan" in done.stderr and "last checkpoint" in done.stderr
    assert (tmp_path / "ckpt" / "latest").read_text() == "step00000001"
