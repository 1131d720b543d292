"""Inputs the model tests share: seeded token ids and routers with non-zero correction biases."""

from __future__ import annotations

import torch

from model.config import ModelConfig
from model.glm import GLMForCausalLM


def _ids(cfg: ModelConfig, *shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, cfg.vocab_size, shape, generator=torch.Generator().manual_seed(seed))


def _biased(model: GLMForCausalLM) -> GLMForCausalLM:
    """Non-zero correction biases, so routing depends on them as in a trained model."""
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for router in model.routers():
            router.e_score_correction_bias.copy_(torch.rand(router.n_experts, generator=gen) * 0.1 - 0.05)
    return model


def autograd_ops(t: torch.Tensor) -> set[str]:
    """The autograd node types behind ``t`` (what the forward ran)."""
    seen, todo, names = set(), [t.grad_fn], set()
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names
