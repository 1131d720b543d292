"""An exported folder with a tokenizer stops ``generate`` at a turn's end: generation_config.json's eos_token_id holds
<|endoftext|>, <|user|> and <|observation|> (model/export.py ``set_generation_stops``). The debug model is random,
so which token it picks is scripted by a logits processor (the model still runs every step); the stopping is
transformers' own, driven by the exported generation config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

from model.config import ModelConfig
from model.export import save_hf, set_generation_stops
from model.glm import GLMForCausalLM
from model.train.chat import install_chat_template
from tests.model.train.conftest import make_tokenizer


class Script(LogitsProcessor):
    """Greedy decoding emits ``tokens`` in order, then keeps repeating the last one."""

    def __init__(self, tokens: list[int], prompt_len: int) -> None:
        self.tokens, self.prompt_len = tokens, prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = min(input_ids.shape[1] - self.prompt_len, len(self.tokens) - 1)
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens[step]] = 0.0
        return forced


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(an exported debug checkpoint with the tokenizer and its stops, the same without the stops)."""
    from model.config import model_config

    tmp = tmp_path_factory.mktemp("gen")
    tok = make_tokenizer(tmp / "tok", 512)
    plain = save_hf(GLMForCausalLM(model_config("debug"), seed=3), tmp / "plain")
    shutil.copyfile(tok / "tokenizer.json", plain / "tokenizer.json")
    install_chat_template(str(plain))
    stops = tmp / "stops"
    shutil.copytree(plain, stops)
    set_generation_stops(stops, stops / "tokenizer.json")
    return plain, stops


def test_generation_config_lists_the_turn_end_tokens(
    folders: tuple[Path, Path], debug_cfg: ModelConfig
) -> None:
    _, stops = folders
    tok = AutoTokenizer.from_pretrained(stops)
    ids = [tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|observation|>")]
    gen = json.loads((stops / "generation_config.json").read_text())
    assert gen["eos_token_id"] == ids and gen["pad_token_id"] == ids[0]
    assert json.loads((stops / "config.json").read_text())["vocab_size"] == debug_cfg.vocab_size


@pytest.mark.parametrize("stop", ["<|user|>", "<|observation|>", "<|endoftext|>"])
def test_generate_stops_at_a_turn_end(folders: tuple[Path, Path], stop: str) -> None:
    plain, stops = folders
    tok = AutoTokenizer.from_pretrained(stops)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, return_tensors="pt",
        return_dict=True,
    )  # fmt: skip
    n = prompt["input_ids"].shape[1]
    answer = tok.encode("The answer is 5.", add_special_tokens=False)
    script = [*answer, tok.convert_tokens_to_ids(stop), *answer]
    outs = {}
    for name, folder in (("plain", plain), ("stops", stops)):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        outs[name] = model.generate(
            **prompt, max_new_tokens=len(script) + 4, do_sample=False,
            logits_processor=LogitsProcessorList([Script(script, n)]),
        )[0, n:].tolist()  # fmt: skip
    assert outs["stops"] == script[: len(answer) + 1]  # the answer, the stop token, and nothing after it
    assert len(outs["plain"]) == len(script) + 4  # without the stop ids it runs on to max_new_tokens
