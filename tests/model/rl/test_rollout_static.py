"""The static-cache engine (model/rl/static_decode.py) against the dynamic loop it replaces where it applies: the
same greedy tokens (and the no-cache reference), the same seeded samples with top-p, the same cut at stop ids when
most rows stop early (so the batch is compacted), for our GLM model and a transformers Llama; on a GPU, CUDA
graphs give the same greedy tokens as eager steps."""

from __future__ import annotations

import pytest
import torch

from model.config import model_config
from model.glm import GLMForCausalLM
from model.rl.rollout import SamplingParams, generate, greedy_no_cache
from model.rl.static_decode import supports_static

PROMPTS = [[5, 6, 7, 8, 9], [11, 12], [3, 4, 3, 4, 3, 4, 3, 4, 3], [20, 21, 22], [7], [9, 8, 7, 6, 5, 4]]


def _llama() -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2,
    )  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module", params=["glm", "llama"])
def model(request: pytest.FixtureRequest) -> torch.nn.Module:
    if request.param == "glm":
        return GLMForCausalLM(model_config("debug"), seed=0).eval()
    return _llama()


def test_static_applies_to_glm_and_llama_only(model: torch.nn.Module) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    assert supports_static(model, isinstance(model, GLMForCausalLM))
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=50, n_positions=32))
    assert not supports_static(gpt2, False)
    with pytest.raises(ValueError, match="does not support GPT2LMHeadModel"):
        generate(gpt2, [[1, 2]], SamplingParams(max_new_tokens=2), engine="static")


def test_static_greedy_equals_dynamic_and_no_cache(model: torch.nn.Module) -> None:
    sp = SamplingParams(max_new_tokens=24, temperature=0.0)
    static = generate(model, PROMPTS, sp, engine="static")
    dynamic = generate(model, PROMPTS, sp, engine="dynamic")
    assert [c.tokens for c in static] == [c.tokens for c in dynamic]
    for prompt, comp in zip(PROMPTS[:3], static, strict=False):
        assert comp.tokens == greedy_no_cache(model, prompt, sp) and comp.truncated


def test_static_samples_and_stops_equal_dynamic_with_compaction(model: torch.nn.Module) -> None:
    free = generate(model, PROMPTS, SamplingParams(max_new_tokens=40, temperature=1.0), n_samples=4)
    # stop at tokens most rows sample early: most rows end before the first stop check (step 17), so the batch is
    # compacted there and the rest run on in a smaller one
    early = [t for c in free for t in c.tokens[1:6]]
    stops = tuple(sorted(set(early), key=lambda t: (-early.count(t), t))[:24])
    sp = SamplingParams(max_new_tokens=40, temperature=1.0, top_p=0.95, stop_ids=stops)
    seeds = [3, 1, 4, 1, 5, 9]
    static = generate(model, PROMPTS, sp, n_samples=4, seeds=seeds, engine="static")
    dynamic = generate(model, PROMPTS, sp, n_samples=4, seeds=seeds, engine="dynamic")
    assert [(c.tokens, c.truncated) for c in static] == [(c.tokens, c.truncated) for c in dynamic]
    lens = [len(c.tokens) for c in static]
    assert sum(n <= 16 for n in lens) > len(lens) // 2 and max(lens) > 17  # compaction happened, rows ran on
    assert all(c.tokens[-1] in stops for c in static if not c.truncated)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graphs_equal_eager_steps_on_gpu() -> None:
    """bf16 (as rollouts run): every step is captured (a failed capture, which falls back to eager steps with a
    RuntimeWarning, fails the test), greedy and sampled with stops that compact the batch."""
    import warnings

    from model.rl.rollout import _row_uniforms
    from model.rl.static_decode import static_generate

    model = GLMForCausalLM(model_config("debug"), seed=0).to("cuda", torch.bfloat16).eval()
    for router in model.routers():
        router.float()
    ids = torch.tensor([[0, 0, 5, 6, 7], [11, 12, 13, 14, 15]], device="cuda")
    mask = ids != 0
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        u = torch.stack([_row_uniforms(r, 40) for r in range(4)])
        runs = [
            static_generate(model, True, ids, pos, mask, 2, u, 0.0, 1.0, (), cuda_graphs=g, sync_every=8)
            for g in (True, False)
        ]
        assert runs[0] == runs[1]
        # sampled, with stop ids that end most rows early: compaction, a new graph pool for the smaller batch
        u = torch.stack([_row_uniforms(r, 40) for r in range(8)])
        stops = tuple(range(0, 256, 3))
        runs = [
            static_generate(model, True, ids, pos, mask, 4, u, 1.0, 1.0, stops, cuda_graphs=g, sync_every=4)
            for g in (True, False)
        ]
        assert runs[0] == runs[1]
