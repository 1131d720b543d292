"""The one chat template: AutoTokenizer renders what training renders, tool calls render and parse back, the loss
mask covers exactly the assistant bodies and the token that ends each, SFT rows pack best-fit, and a record without
an assistant turn is an error naming the file and row."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from data_pipes.reasoning.tool_calls import ToolCall, format_tool_call, parse_tool_calls
from model.train.chat import ChatRecordError, install_chat_template, record_messages, render_chat
from model.train.data import IGNORE, PackedLoader
from model.train.sft import build_sft_shard, tokenize_chat

from .conftest import chat_records, write_chat


@pytest.fixture
def hf_tokenizer_dir(store: dict, tmp_path: Path) -> Path:
    folder = tmp_path / "export"
    shutil.copytree(store["tokenizer"], folder)
    install_chat_template(str(folder))
    return folder


def test_autotokenizer_renders_what_training_renders(hf_tokenizer_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(hf_tokenizer_dir))
    for record in chat_records():
        messages, tools = record_messages(record, "test")
        ours = render_chat(messages, tools)
        theirs = tok.apply_chat_template(messages, tools=tools or None, tokenize=False)
        assert theirs == ours.text
        ids = tok.apply_chat_template(messages, tools=tools or None, tokenize=True, return_dict=False)
        assert (
            ids
            == Tokenizer.from_file(str(hf_tokenizer_dir / "tokenizer.json"))
            .encode(ours.text, add_special_tokens=False)
            .ids
        )
    # generation prompt, both modes
    msgs = [{"role": "user", "content": "hi"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True).endswith(
        "<|assistant|>\n"
    )
    direct = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert direct == render_chat(msgs, add_generation_prompt=True, enable_thinking=False).text
    assert direct.endswith("<|assistant|>\n<think></think>\n")


def test_modes_render_as_glm() -> None:
    think, direct, _ = chat_records()
    text = render_chat(*record_messages(think, "t")).text
    assert (
        text == "<|user|>\nWhat is 2 + 3?<|assistant|>\n<think>\n2 plus 3 is 5.\n</think>\n\nThe answer is 5."
    )
    text = render_chat(*record_messages(direct, "t")).text
    assert text.endswith("<|user|>\nIs every square a rectangle?<|assistant|>\n<think></think>\nYes.")


def test_tool_call_renders_and_parses_back(hf_tokenizer_dir: Path) -> None:
    record = chat_records()[2]
    messages, tools = record_messages(record, "t")
    schemas = {t["name"]: t for t in tools}
    tok = Tokenizer.from_file(str(hf_tokenizer_dir / "tokenizer.json"))
    text = render_chat(messages, tools).text
    decoded = tok.decode(tok.encode(text, add_special_tokens=False).ids, skip_special_tokens=False)
    assert decoded == text
    call = ToolCall("run_python", {"code": "print(sum(range(4)))\nx = '</arg_value>'", "timeout": 5})
    assert parse_tool_calls(decoded, schemas) == [call]
    # transformers' structured tool_calls render through the template into the same XML
    structured = [
        messages[0],
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
            ],
        },
    ]
    hf = AutoTokenizer.from_pretrained(str(hf_tokenizer_dir))
    rendered = hf.apply_chat_template(structured, tools=tools, tokenize=False)
    assert rendered.endswith("<think></think>\n" + format_tool_call(call.name, call.arguments))
    assert parse_tool_calls(rendered, schemas) == [call]


def test_loss_mask_is_the_assistant_turns(store: dict) -> None:
    tok = Tokenizer.from_file(str(store["tokenizer"] / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    record = chat_records()[2]
    doc = tokenize_chat(tok, record, "t", eos)
    ids, mask = doc.ids.tolist(), doc.mask.tolist()
    # maximal runs of masked tokens, decoded
    runs, cur = [], []
    for i, m in zip(ids, mask, strict=True):
        if m:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    texts = [tok.decode(r, skip_special_tokens=False) for r in runs]
    call = record["messages"][1]["content"]
    assert texts == [
        "<think></think>\n" + call + "<|observation|>",
        "<think></think>\nThe sum is 6.<|endoftext|>",
    ]


def test_sft_rows(store: dict, tmp_path: Path) -> None:
    records = chat_records() * 4
    for i, r in enumerate(records):
        records[i] = {**r, "id": f"{r['id']}-{i}"}
    path = write_chat(tmp_path / "chat" / "part-00000.parquet", records)
    out = tmp_path / "rows" / "part-00000.parquet"
    stats = build_sft_shard([path], str(store["tokenizer"]), 512, 0, str(out))
    assert stats.records == stats.packed == 12 and stats.loss_tokens > 0
    table = pq.read_table(out)
    assert stats.rows == table.num_rows < 12  # several records per row
    ids = sorted(i for row in table.column("doc_ids").to_pylist() for i in row)
    assert ids == sorted(r["id"] for r in records)  # every record exactly once
    loader = PackedLoader([str(out)], seed=0, micro_batch=table.num_rows, shuffle=False)
    (mb,) = loader.next_batch(table.num_rows)
    masks = table.column("loss_mask").to_pylist()
    for row, mask in enumerate(masks):
        for t, m in enumerate(mask):
            assert (mb.labels[row, t].item() != IGNORE) == bool(m)
    # too long for seq_len: left out and counted
    stats = build_sft_shard([path], str(store["tokenizer"]), 64, 0, str(tmp_path / "short.parquet"))
    assert stats.dropped.get("sft_too_long", 0) > 0 and stats.packed + stats.dropped["sft_too_long"] == 12


def test_record_without_assistant_is_an_error(store: dict, tmp_path: Path) -> None:
    records = chat_records()
    records[1] = {**records[1], "messages": records[1]["messages"][:2]}
    path = write_chat(tmp_path / "part-00003.parquet", records)
    with pytest.raises(ChatRecordError) as err:
        build_sft_shard([path], str(store["tokenizer"]), 256, 0, str(tmp_path / "rows.parquet"))
    msg = str(err.value)
    assert f"{path} row 1" in msg and "'r-direct' has no assistant turn" in msg
    bad = {**chat_records()[0], "tools": "not json"}
    with pytest.raises(ChatRecordError, match="tools is not a JSON list"):
        record_messages(bad, "f row 0")
    broken = chat_records()[2]
    broken["messages"][1] = {"role": "assistant", "content": "<tool_call>run_python\n<arg_key>code</arg_key>"}
    with pytest.raises(ChatRecordError, match="f row 9: malformed tool call"):
        record_messages(broken, "f row 9")
    assert json.loads(chat_records()[2]["tools"])[0]["name"] == "run_python"
