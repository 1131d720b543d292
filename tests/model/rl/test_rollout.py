"""The rollout engine: KV-cache decoding equals no-cache greedy decoding (our debug GLM model and a small
transformers Llama), seeded sampling is reproducible and independent of the batch, stop ids end a row, top-p near 0
is greedy; and one step's collection drops all-equal groups and over-samples to refill the batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from model.config import model_config
from model.glm import GLMForCausalLM
from model.rl.collect import EpochSampler, collect_step, load_rollouts, save_rollouts
from model.rl.rollout import (
    SamplingParams,
    generate,
    greedy_no_cache,
    load_policy,
    render_prompt,
    sample_next,
)

PROMPTS = [[5, 6, 7, 8, 9], [11, 12], [3, 4, 3, 4, 3, 4, 3, 4, 3]]


def _llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def glm() -> GLMForCausalLM:
    return GLMForCausalLM(model_config("debug"), seed=0).eval()


@pytest.mark.parametrize("which", ["glm", "llama"])
def test_kv_cache_greedy_equals_no_cache_greedy(which: str, glm: GLMForCausalLM) -> None:
    model = glm if which == "glm" else _llama()
    sp = SamplingParams(max_new_tokens=10, temperature=0.0)
    out = generate(model, PROMPTS, sp)  # left padding, batched, cached
    for prompt, comp in zip(PROMPTS, out, strict=True):
        assert comp.tokens == greedy_no_cache(model, prompt, sp)
        assert comp.truncated


def test_seeded_sampling_is_reproducible_and_batch_independent(glm: GLMForCausalLM) -> None:
    sp = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9)
    a = generate(glm, PROMPTS, sp, n_samples=3, seeds=[10, 20, 30])
    b = generate(glm, PROMPTS, sp, n_samples=3, seeds=[10, 20, 30])
    alone = generate(glm, PROMPTS[1:2], sp, n_samples=3, seeds=[20])
    assert [c.tokens for c in a] == [c.tokens for c in b]
    assert [c.tokens for c in a[3:6]] == [c.tokens for c in alone]
    assert len({tuple(c.tokens) for c in a[3:6]}) > 1  # the samples of one prompt differ
    other = generate(glm, PROMPTS, sp, n_samples=3, seeds=[11, 20, 30])
    assert [c.tokens for c in other[:3]] != [c.tokens for c in a[:3]]


def test_stop_ids_end_each_row_and_finished_rows_leave_the_batch(glm: GLMForCausalLM) -> None:
    free = generate(glm, PROMPTS, SamplingParams(max_new_tokens=10, temperature=1.0), n_samples=4)
    stop = free[0].tokens[2]  # a token the first row samples third: it stops there, others go on
    sp = SamplingParams(max_new_tokens=10, temperature=1.0, stop_ids=(stop,))
    out = generate(glm, PROMPTS, sp, n_samples=4)
    for f, c in zip(free, out, strict=True):
        if stop in f.tokens:
            cut = f.tokens.index(stop) + 1
            assert c.tokens == f.tokens[:cut] and not c.truncated
        else:
            assert c.tokens == f.tokens and c.truncated
    assert len(out[0].tokens) == 3


def test_top_p_near_zero_is_greedy_and_sampling_follows_the_distribution() -> None:
    logits = torch.tensor([[0.0, 2.0, 1.0, -1.0]] * 2000)
    u = torch.rand(2000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert sample_next(logits, u, 1.0, 1e-6).eq(1).all()
    toks = sample_next(logits, u, 1.0, 1.0)
    freq = torch.bincount(toks, minlength=4).double() / 2000
    assert torch.allclose(freq, torch.softmax(logits[0].double(), -1), atol=0.03)
    top2 = sample_next(logits, u, 1.0, 0.8)  # p = [.09, .67, .24, .03]: tokens 1 and 2 make 0.8
    assert set(top2.tolist()) == {1, 2}


def test_loads_an_arcflow_checkpoint_and_renders_with_its_chat_template(tmp_path: Path) -> None:
    from tests.model.rl._ckpt import make_debug_checkpoint

    policy = load_policy(make_debug_checkpoint(str(tmp_path / "ckpt")))
    assert policy.is_glm and isinstance(policy.model, GLMForCausalLM)
    ids = render_prompt(policy.tokenizer, "What is 2 + 2?")
    assert policy.tokenizer.decode(ids).endswith("<|assistant|>\n")
    stops = policy.stop_ids()
    assert policy.tokenizer.convert_tokens_to_ids("<|user|>") in stops
    out = generate(policy, [ids], SamplingParams(max_new_tokens=4, temperature=0.0, stop_ids=stops))
    assert 1 <= len(out[0].tokens) <= 4
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_policy(str(tmp_path / "nowhere"))


@dataclass
class _Result:
    value: float
    passed: bool
    error: str | None = None


def test_collect_drops_all_equal_groups_and_refills_with_another_round(
    glm: GLMForCausalLM, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from model.rl.rollout import Policy

    tok = SimpleNamespace(
        pad_token_id=0, decode=lambda ids, skip_special_tokens=False: " ".join(map(str, ids))
    )
    policy = Policy(glm, tok, "debug", True)
    problems = [{"id": f"p{i}", "constant": i % 2 == 0} for i in range(12)]
    prompts = [[3 + i, 7, 9] for i in range(12)]

    def score(probs: list[dict], texts: list[str]) -> list[_Result]:
        # even problems: every sample gets reward 1 (an all-equal group); odd: reward from the sampled text
        return [
            _Result(1.0 if p["constant"] else float(len(t) % 3 == 0), False)
            for p, t in zip(probs, texts, strict=True)
        ]

    sampler = EpochSampler(len(problems), seed=0)
    ro = collect_step(
        step=1, policy=policy, problems=problems, prompts=prompts, sampler=sampler, score=score,
        sampling=SamplingParams(max_new_tokens=6, temperature=1.0), group_size=4, need=3, oversample=1.0,
        max_rounds=4, batch_rows=64, seed=0, truncated="keep", truncated_reward=0.0,
    )  # fmt: skip
    groups = {r["group"]: problems[r["problem"]] for r in ro.rows}
    assert ro.rounds >= 2  # the first round (3 prompts) could not fill the batch alone
    assert len(ro.kept_groups) == 3 and all(not groups[g]["constant"] for g in ro.kept_groups)
    assert ro.filtered_groups == sum(1 for g in groups.values() if g["constant"]) + sum(
        1
        for g, p in groups.items()
        if not p["constant"] and len({r["reward"] for r in ro.rows if r["group"] == g}) == 1
    )
    assert len(ro.rows) == ro.n_groups * 4 and ro.n_groups == len(groups)
    assert sum(r["kept"] for r in ro.rows) == 12
    save_rollouts(str(tmp_path), 1, ro, sampler.state_dict())
    again, state = load_rollouts(str(tmp_path), 1)
    assert again.reused and state == sampler.state_dict() and again.kept_groups == ro.kept_groups
    assert [r["tokens"] for r in again.rows] == [r["tokens"] for r in ro.rows]
    assert load_rollouts(str(tmp_path), 2) is None
