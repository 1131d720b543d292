"""The paths of the eighth GPU round (docs/TRAIN_SPEED.md, "Prepared for round 8"; now the defaults on CUDA):
the router's top-k as fused argmax rounds with a one-hot load count (``set_router_topk("argmax")``), the fused head
+ loss in one block (``ce_chunk_size`` at least the rows) and the gather dispatch's expert ids sorted as uint8
(``set_moe_path(narrow_sort_keys=True)``). On CPU, in fp32, each must give the default path's numbers: the
same picks and load counts, logits, loss and every gradient. The norms outside the layer regions, compiled
(``compile_layers(norms=True)``), are traced here with ``aot_eager`` (no code generation: seconds on CPU)."""

from __future__ import annotations

import copy

import pytest
import torch

import model.glm as glm
from model.config import ModelConfig
from model.glm import GLMForCausalLM, layer_post
from model.loss import linear_cross_entropy
from model.moe import topk_by_argmax
from model.moe_dispatch import narrow_keys, sort_slots
from tests.model._inputs import _biased, _ids

DOC_LENS = [[5, 11, 3], [19]]  # row 0: three documents then 5 pads; row 1: one document, 5 pads
SEQ = 24


def _step(model: GLMForCausalLM, ids: torch.Tensor, **kw: object) -> tuple[torch.Tensor, ...]:
    model.zero_grad(set_to_none=True)
    out = model(ids, doc_lens=DOC_LENS, labels=ids, mtp_weight=0.3, aux_weight=1e-2, **kw)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits, out.loss.detach(), grads


def test_topk_by_argmax_equals_topk_without_ties() -> None:
    gen = torch.Generator().manual_seed(0)
    for t, e, k in ((50, 8, 2), (40, 64, 4), (7, 5, 5)):
        x = torch.randn(t, e, generator=gen)
        torch.testing.assert_close(topk_by_argmax(x, k), x.topk(k, dim=-1).indices, rtol=0, atol=0)
    # masked groups (-inf, as group-limited routing leaves them) are never picked while finite entries remain
    x = torch.randn(9, 16, generator=gen)
    x[:, 8:] = float("-inf")
    assert (topk_by_argmax(x, 4) < 8).all()
    torch.testing.assert_close(topk_by_argmax(x, 4), x.topk(4, dim=-1).indices, rtol=0, atol=0)


@pytest.mark.parametrize("dispatch", ["index", "gather"])
def test_router_argmax_equals_topk_in_the_model(debug_cfg: ModelConfig, dispatch: str) -> None:
    """Packed rows with padding, MTP and the aux loss: the same logits, loss, gradients (router included, through
    the gate weights and the aux loss) and load counts (pads left out) as torch's top-k."""
    base = _biased(GLMForCausalLM(debug_cfg)).set_moe_path(dispatch)
    fast = copy.deepcopy(base).set_router_topk("argmax")
    assert {r.topk_impl for r in fast.routers()} == {"argmax"}
    assert {r.topk_impl for r in base.routers()} == {"auto"}  # the default: torch's top-k on CPU
    ids = _ids(debug_cfg, 2, SEQ)
    logits_a, loss_a, grads_a = _step(base, ids)
    logits_b, loss_b, grads_b = _step(fast, ids)
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-7)
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    for ra, rb in zip(base.routers(), fast.routers(), strict=True):
        assert ra.load.sum() > 0
        assert torch.equal(ra.load, rb.load)
    with pytest.raises(ValueError, match="unknown router top-k"):
        fast.set_router_topk("sort")


def test_router_argmax_group_limited(debug_cfg: ModelConfig) -> None:
    """Group-limited routing (the masked groups at -inf): the same picks and counts."""
    cfg = debug_cfg.model_copy(update={"n_group": 2, "topk_group": 1})
    base = _biased(GLMForCausalLM(cfg))
    fast = copy.deepcopy(base).set_router_topk("argmax")
    ids = _ids(cfg, 2, SEQ, seed=3)
    _, loss_a, grads_a = _step(base, ids)
    _, loss_b, grads_b = _step(fast, ids)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-7)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    for ra, rb in zip(base.routers(), fast.routers(), strict=True):
        assert torch.equal(ra.load, rb.load)


