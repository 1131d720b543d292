"""model/generate.py on a debug model exported as an HF folder: batched greedy decoding equals transformers'
``generate`` prompt by prompt (stops, batching, the positions limit), and packed per-token nats equal transformers'
cross-entropy of each document run alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.config import ModelConfig
from model.export import load_hf, save_hf
from model.generate import greedy_generate, token_nats
from model.glm import GLMForCausalLM


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from model.config import model_config

    path = tmp_path_factory.mktemp("gen")
    save_hf(GLMForCausalLM(model_config("debug", max_position_embeddings=64), seed=5), path)
    return path


def _prompts(cfg: ModelConfig) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    return [torch.randint(3, cfg.vocab_size, (n,), generator=g).tolist() for n in (9, 3, 14, 1, 7)]


def _hf_greedy(hf: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=n, do_sample=False, eos_token_id=None)
    return out[0, len(prompt) :].tolist()


def test_greedy_generate_equals_transformers(folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    ours = load_hf(folder).eval()
    hf = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    prompts = _prompts(ours.config)
    seen: list[tuple[int, int]] = []
    got = greedy_generate(ours, prompts, 6, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    want = [_hf_greedy(hf, p, 6) for p in prompts]
    assert got == want and all(len(g) == 6 for g in got)
    assert seen == [(2, 5), (4, 5), (5, 5)]
    # a stop id ends a row after it (kept); the others run on
    stop = want[0][2]
    stopped = greedy_generate(ours, prompts, 6, stop_ids=[stop], batch_size=8)
    for w, s in zip(want, stopped, strict=True):
        assert s == (w[: w.index(stop) + 1] if stop in w else w)
    # the positions limit: prompt + output stop at max_positions
    assert [len(x) for x in greedy_generate(ours, prompts, 6, max_positions=16)] == [6, 6, 2, 6, 6]
    with pytest.raises(ValueError, match="prompt 0 has 64 tokens"):
        greedy_generate(ours, [[1] * 64], 2)


def test_token_nats_equal_each_document_alone(folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    ours = load_hf(folder).eval()
    hf = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    docs = _prompts(ours.config)[:3] + [[4, 5]]
    got = token_nats(ours, docs, row_tokens=24)  # rows: [9, 3] [14, 2] after first-fit in order
    for d, nats in zip(docs, got, strict=True):
        with torch.no_grad():
            logits = hf(torch.tensor([d])).logits[0, :-1].float()
        want = torch.nn.functional.cross_entropy(logits, torch.tensor(d[1:]), reduction="none")
        assert len(nats) == len(d) - 1
        assert torch.allclose(torch.tensor(nats, dtype=torch.float32), want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="document 0 has 1 tokens"):
        token_nats(ours, [[3]], row_tokens=8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_fp32_equals_cpu_and_bf16_is_close(folder: Path) -> None:
    """The eval kind's GPU path: the model on CUDA (fp32: the CPU's tokens and nats; bf16: nats within 3%)."""
    cpu = load_hf(folder).eval()
    prompts = _prompts(cpu.config)
    want_tokens = greedy_generate(cpu, prompts, 6, batch_size=2)
    want_nats = token_nats(cpu, prompts[:3], row_tokens=24)
    gpu = load_hf(folder).cuda().eval()
    assert greedy_generate(gpu, prompts, 6, batch_size=2) == want_tokens
    got = token_nats(gpu, prompts[:3], row_tokens=24)
    for g, w in zip(got, want_nats, strict=True):
        assert g == pytest.approx(w, rel=1e-4, abs=1e-4)
    bf16 = load_hf(folder, dtype=torch.bfloat16).cuda().eval()
    stop = want_tokens[0][1]
    out = greedy_generate(bf16, prompts, 6, batch_size=8, stop_ids=[stop])
    assert all(1 <= len(o) <= 6 and stop not in o[:-1] for o in out)
    assert all(len(o) == 6 or o[-1] == stop for o in out)
    got = token_nats(bf16, prompts[:3], row_tokens=24)
    assert sum(map(sum, got)) == pytest.approx(sum(map(sum, want_nats)), rel=3e-2)
