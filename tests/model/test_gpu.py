"""The CUDA paths of model/: varlen attention over packed rows, grouped-GEMM experts, bf16 Newton-Schulz, the fused
head + loss, and one bf16 training step of the small flavour. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

import model.glm as glm
from model.config import model_config
from model.glm import GLMForCausalLM, _varlen_attn

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _ids(vocab: int, *shape: int) -> torch.Tensor:
    return torch.randint(1, vocab, shape, generator=torch.Generator().manual_seed(0)).cuda()


@pytest.mark.skipif(_varlen_attn is None, reason="torch has no torch.nn.attention.varlen")
def test_varlen_packed_logits_equal_each_document_alone() -> None:
    cfg = model_config("debug")
    model = GLMForCausalLM(cfg).cuda().to(torch.bfloat16).eval()
    doc_lens = [[37, 64, 11], [128]]
    ids = _ids(cfg.vocab_size, 2, 128)
    with torch.no_grad():
        varlen = model(ids, doc_lens=doc_lens).logits.float()
        for layer in model.model.layers:
            layer.self_attn.attn_impl = "sdpa"
        masked = model(ids, doc_lens=doc_lens).logits.float()
        torch.testing.assert_close(varlen, masked, rtol=2e-2, atol=2e-2)
        for row, lens in enumerate(doc_lens):
            start = 0
            for n in lens:
                alone = model(ids[row : row + 1, start : start + n]).logits[0].float()
                torch.testing.assert_close(varlen[row, start : start + n], alone, rtol=2e-2, atol=2e-2)
                start += n
    grads = []  # GQA (4 heads, 2 kv heads): the kv gradients of the flash path equal the SDPA path's
    for impl in ("auto", "sdpa"):
        for layer in model.model.layers:
            layer.self_attn.attn_impl = impl
        model.zero_grad(set_to_none=True)
        model(ids, doc_lens=doc_lens, labels=ids, return_logits=False).loss.backward()
        attn = model.model.layers[1].self_attn
        grads.append([attn.k_proj.weight.grad.float(), attn.v_proj.weight.grad.float()])
    for a, b in zip(*grads, strict=True):
        assert ((a - b).norm() / b.norm()) < 3e-2


@pytest.mark.skipif(not glm.cudnn_attention_available(torch.device("cuda")), reason="no cuDNN attention")
def test_cudnn_attention_on_whole_rows_matches_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows without doc_lens: ``auto`` takes cuDNN's fused kernel (GQA 2:1 here), with the logits and the k/v
    gradients of exact SDPA; packed rows still go to varlen."""
    cfg = model_config("debug", head_dim=64)
    model = GLMForCausalLM(cfg).cuda().to(torch.bfloat16)
    ids = _ids(cfg.vocab_size, 2, 256)
    calls = []
    real = glm._cudnn_causal
    monkeypatch.setattr(glm, "_cudnn_causal", lambda *a: calls.append(1) or real(*a))
    results = []
    for impl in ("auto", "sdpa"):
        for layer in model.model.layers:
            layer.self_attn.attn_impl = impl
        model.zero_grad(set_to_none=True)
        out = model(ids, labels=ids)
        out.loss.backward()
        attn = model.model.layers[1].self_attn
        results.append((out.logits.float(), attn.k_proj.weight.grad.float(), attn.v_proj.weight.grad.float()))
    assert len(calls) == cfg.num_hidden_layers  # auto: every layer through cuDNN, sdpa: none
    torch.testing.assert_close(results[0][0], results[1][0], rtol=2e-2, atol=2e-2)
    for a, b in zip(results[0][1:], results[1][1:], strict=True):
        assert ((a - b).norm() / b.norm()) < 3e-2
    calls.clear()
    for layer in model.model.layers:
        layer.self_attn.attn_impl = "auto"
    with torch.no_grad():
        model(ids, doc_lens=[[100, 156], [256]])
    assert not calls  # packed rows: varlen


def test_grouped_mm_experts_match_loop_in_bf16() -> None:
    cfg = model_config("tiny")
    outs = {}
    for impl in ("loop", "grouped_mm"):
        model = GLMForCausalLM(cfg, expert_impl=impl).cuda().to(torch.bfloat16)
        ids = _ids(cfg.vocab_size, 2, 256)
        out = model(ids, labels=ids, return_logits=False)
        out.loss.backward()
        outs[impl] = (out.loss.float().item(), model.model.layers[1].mlp.experts.down_proj.grad.float())
    assert outs["loop"][0] == pytest.approx(outs["grouped_mm"][0], rel=1e-2)
    torch.testing.assert_close(outs["loop"][1], outs["grouped_mm"][1], rtol=5e-2, atol=5e-3)


def test_small_bf16_train_step_with_muon() -> None:
    from model.muon import build_optimizer, clip_and_step

    cfg = model_config("small")
    model = GLMForCausalLM(cfg).cuda().to(torch.bfloat16)
    for router in model.routers():
        router.float()
    opt = build_optimizer(model)
    ids = _ids(cfg.vocab_size, 2, 1024)
    doc_lens = [[300, 500, 224], [1000]]
    losses = []
    for _ in range(3):
        out = model(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, aux_weight=1e-4, return_logits=False)
        out.loss.backward()
        norm = clip_and_step(opt, 1.0)
        vios = model.update_router_biases(1e-3)
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.float().item())
    assert all(torch.isfinite(torch.tensor(losses))) and norm > 0
    assert len(vios) == cfg.num_hidden_layers - cfg.first_k_dense_replace + 1
    assert losses[-1] < losses[0], losses
    print("small bf16 losses", losses, "peak GiB", torch.cuda.max_memory_allocated() / 2**30)


