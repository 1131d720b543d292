"""The speed paths of the fourth GPU round (docs/TRAIN_SPEED.md): the MoE ``gather`` dispatch (the default on CUDA,
``auto``) against ``index``, the shared expert fused into the grouped GEMM (opt-in), FlexAttention for packed rows
(opt-in), inductor options for the compiled regions (combo kernels by default on CUDA), and the removed
``cudnn_packed`` kernel refused with its reason. On CPU each must give the numbers of the default path (fp32, tight
tolerances); the CUDA tests (bf16, against varlen / the index path) skip without a GPU."""

from __future__ import annotations

import copy

import pytest
import torch

import model.glm as glm
from model.config import ModelConfig, model_config
from model.glm import GLMForCausalLM, layer_post
from model.moe_dispatch import gather_sum, permute, sort_slots, spread
from tests.model._inputs import _biased, _ids

DOC_LENS = [[5, 11, 3], [19]]  # row 0: three documents then 5 pads; row 1: one document, 5 pads
SEQ = 24


def _step(
    model: GLMForCausalLM, ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Logits, loss (lm + MTP + aux) and every gradient of one packed training forward + backward."""
    model.zero_grad(set_to_none=True)
    out = model(ids, doc_lens=DOC_LENS, labels=ids, mtp_weight=0.3, aux_weight=1e-2)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), out.loss.detach(), grads


@pytest.mark.parametrize("expert_impl", ["grouped_mm", "loop"])
@pytest.mark.parametrize("fuse_shared", [False, True])
def test_moe_gather_path_equals_index_path(
    debug_cfg: ModelConfig, expert_impl: str, fuse_shared: bool
) -> None:
    if expert_impl == "grouped_mm" and not hasattr(torch.nn.functional, "grouped_mm"):
        pytest.skip("this torch has no CPU grouped_mm")
    base = _biased(GLMForCausalLM(debug_cfg, expert_impl=expert_impl)).set_moe_path("index")  # type: ignore[arg-type]
    fast = copy.deepcopy(base).set_moe_path("gather", fuse_shared=fuse_shared)
    ids = _ids(debug_cfg, 2, SEQ)
    logits_a, loss_a, grads_a = _step(base, ids)
    logits_b, loss_b, grads_b = _step(fast, ids)
    torch.testing.assert_close(logits_b, logits_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for (
        name,
        grad,
    ) in grads_a.items():  # routed experts, shared expert, router (through the gate weights), ...
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-6, msg=name)
    for ra, rb in zip(base.routers(), fast.routers(), strict=True):
        assert torch.equal(ra.load, rb.load)  # the same picks counted


def test_spread_and_gather_sum_are_adjoint_gathers() -> None:
    """spread's backward is gather_sum and the other way round (gradcheck in float64), and they are each other's
    transpose: <spread(x), g> = <x, gather_sum(g)>, with and without the shared group."""
    gen = torch.Generator().manual_seed(0)
    t, k, e, h = 7, 3, 5, 4
    topk = torch.stack([torch.randperm(e, generator=gen)[:k] for _ in range(t)])
    for shared in (False, True):
        order, src, inv, ends = sort_slots(topk, e, shared)
        assert torch.equal(topk.reshape(-1)[order], topk.reshape(-1).sort(stable=True).values)
        assert torch.equal(order[inv], torch.arange(t * k))  # inv inverts order
        assert ends[-1].item() == t * k + (t if shared else 0) and ends.dtype == torch.int32
        x = torch.randn(t, h, dtype=torch.float64, generator=gen, requires_grad=True)
        g = torch.randn(src.shape[0], h, dtype=torch.float64, generator=gen, requires_grad=True)
        lhs = (spread(x, src, inv, k) * g).sum()
        rhs = (x * gather_sum(g, src, inv, k)).sum()
        torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
        assert torch.autograd.gradcheck(lambda x, src=src, inv=inv: spread(x, src, inv, k), (x,))
        assert torch.autograd.gradcheck(lambda g, src=src, inv=inv: gather_sum(g, src, inv, k), (g,))
        w = torch.randn(t * k, dtype=torch.float64, generator=gen, requires_grad=True)
        assert torch.autograd.gradcheck(lambda w, order=order, inv=inv: permute(w, order, inv), (w,))


def test_fuse_shared_needs_one_shared_expert_of_expert_width() -> None:
    cfg = model_config("debug", n_shared_experts=2)
    model = GLMForCausalLM(cfg).set_moe_path("gather", fuse_shared=True)
    with pytest.raises(ValueError, match="fuse_shared needs the shared expert as wide"):
        model(_ids(cfg, 1, 8))
    with pytest.raises(ValueError, match="unknown MoE dispatch"):
        model.set_moe_path("scatter")


@pytest.mark.parametrize("fuse_shared", [False, True])
def test_gather_path_traces_into_one_graph(debug_cfg: ModelConfig, fuse_shared: bool) -> None:
    """The MoE region compiles without graph breaks (``fullgraph``: the autograd Functions trace) and gives the eager
    numbers, forward and backward (``aot_eager``: dynamo and AOT autograd, no code generation, seconds on CPU). In
    bf16 with grouped_mm, as on the GPU (the traced grouped_mm takes bf16 only; the router stays fp32)."""
    if not hasattr(torch.nn.functional, "grouped_mm"):
        pytest.skip("this torch has no CPU grouped_mm")
    torch._dynamo.reset()
    model = _biased(GLMForCausalLM(debug_cfg, expert_impl="grouped_mm")).to(torch.bfloat16)
    for router in model.routers():
        router.float()
    model.set_moe_path("gather", fuse_shared=fuse_shared)
    layer = model.model.layers[1]
    assert layer.is_moe
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, SEQ, debug_cfg.hidden_size, generator=gen).to(torch.bfloat16)
    attn = torch.randn(2, SEQ, debug_cfg.num_attention_heads * debug_cfg.head_dim, generator=gen).to(
        torch.bfloat16
    )
    valid = torch.ones(2, SEQ, dtype=torch.bool)
    results = []
    for fn in (layer_post, torch.compile(layer_post, backend="aot_eager", fullgraph=True, dynamic=False)):
        model.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_()
        y, aux = fn(layer, xg, attn, valid, 1e-2)
        (y.float().square().mean() + aux).backward()
        results.append((y.detach(), xg.grad, layer.mlp.experts.gate_up_proj.grad.clone()))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(b.float(), a.float(), rtol=2e-2, atol=2e-3)
    torch._dynamo.reset()


@pytest.mark.skipif(glm._flex_attention is None, reason="torch has no FlexAttention")
@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
def test_flex_packed_logits_equal_each_document_alone(debug_cfg: ModelConfig) -> None:
    """attn_impl='flex': the same-document causal block mask gives each document's logits alone and the masked
    SDPA path's logits (CPU: forward only, torch has no FlexAttention backward on CPU)."""
    model = _biased(GLMForCausalLM(debug_cfg, attn_impl="flex")).eval()
    ref = copy.deepcopy(model)
    for layer in ref.model.layers:
        layer.self_attn.attn_impl = "sdpa"
    ids = _ids(debug_cfg, 2, SEQ)
    with torch.no_grad():
        packed = model(ids, doc_lens=DOC_LENS).logits
        torch.testing.assert_close(packed, ref(ids, doc_lens=DOC_LENS).logits, rtol=1e-5, atol=1e-5)
        for row, lens in enumerate(DOC_LENS):
            start = 0
            for n in lens:
                alone = model(ids[row : row + 1, start : start + n]).logits[0]  # whole rows: SDPA
                torch.testing.assert_close(packed[row, start : start + n], alone, rtol=1e-5, atol=1e-5)
                start += n


def _dense_blocks(num: torch.Tensor, idx: torch.Tensor, n: int) -> torch.Tensor:
    """[B, 1, n, n] bool of the kv blocks a BlockMask lists for each q block."""
    out = torch.zeros(idx.shape[0], 1, n, n, dtype=torch.bool)
    for b in range(idx.shape[0]):
        for i in range(n):
            out[b, 0, i, idx[b, 0, i, : num[b, 0, i]].long()] = True
    return out


@pytest.mark.skipif(glm._flex_attention is None, reason="torch has no FlexAttention")
def test_doc_block_mask_equals_create_block_mask() -> None:
    """The block mask built from block segment ranges lists the same partial and full blocks as FlexAttention's
    create_block_mask evaluating every pair, for seeded random layouts (lengths not multiples of the block, rows
    ending in padding, documents spanning blocks)."""
    from torch.nn.attention.flex_attention import create_block_mask

    gen = torch.Generator().manual_seed(0)
    for trial in range(8):
        s = int(torch.randint(1, 600, (1,), generator=gen))
        rows = []
        for _ in range(3):
            lens, left = [], s
            while left > 0:
                lens.append(min(left, int(torch.randint(1, 300, (1,), generator=gen))))
                left -= lens[-1]
            rows.append(lens[:-1] if len(lens) > 1 and trial % 2 else lens)
        seg = glm.doc_layout(rows, 3, s, "cpu").segment_ids

        def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
            return (seg[b, q] == seg[b, kv]) & (q >= kv)  # noqa: B023 - used inside this iteration only

        ref, got, n = (
            create_block_mask(mask_mod, 3, None, s, s, device="cpu"),
            glm.doc_block_mask(seg),
            -(-s // 128),
        )
        for num, idx in (("kv_num_blocks", "kv_indices"), ("full_kv_num_blocks", "full_kv_indices")):
            assert torch.equal(getattr(got, num), getattr(ref, num)), (s, rows)
            dense_got = _dense_blocks(getattr(got, num), getattr(got, idx), n)
            assert torch.equal(dense_got, _dense_blocks(getattr(ref, num), getattr(ref, idx), n)), (s, rows)


def test_removed_and_unknown_attn_impl_are_refused(debug_cfg: ModelConfig) -> None:
    """cudnn_packed (NaN gradients on the H200) is refused when the model is built, saying why and what to use; an
    unknown name lists the kernels there are."""
    with pytest.raises(ValueError, match="cudnn_packed.*NaN gradients.*use 'auto'"):
        GLMForCausalLM(debug_cfg, attn_impl="cudnn_packed")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown attn_impl 'fa3': use one of auto, sdpa"):
        GLMForCausalLM(debug_cfg, attn_impl="fa3")  # type: ignore[arg-type]


def test_moe_dispatch_auto_is_gather_on_cuda_index_elsewhere(debug_cfg: ModelConfig) -> None:
    """``auto`` (the default) resolves to gather on CUDA and index on CPU, where the default model gives the index
    path's bits; fuse_shared always runs the gather path; index stays selectable."""
    model = _biased(GLMForCausalLM(debug_cfg))
    moe = model.model.layers[1].mlp
    assert moe.dispatch == "auto"
    assert moe.resolved_dispatch(torch.device("cuda")) == "gather"
    assert moe.resolved_dispatch(torch.device("cpu")) == "index"
    moe.fuse_shared = True
    assert moe.resolved_dispatch(torch.device("cpu")) == "gather"
    moe.fuse_shared = False
    index = copy.deepcopy(model).set_moe_path("index")
    assert index.model.layers[1].mlp.resolved_dispatch(torch.device("cuda")) == "index"
    ids = _ids(debug_cfg, 2, SEQ)
    logits_a, loss_a, grads_a = _step(model, ids)
    logits_b, loss_b, grads_b = _step(index, ids)
    assert torch.equal(logits_a, logits_b) and torch.equal(loss_a, loss_b)
    assert all(torch.equal(grads_a[n], grads_b[n]) for n in grads_a)


def test_compile_options_and_mode_are_exclusive(debug_cfg: ModelConfig) -> None:
    model = GLMForCausalLM(debug_cfg)
    with pytest.raises(ValueError, match="a mode or inductor options"):
        model.compile_layers(mode="max-autotune", options={"combo_kernels": True})
    model.compile_layers(options={"combo_kernels": True})
    assert model.model.layers[0].compile_options == (("combo_kernels", True),)
    assert glm._compiled_regions(None, (("combo_kernels", True),)) is glm._compiled_regions(
        None, (("combo_kernels", True),)
    )


def test_region_options_default_to_combo_kernels_on_cuda_only() -> None:
    """Compiled regions without a mode or options take combo kernels on CUDA and nothing elsewhere; a mode, given
    options, or ``{}`` (none) are kept as given."""
    cuda_dev, cpu_dev = torch.device("cuda"), torch.device("cpu")
    assert glm.region_options(None, None, cuda_dev) == (("combo_kernels", True),)
    assert glm.region_options(None, None, cpu_dev) is None
    assert glm.region_options("max-autotune-no-cudagraphs", None, cuda_dev) is None
    assert glm.region_options(None, (), cuda_dev) is None
    assert glm.region_options(None, (("combo_kernels", False),), cuda_dev) == (("combo_kernels", False),)
    model = GLMForCausalLM(model_config("debug")).compile_layers(options={})
    assert model.model.layers[0].compile_options == ()


# -- CUDA (bf16): skipped without a GPU ------------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _packed_cuda_grads(
    model: GLMForCausalLM, ids: torch.Tensor, doc_lens: list[list[int]]
) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(ids, doc_lens=doc_lens, labels=ids, return_logits=False).loss.backward()
    attn = model.model.layers[1].self_attn
    return [p.grad.float() for p in (attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight)]


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("impl", ["flex"])
def test_packed_kernels_match_varlen_on_gpu(impl: str) -> None:
    """Packed rows (GQA 2:1, head_dim 64) on FlexAttention: logits of each document alone, the varlen path's logits,
    and its q/k/v gradients within bf16 rounding (finite: cuDNN's ragged kernel was removed for NaN gradients)."""
    if impl == "flex" and glm._flex_attention is None:
        pytest.skip("no FlexAttention")
    cfg = model_config("debug", head_dim=64)
    model = GLMForCausalLM(cfg, attn_impl=impl).cuda().to(torch.bfloat16)  # type: ignore[arg-type]
    ref = copy.deepcopy(model)
    for layer in ref.model.layers:
        layer.self_attn.attn_impl = "varlen"
    doc_lens = [[37, 64, 11], [128], [100, 20]]  # the last row ends in 8 pads
    ids = torch.randint(1, cfg.vocab_size, (3, 128), generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        packed = model.eval()(ids, doc_lens=doc_lens).logits.float()
        torch.testing.assert_close(
            packed, ref.eval()(ids, doc_lens=doc_lens).logits.float(), rtol=2e-2, atol=2e-2
        )
        for row, lens in enumerate(doc_lens):
            start = 0
            for n in lens:
                alone = ref(ids[row : row + 1, start : start + n]).logits[0].float()
                torch.testing.assert_close(packed[row, start : start + n], alone, rtol=2e-2, atol=2e-2)
                start += n
    grads = [_packed_cuda_grads(m.train(), ids, doc_lens) for m in (model, ref)]
    for a, b in zip(*grads, strict=True):
        assert torch.isfinite(a).all()
        assert ((a - b).norm() / b.norm()) < 3e-2


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("fuse_shared", [False, True])
def test_gather_path_on_gpu_matches_index_path(fuse_shared: bool) -> None:
    """bf16 grouped GEMM on CUDA, compiled regions: the gather path's loss and expert gradients equal the index
    path's within bf16 rounding (fp32 router: the same picks up to near-ties)."""
    cfg = model_config("debug", head_dim=64)
    base = _biased(GLMForCausalLM(cfg)).cuda().to(torch.bfloat16).set_moe_path("index")
    for router in base.routers():
        router.float()
    fast = copy.deepcopy(base).set_moe_path("gather", fuse_shared=fuse_shared)
    ids = torch.randint(1, cfg.vocab_size, (2, 128), generator=torch.Generator().manual_seed(0)).cuda()
    doc_lens = [[37, 64, 27], [128]]
    out = []
    for m in (base, fast):
        m.compile_layers()
        m.zero_grad(set_to_none=True)
        loss = m(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, return_logits=False).loss
        loss.backward()
        experts = m.model.layers[1].mlp.experts
        out.append((loss.float(), experts.gate_up_proj.grad.float(), experts.down_proj.grad.float()))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-2, atol=1e-2)
    for a, b in zip(out[0][1:], out[1][1:], strict=True):
        assert ((a - b).norm() / a.norm()) < 5e-2
