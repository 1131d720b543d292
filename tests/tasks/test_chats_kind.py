"""`chats` (tasks/chats.py): a user's chat JSONL as chat records. Good lines kept, each kind of bad line
quarantined with its reason and ``<file>#<line>``, duplicate ids across files quarantined after the first, counts
balanced, the same bytes at any worker count; kept rows pass the sft stage's own record check, and a `chats` node
feeds an `sft` node that trains on them (debug flavour, two steps)."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from data_pipes.reasoning.jsonl_chats import ROLES, chat_rows
from flows.engine import Engine
from flows.validate import load_pipeline
from model.train.chat import ROLES as TEMPLATE_ROLES
from model.train.chat import record_messages, render_chat

U = {"role": "user", "content": "What is 2+2?"}
A = {"role": "assistant", "content": "4"}
TOOLS = [{"name": "calc", "parameters": {"type": "object", "properties": {"expr": {"type": "string"}}}}]

GOOD = [
    {"id": "a1", "messages": [{"role": "system", "content": "Be brief."}, U, A]},
    {"messages": [U, {"role": "assistant", "content": "<think>\n2+2\n</think>\n\n4"}], "domain": "math"},
    {  # transformers' structured tool form, converted to the template's text form
        "id": "t1",
        "tools": TOOLS,
        "messages": [
            U,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "calc", "arguments": '{"expr": "2+2"}'}}],
            },
            {"role": "tool", "content": "4"},
            A,
        ],
    },
]
BAD = [  # (line, expected error prefix)
    ("{not json", "chats_bad_json"),
    (json.dumps({"prompt": "no messages"}), "chats_no_messages"),
    (json.dumps({"messages": "user: hi\nassistant: hello"}), "chats_no_messages"),
    (json.dumps({"messages": [U, {"role": "bot", "content": "4"}]}), "chats_bad_role"),
    (json.dumps({"messages": [U, {"role": "assistant", "content": ["4"]}]}), "chats_bad_field"),
    (json.dumps({"messages": [U, {"role": "assistant"}]}), "chats_bad_field"),
    (json.dumps({"messages": [U]}), "chats_no_assistant"),
    (json.dumps([U, A]), "chats_not_object"),
    (json.dumps({"messages": [U, A], "mode": "chatty"}), "chats_bad_field"),
    (
        json.dumps({"messages": [U, {"role": "assistant", "content": "<tool_call>calc\n<arg_key>x"}]}),
        "chats_bad_tool_call",
    ),
]


def _write_file(path: Path) -> Path:
    lines = [json.dumps(GOOD[0]), BAD[0][0], json.dumps(GOOD[1]), ""]  # a blank line is skipped, not counted
    lines += [b for b, _ in BAD[1:]] + [json.dumps(GOOD[2])]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_roles_match_the_chat_template() -> None:
    assert ROLES == TEMPLATE_ROLES


def test_rows_and_reasons(tmp_path: Path) -> None:
    rows = chat_rows(str(_write_file(tmp_path / "data" / "my.jsonl")), "my.jsonl")
    bad = [r for r in rows if "error" in r]
    good = [r for r in rows if "error" not in r]
    assert [r["error"].split(":", 1)[0] for r in bad] == [e for _, e in BAD]
    assert bad[0]["url"] == "my.jsonl#2" and "my.jsonl#2" in bad[0]["error"]  # names file#line
    assert "my.jsonl#7" in bad[3]["error"] and "'bot'" in bad[3]["error"]  # line 4 is blank
    assert [r["id"] for r in good][0::2] == ["a1", "t1"] and len(good[1]["id"]) == 16
    assert good[1]["mode"] == "thinking" and good[0]["mode"] == "direct" and good[1]["domain"] == "math"
    tool = good[2]["messages"]
    assert [m["role"] for m in tool] == ["user", "assistant", "observation", "assistant"]
    assert tool[1]["content"].startswith("<tool_call>calc") and tool[2]["content"].startswith(
        "<tool_response>"
    )
    for r in good:  # what sft checks and renders before training
        messages, tools = record_messages(r, r["url"])
        assert render_chat(messages, tools).spans
    assert chat_rows(str(tmp_path / "missing.jsonl"))[0]["error"].startswith("chats_unreadable_file")


def _pipeline(root: Path, workers: int, rows_per_shard: int = 2) -> Path:
    spec = {
        "name": "c",
        "workdir": str(root / ".arcflow"),
        "nodes": {
            "my_chats": {
                "uses": "chats",
                "params": {"jsonl": ["data/*.jsonl"], "rows_per_shard": rows_per_shard},
            }
        },
        "executor": {"n_workers": workers, "processes": False},
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _run(path: Path) -> dict:
    p = load_pipeline(str(path), [])
    engine = Engine(p)
    try:
        return engine.run_node("my_chats")[1]
    finally:
        engine.close()


def _files(root: Path) -> dict[str, str]:
    out = {}
    for f in sorted(glob.glob(str(root / ".arcflow" / "**" / "*.parquet"), recursive=True)):
        out[os.path.relpath(f, root)] = hashlib.sha256(open(f, "rb").read()).hexdigest()
    return out


def _make_data(root: Path) -> None:
    _write_file(root / "data" / "a.jsonl")
    # a second file: a1 again (a duplicate of a.jsonl#1), a new id, a repeat within this file
    other = [GOOD[0], {**GOOD[0], "id": "b1"}, {**GOOD[0], "id": "b1"}]
    (root / "data" / "b.jsonl").write_text("".join(json.dumps(o) + "\n" for o in other))


def test_node_counts_duplicates_and_bytes(tmp_path: Path) -> None:
    runs = []
    for workers in (1, 3):
        root = tmp_path / f"w{workers}"
        _make_data(root)
        m = _run(_pipeline(root, workers))
        runs.append((m, _files(root)))
    m, files = runs[0]
    c = m["counts"]
    assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"] == len(GOOD) + len(BAD) + 3
    assert c["kept"] == len(GOOD) + 1
    errors = {e: sum(1 for _, x in BAD if x == e) for _, e in BAD}
    assert m["quarantine_errors"] == {**errors, "chats_duplicate_id": 2}
    assert m["output_type"] == "chat"
    q = [
        r
        for f in glob.glob(
            str(tmp_path / "w1" / ".arcflow" / "**" / "quarantine" / "*.parquet"), recursive=True
        )
        for r in pq.read_table(f).to_pylist()
    ]
    dup = sorted(r["error"] for r in q if r["error"].startswith("chats_duplicate_id"))
    assert "b.jsonl#1: id 'a1' is already used by a.jsonl#1" in dup[0]
    assert "b.jsonl#3: id 'b1' is already used by b.jsonl#2" in dup[1]
    assert runs[1][1] == files and files  # same files, same bytes, at 1 and 3 workers


@pytest.mark.slow  # about a minute: a tokenizer and a two-step DeepSpeed launch
def test_chats_feed_sft_on_the_debug_model(tmp_path: Path) -> None:
    """`chats` -> `sft` (debug flavour, two steps): the type check passes, the stage trains on the kept rows."""
    _write_file(tmp_path / "data" / "mine.jsonl")
    spec = {
        "name": "c",
        "workdir": str(tmp_path / ".arcflow"),
        "seed": 7,
        "nodes": {
            "demo": {"uses": "demo_corpus", "params": {"parts": ["licenses"], "max_items_per_part": 30}},
            "tokenizer": {
                "uses": "tokenizer_train",
                "inputs": ["demo"],
                "params": {"vocab_size": 512, "sample_docs": 60, "heldout_docs": 0},
            },
            "my_chats": {"uses": "chats", "params": {"jsonl": ["data/mine.jsonl"]}},
            "sft2": {
                "uses": "sft",
                "inputs": ["my_chats", "tokenizer"],
                "params": {"seq_len": 256, "steps": 2, "batch": {"global_batch": 2, "micro_batch": 1}},
            },
        },
        "executor": {"n_workers": 1, "processes": False},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    p = load_pipeline(str(path), [])
    engine = Engine(p)
    try:
        done = {n: engine.run_node(n)[1] for n in p.order}
    finally:
        engine.close()
    chats, sft = done["my_chats"], done["sft2"]
    assert chats["counts"]["kept"] == len(GOOD) and sft["output_type"] == "checkpoint"
    (out,) = [
        os.path.dirname(m)
        for m in glob.glob(str(tmp_path / ".arcflow" / "**" / "manifest.json"), recursive=True)
        if json.load(open(m))["fingerprint"] == sft["fingerprint"]
    ]
    metrics = pq.read_table(os.path.join(out, "metrics.parquet")).to_pylist()
    assert [r["step"] for r in metrics] == [1, 2]
    lineage = json.load(open(os.path.join(out, "lineage.json")))
    read = [s for s in lineage["shards"] if s["node"] == "my_chats"]
    assert (
        sum(s["rows"] for s in read) == chats["counts"]["kept"]
    )  # every kept conversation went into training
    assert {i["node"] for i in lineage["inputs"]} == {"my_chats", "tokenizer"}