def test_compiled_layers_match_eager_in_bf16() -> None:
    """Compiled regions compute the eager model's loss and gradients. The routers get zero weights and distinct
    correction biases, so both pick the same experts (bf16 rounding would otherwise flip near-tied picks and move
    whole tokens' gradients between experts); the gate weights and everything else stay live."""
    cfg = model_config("tiny")
    ids = _ids(cfg.vocab_size, 2, 256)
    results = []
    for compiled in (False, True):
        model = GLMForCausalLM(cfg).cuda().to(torch.bfloat16).compile_layers(compiled)
        with torch.no_grad():
            for router in model.routers():
                router.float()
                router.weight.zero_()
                router.e_score_correction_bias.copy_(torch.linspace(0.0, 0.1, router.n_experts))
        for lens in ([[256], [128, 128]], [[100, 156], [30, 200, 26]]):  # a new layout reuses the graphs
            model.zero_grad(set_to_none=True)
            out = model(ids, doc_lens=lens, labels=ids, mtp_weight=0.3, aux_weight=1e-4, return_logits=False)
            out.loss.backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.loss.float().item(), out.mtp_loss.float().item(), grads))
    (loss_e, mtp_e, grads_e), (loss_c, mtp_c, grads_c) = results
    assert loss_c == pytest.approx(loss_e, rel=1e-2) and mtp_c == pytest.approx(mtp_e, rel=1e-2)
    assert grads_e.keys() == grads_c.keys()
    rel = {n: float((grads_c[n] - grads_e[n]).norm() / grads_e[n].norm().clamp(min=1e-12)) for n in grads_e}
    worst = sorted(rel.items(), key=lambda kv: -kv[1])[:5]
    assert worst[0][1] < 5e-2, worst


def test_training_step_never_waits_for_the_gpu() -> None:
    """Forward and backward of a packed bf16 step (grouped GEMM experts, varlen attention, fused head + loss, MTP,
    load counts, aux loss) launch without a host sync: CUDA's sync debug mode turns any into an error."""
    cfg = model_config("debug")
    model = GLMForCausalLM(cfg).cuda().to(torch.bfloat16).train()
    for router in model.routers():
        router.float()
    ids = _ids(cfg.vocab_size, 2, 128)
    doc_lens = [[37, 64, 11], [128]]
    model(
        ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, aux_weight=1e-4, return_logits=False
    ).loss.backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = model(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, aux_weight=1e-4, return_logits=False)
        out.loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.isfinite(out.loss).item() and out.n_tokens > 0


@pytest.mark.skipif(_varlen_attn is None, reason="torch has no torch.nn.attention.varlen")
def test_varlen_in_an_fp32_model_casts_for_the_kernel_and_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """An fp32 model with attn_impl='varlen': q/k/v reach the flash kernel in bf16, the output and the gradients
    come back in fp32, within bf16 attention's error of exact fp32 SDPA; 'auto' keeps fp32 on SDPA."""
    import model.glm as glm

    kernel_dtypes: list[tuple[torch.dtype, ...]] = []
    real = glm._varlen_attn

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: object, **kw: object) -> torch.Tensor:
        kernel_dtypes.append((q.dtype, k.dtype, v.dtype))
        return real(q, k, v, *args, **kw)

    monkeypatch.setattr(glm, "_varlen_attn", spy)
    cfg = model_config("debug")
    model = GLMForCausalLM(cfg).cuda().float()
    doc_lens = [[37, 64, 11], [128]]
    ids = _ids(cfg.vocab_size, 2, 128)

    def run(impl: str) -> tuple[torch.Tensor, torch.Tensor]:
        for layer in model.model.layers:
            layer.self_attn.attn_impl = impl
        model.zero_grad(set_to_none=True)
        out = model(ids, doc_lens=doc_lens, labels=ids)
        out.loss.backward()
        return out.logits.detach(), model.model.layers[1].self_attn.k_proj.weight.grad

    varlen_logits, varlen_grad = run("varlen")
    assert kernel_dtypes and set(kernel_dtypes) == {(torch.bfloat16,) * 3}
    assert varlen_logits.dtype == varlen_grad.dtype == torch.float32
    assert bool(torch.isfinite(varlen_grad).all())
    calls = len(kernel_dtypes)
    exact_logits, exact_grad = run("sdpa")
    torch.testing.assert_close(varlen_logits, exact_logits, rtol=2e-2, atol=2e-2)
    assert ((varlen_grad - exact_grad).norm() / exact_grad.norm()) < 3e-2
    auto_logits, _ = run("auto")
    assert len(kernel_dtypes) == calls  # auto: no flash call in fp32
    torch.testing.assert_close(auto_logits, exact_logits, rtol=1e-4, atol=1e-4)