def test_router_argmax_traces_into_one_graph(debug_cfg: ModelConfig) -> None:
    """The MoE region with the argmax top-k compiles without graph breaks (``fullgraph``, ``aot_eager``) and gives
    the eager numbers and load counts. In bf16 with grouped_mm, as on the GPU (the traced grouped_mm takes bf16
    only; the router stays fp32)."""
    if not hasattr(torch.nn.functional, "grouped_mm"):
        pytest.skip("this torch has no CPU grouped_mm")
    torch._dynamo.reset()
    model = _biased(GLMForCausalLM(debug_cfg, expert_impl="grouped_mm")).to(torch.bfloat16)
    for router in model.routers():
        router.float()
    model.set_router_topk("argmax").set_moe_path("gather")
    layer = model.model.layers[1]
    assert layer.is_moe
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, SEQ, debug_cfg.hidden_size, generator=gen).to(torch.bfloat16)
    attn = torch.randn(2, SEQ, debug_cfg.num_attention_heads * debug_cfg.head_dim, generator=gen).to(
        torch.bfloat16
    )
    valid = torch.ones(2, SEQ, dtype=torch.bool)
    valid[0, -5:] = False
    results = []
    for fn in (layer_post, torch.compile(layer_post, backend="aot_eager", fullgraph=True, dynamic=False)):
        model.zero_grad(set_to_none=True)
        layer.mlp.gate.load.zero_()
        xg = x.clone().requires_grad_()
        y, aux = fn(layer, xg, attn, valid, 1e-2)
        (y.float().square().mean() + aux).backward()
        results.append((y.detach(), xg.grad, layer.mlp.gate.weight.grad.clone(), layer.mlp.gate.load.clone()))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b.float(), a.float(), rtol=2e-2, atol=2e-3)
    assert torch.equal(results[1][3], results[0][3])  # the same picks counted
    assert results[0][3].sum() == debug_cfg.num_experts_per_tok * (2 * SEQ - 5)  # pads not counted
    torch._dynamo.reset()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_in_one_block_equals_the_blocked_loss(dtype: torch.dtype) -> None:
    """One block (chunk >= rows) gives the numbers of the blocked path with the same chunk size exactly (bf16
    included) and those of several blocks up to fp32 summation order; targets with ignored rows."""
    gen = torch.Generator().manual_seed(0)
    n, h, v = 37, 16, 50
    hs = torch.randn(n, h, generator=gen).to(dtype)
    w = (torch.randn(v, h, generator=gen) * 0.3).to(dtype)
    targets = torch.randint(0, v, (n,), generator=gen)
    targets[::5] = -100

    def run(chunk: int | None, weight_grad: bool = True) -> tuple[torch.Tensor, ...]:
        hh, ww = hs.clone().requires_grad_(), w.clone().requires_grad_(weight_grad)
        loss = linear_cross_entropy(hh, ww, targets, chunk)
        (loss * 0.37).backward()
        return loss.detach(), hh.grad, ww.grad

    one = run(n)
    huge = run(1 << 30)
    for a, b in zip(one, huge, strict=True):
        assert torch.equal(a, b)
    several = run(8)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-3}
    for a, b in zip(one, several, strict=True):
        torch.testing.assert_close(a.float(), b.float(), **tol)
    if dtype == torch.float32:  # against the plain logits + cross-entropy
        hh, ww = hs.clone().requires_grad_(), w.clone().requires_grad_()
        ref = torch.nn.functional.cross_entropy(hh @ ww.T, targets, ignore_index=-100, reduction="sum")
        (ref * 0.37).backward()
        for a, b in zip(one, (ref.detach(), hh.grad, ww.grad), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    loss, grad_h, grad_w = run(n, weight_grad=False)
    assert torch.equal(loss, one[0]) and torch.equal(grad_h, one[1]) and grad_w is None


def test_model_loss_in_one_block(debug_cfg: ModelConfig) -> None:
    """The model with ``ce_chunk_size`` above its rows (LM and MTP losses) gives the default blocks' loss and
    gradients (fp32)."""
    base = _biased(GLMForCausalLM(debug_cfg))
    base.ce_chunk_size = 7  # several blocks, the last one short
    fast = copy.deepcopy(base)
    fast.ce_chunk_size = 1 << 30
    ids = _ids(debug_cfg, 2, SEQ, seed=5)
    _, loss_a, grads_a = _step(base, ids, return_logits=False)
    _, loss_b, grads_b = _step(fast, ids, return_logits=False)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-7)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_compiled_norms_equal_eager(debug_cfg: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The final norm and the MTP layer's input and output norms through ``torch.compile`` (one graph each,
    ``fullgraph``): the eager logits, loss and gradients (fp32)."""
    torch._dynamo.reset()
    monkeypatch.setattr(glm, "NORM_COMPILE_KW", {"backend": "aot_eager", "dynamic": False, "fullgraph": True})
    monkeypatch.setattr(glm, "_NORM_FNS", [])
    base = _biased(GLMForCausalLM(debug_cfg))
    fast = copy.deepcopy(base)
    fast.compiled_norms = True  # what compile_layers(norms=True) sets, without compiling the layer regions
    fast.mtp_layer.compiled_norms = True
    assert not base.compile_layers(False, norms=True).compiled_norms  # norms follow enabled
    ids = _ids(debug_cfg, 2, SEQ, seed=2)
    logits_a, loss_a, grads_a = _step(base, ids)
    logits_b, loss_b, grads_b = _step(fast, ids)
    assert glm._NORM_FNS  # the compiled functions ran
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-7)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    torch._dynamo.reset()


def test_narrow_sort_keys_give_the_same_slots() -> None:
    """uint8 / int16 keys: the same order, rows, inverse and group ends as the int64 ids (ties: many slots per
    expert, so stability matters), with and without the shared group."""
    gen = torch.Generator().manual_seed(0)
    for t, k, e in ((300, 4, 64), (50, 2, 8), (40, 3, 300)):
        topk = torch.stack([torch.randperm(e, generator=gen)[:k] for _ in range(t)])
        assert narrow_keys(topk.reshape(-1), e).dtype == (torch.uint8 if e <= 256 else torch.int16)
        for shared in (False, True):
            want = sort_slots(topk, e, shared)
            got = sort_slots(topk, e, shared, narrow=True)
            for a, b in zip(want, got, strict=True):
                assert a.dtype == b.dtype and torch.equal(a, b)


def test_narrow_sort_keys_in_the_model(debug_cfg: ModelConfig) -> None:
    base = _biased(GLMForCausalLM(debug_cfg)).set_moe_path("gather")
    fast = copy.deepcopy(base).set_moe_path("gather", narrow_sort_keys=True)
    ids = _ids(debug_cfg, 2, SEQ, seed=4)
    logits_a, loss_a, grads_a = _step(base, ids)
    logits_b, loss_b, grads_b = _step(fast, ids)
    assert torch.equal(logits_b, logits_a) and torch.equal(loss_b, loss_a)
    for name, grad in grads_a.items():
        assert torch.equal(grads_b[name], grad), name


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_round8_paths_on_gpu_match_the_defaults() -> None:
    """bf16 on CUDA, compiled regions (inductor, Triton), whole rows and packed rows with MTP: every round-8 change
    together (argmax top-k, uint8 sort keys, the head + loss in one block, the compiled norms), now the CUDA
    defaults, gives the loss and gradients of the paths before round 8 (torch's top-k, int64 keys, several loss
    blocks, eager norms) within bf16 rounding and the same router picks (skipped without CUDA)."""
    from model.config import model_config

    cfg = model_config("debug", head_dim=64)
    base = _biased(GLMForCausalLM(cfg)).cuda().to(torch.bfloat16)
    for router in base.routers():
        router.float()
    fast = copy.deepcopy(base)  # the defaults: every round-8 change on CUDA
    base.set_router_topk("topk").set_moe_path("gather", narrow_sort_keys=False)
    base.ce_chunk_size = 64  # four blocks of the 2 x 128 rows
    base.compile_layers(norms=False)
    fast.compile_layers()
    ids = torch.randint(1, cfg.vocab_size, (2, 128), generator=torch.Generator().manual_seed(0)).cuda()
    for doc_lens in (None, [[37, 64, 27], [128]]):
        out = []
        for m in (base, fast):
            m.zero_grad(set_to_none=True)
            for router in m.routers():
                router.load.zero_()
            loss = m(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, return_logits=False).loss
            loss.backward()
            grads = {n: p.grad.float() for n, p in m.named_parameters() if p.grad is not None}
            out.append((loss.float(), grads, [r.load.clone() for r in m.routers()]))
        assert fast.compiled_norms is None and glm.norms_compiled(fast.compiled_norms, ids.device)
        torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-2, atol=1e-2)
        assert out[0][1].keys() == out[1][1].keys()
        for name, a in out[0][1].items():
            assert ((a - out[1][1][name]).norm() / a.norm().clamp(min=1e-12)) < 5e-2, name
        for a, b in zip(out[0][2], out[1][2], strict=True):
            assert torch.equal(a, b)
