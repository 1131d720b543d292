"""Tokenizer: round trip, special tokens as single ids, AutoTokenizer loading, determinism across
processes."""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

from data_pipes.code.special_tokens import SPECIAL_TOKENS
from data_pipes.tokens.bpe_train import train_bpe

SAMPLES = [
    "def f(x):\n\treturn {'a': [1, 2.5e-3]}  # comment\n",
    "Grüße aus Köln — naïve café, 日本語のテキスト, Ελληνικά, emoji 🎉🧪 and \u200b zero width",
    "   leading spaces\n\n\n\ttabs\r\nCRLF  trailing   ",
    "",
    " ",
    "\x00\x01 control \x7f and lone combining \u0301",
    "<|endoftext|> in text, <think>a</think> "
    "<tool_call>f<arg_key>k</arg_key><arg_value>v</arg_value></tool_call>",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    ids = tok.encode(text, add_special_tokens=False).ids
    assert tok.decode(ids, skip_special_tokens=False) == text


def test_special_tokens_are_single_ids(tok: Tokenizer) -> None:
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS)))  # declared order, first ids
    for t, i in zip(SPECIAL_TOKENS, ids, strict=True):
        assert tok.encode(t, add_special_tokens=False).ids == [i]
        assert tok.encode(f"x{t}y", add_special_tokens=False).ids.count(i) == 1


def test_vocab_size_and_floor(tok: Tokenizer) -> None:
    assert tok.get_vocab_size() == 800
    with pytest.raises(ValueError, match="below"):
        train_bpe(["abc"], 100)


def test_auto_tokenizer_loads_and_matches(tok_dir: pathlib.Path, tok: Tokenizer) -> None:
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
    assert auto.eos_token == "<|endoftext|>" and auto.pad_token_id == tok.token_to_id("<|endoftext|>")
    for text in SAMPLES:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert auto(text, add_special_tokens=False)["input_ids"] == ids
        assert auto.decode(ids) == text


TRAIN = """
import hashlib, sys
sys.path.insert(0, {root!r})
from tests.data_pipes.tokens.conftest import sample_texts
from data_pipes.tokens.bpe_train import train_bpe
print(hashlib.sha256(train_bpe(sample_texts(), 700).to_str().encode()).hexdigest())
"""


def test_training_is_deterministic_across_processes() -> None:
    root = str(pathlib.Path(__file__).resolve().parents[3])
    digests = {
        subprocess.run(
            [sys.executable, "-c", TRAIN.format(root=root)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
        ).stdout.strip()
        for seed in (1, 2)
    }
    # two hash seeds, two processes, and this process: one tokenizer
    from tests.data_pipes.tokens.conftest import sample_texts

    here = hashlib.sha256(train_bpe(sample_texts(), 700).to_str().encode()).hexdigest()
    assert digests == {here}
