"""Muon + AdamW: parameter split, per-expert orthogonalisation, update RMS, clipping on raw gradients, schedules."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig
from model.glm import GLMForCausalLM
from model.muon import OptimConfig, build_optimizer, clip_and_step, newton_schulz, set_lr, split_params
from model.schedule import LRSchedule, batch_tokens_at, lr_at, piecewise


def _rms(t: torch.Tensor) -> float:
    return float(t.pow(2).mean().sqrt())


def test_split_params(debug_cfg: ModelConfig) -> None:
    muon, adam = split_params(GLMForCausalLM(debug_cfg))
    muon_names, adam_names = {n for n, _ in muon}, {n for n, _ in adam}
    assert "model.layers.1.mlp.experts.gate_up_proj" in muon_names
    assert "model.layers.0.self_attn.q_proj.weight" in muon_names
    assert "model.layers.3.eh_proj.weight" in muon_names
    assert "model.layers.1.mlp.shared_experts.down_proj.weight" in muon_names
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.layers.1.mlp.gate.weight"} <= adam_names
    assert "model.layers.0.self_attn.q_proj.bias" in adam_names and "model.norm.weight" in adam_names
    assert all(p.ndim >= 2 for _, p in muon)


def test_newton_schulz_orthogonalises() -> None:
    g = torch.randn(3, 48, 24, generator=torch.Generator().manual_seed(0))
    sv = torch.linalg.svdvals(newton_schulz(g, 5))
    assert float(sv.min()) > 0.5 and float(sv.max()) < 1.3


def test_update_rms_is_target_and_experts_are_separate(debug_cfg: ModelConfig) -> None:
    model = GLMForCausalLM(debug_cfg)
    opt = build_optimizer(model, OptimConfig(lr=1.0, weight_decay=0.0, nesterov=False))
    experts = model.model.layers[1].mlp.experts
    q = model.model.layers[0].self_attn.q_proj.weight
    gen = torch.Generator().manual_seed(1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    q.grad = torch.randn(q.shape, generator=gen)
    g = torch.randn(experts.gate_up_proj.shape, generator=gen)
    g[1:] = 0  # only expert 0 has a gradient; its gate half is 100x its up half
    g[0, : debug_cfg.moe_intermediate_size] *= 100
    experts.gate_up_proj.grad = g
    before_q, before_e = q.detach().clone(), experts.gate_up_proj.detach().clone()
    opt.step()
    dq = before_q - q.detach()
    de = before_e - experts.gate_up_proj.detach()
    assert _rms(dq) == pytest.approx(0.2, rel=0.25)
    i = debug_cfg.moe_intermediate_size
    gate, up = de[0, :i], de[0, i:]
    # gate and up are orthogonalised separately: both get an update of RMS ~0.2 despite the 100x gradient ratio
    assert _rms(gate) == pytest.approx(0.2, rel=0.25) and _rms(up) == pytest.approx(0.2, rel=0.25)
    scale = 0.2 * max(i, debug_cfg.hidden_size) ** 0.5
    torch.testing.assert_close(gate, scale * newton_schulz(g[0, :i]), rtol=1e-4, atol=1e-6)
    assert float(de[1:].abs().max()) == 0.0  # experts without gradient do not move (no weight decay here)


def test_clipping_acts_on_raw_gradients(debug_cfg: ModelConfig) -> None:
    model = GLMForCausalLM(debug_cfg)
    opt = build_optimizer(model, OptimConfig(lr=1e-3))
    ids = torch.randint(0, debug_cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    (model(ids, labels=ids, mtp_weight=0.3).loss * 1000).backward()  # a huge gradient
    raw = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    raw_norm = float(torch.linalg.vector_norm(torch.stack([g.norm() for g in raw.values()])))
    norm = clip_and_step(opt, max_norm=1.0)
    assert norm == pytest.approx(raw_norm, rel=1e-5)
    factor = 1.0 / (raw_norm + 1e-6)
    named = dict(model.named_parameters())
    for name in ("model.layers.1.mlp.experts.down_proj", "model.layers.0.self_attn.o_proj.weight"):
        # Muon's momentum holds the clipped raw gradient (clipping happened before orthogonalisation)
        torch.testing.assert_close(opt.state[named[name]]["momentum_buffer"], raw[name] * factor)
    emb = named["model.embed_tokens.weight"]
    torch.testing.assert_close(opt.state[emb]["exp_avg"], 0.1 * raw["model.embed_tokens.weight"] * factor)


def test_weight_decay_groups(debug_cfg: ModelConfig) -> None:
    model = GLMForCausalLM(debug_cfg)
    opt = build_optimizer(model)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    assert id(model.model.embed_tokens.weight) in decay and id(model.model.norm.weight) not in decay
    set_lr(opt, 1e-5)
    assert all(g["lr"] == 1e-5 for g in opt.param_groups)


def test_schedules() -> None:
    s = LRSchedule(peak=2.5e-4, floor=2.5e-5, warmup_steps=10, total_steps=110)
    assert lr_at(0, s) == pytest.approx(2.5e-5) and lr_at(9, s) == pytest.approx(2.5e-4)
    assert lr_at(60, s) == pytest.approx((2.5e-4 + 2.5e-5) / 2)
    assert lr_at(110, s) == pytest.approx(2.5e-5) and lr_at(500, s) == pytest.approx(2.5e-5)
    assert all(lr_at(t, s) >= lr_at(t + 1, s) for t in range(10, 120))
    with pytest.raises(ValueError, match="above the peak"):
        LRSchedule(peak=1e-4, floor=1e-3, total_steps=5)
    assert batch_tokens_at(0, start=16, end=64, warmup_tokens=100, multiple=8) == 16
    assert batch_tokens_at(50, start=16, end=64, warmup_tokens=100, multiple=8) == 40
    assert batch_tokens_at(10**9, start=16, end=64, warmup_tokens=100, multiple=8) == 64
    assert [piecewise(t, [1e-3, 0.0], [5]) for t in (0, 4, 5, 9)] == [1e-3, 1e-3, 0.0, 0.0]


def test_flat_parameter_in_muon_group_is_a_clear_error() -> None:
    from model.muon import MuonAdamW

    flat = torch.nn.Parameter(torch.zeros(12))
    flat.grad = torch.ones(12)
    opt = MuonAdamW([{"params": [flat], "use_muon": True}], OptimConfig())
    with pytest.raises(ValueError, match="ZeRO-1/2 partitioned the parameters"):
        opt.step()


def test_adamw_groups_match_torch_adamw(debug_cfg: ModelConfig) -> None:
    model = GLMForCausalLM(debug_cfg)
    twin = GLMForCausalLM(debug_cfg)
    opt = build_optimizer(model, OptimConfig(lr=1e-2))
    _, adam = split_params(twin)
    decay = [p for _, p in adam if p.ndim >= 2]
    rest = [p for _, p in adam if p.ndim < 2]
    ref = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=False,
    )  # fmt: skip
    ids = torch.randint(0, debug_cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    for m, o in ((model, opt), (twin, ref)):  # one step: after it the Muon matrices (not in ref) differ
        m(ids, labels=ids).loss.backward()
        o.step()
    for _ in range(2):  # further steps on the same gradients exercise the moments and bias corrections
        opt.step()
        ref.step()
    mine, theirs = dict(model.named_parameters()), dict(twin.named_parameters())
    for name, _ in adam:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-5, atol=1e-6)
