"""Round-10 glue paths (model/kernels/, model/zero_grad_norm.py): each gives the default path's values.

- ``swiglu``: the same forward bytes as ``silu(gate) * up (* w)``; its ``cat``-free backward equals autograd's in fp32
  (1e-6; the weight's gradient, a sum, 1e-5) and float64 (gradcheck), and in bf16 is at least as close to the float64 truth as autograd's bf16 chain (and within one bf16 rounding
  of it);
- ``apply_rope_flip``: bit for bit ``apply_rope``'s values and input gradient (fp32 and bf16, partial and full
  rotary dims);
- both traced as one graph (``fullgraph``, ``aot_eager``);
- the model with them on (``set_fused_glue``; MoE on the gather path, where the fused SwiGLU applies) gives the
  default model's logits, loss and every gradient (fp32), and the same logits bit for bit with RoPE alone;
- the Triton SwiGLU backward equals the PyTorch one, and the Triton QK-norm + RoPE (forward and backward) equals
  ``apply_rope(RMSNorm(x))`` with autograd, under Triton's interpreter, and the model with both gives the default
  model's logits, loss and gradients there; all three kernels compile for sm_90 with 16-byte vector loads (these
  skip without ``triton``);
- DeepSpeed's gradient norm by ``foreach_grad_norm_direct`` equals DeepSpeed's fp64 norm (1e-6) under ZeRO-1 bf16
  (the entry point's config, CPU accelerator over gloo, in a subprocess; ``slow``).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from model.config import ModelConfig
from model.glm import GLMForCausalLM, apply_rope
from model.kernels import set_fused_glue
from model.kernels.rope import apply_rope_flip, flip_rope_supported
from model.kernels.swiglu import swiglu, swiglu_backward
from tests.model._inputs import autograd_ops

ROOT = Path(__file__).resolve().parents[2]


def _default_swiglu(gate_up: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    h = F.silu(gate) * up
    return h if w is None else h * w[..., None]


def _grads(fn, gate_up: torch.Tensor, w: torch.Tensor | None, grad: torch.Tensor):  # type: ignore[no-untyped-def]
    a = gate_up.detach().clone().requires_grad_()
    b = None if w is None else w.detach().clone().requires_grad_()
    out = fn(a, b)
    out.backward(grad)
    return out.detach(), a.grad, None if b is None else b.grad


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_forward_is_bitwise_and_backward_matches(weighted: bool, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    gate_up = (torch.randn(37, 2 * 24, generator=gen) * 2).to(dtype)
    w = torch.rand(37, generator=gen).to(dtype) if weighted else None
    grad = torch.randn(37, 24, generator=gen).to(dtype)
    out_ref, dgu_ref, dw_ref = _grads(_default_swiglu, gate_up, w, grad)
    out, dgu, dw = _grads(swiglu, gate_up, w, grad)
    assert torch.equal(out, out_ref)  # the same ops forward
    if dtype == torch.float32:
        torch.testing.assert_close(dgu, dgu_ref, rtol=1e-6, atol=1e-6)
        if weighted:
            torch.testing.assert_close(
                dw, dw_ref, rtol=1e-5, atol=1e-5
            )  # a sum over 24 products, reassociated
        return
    # bf16: autograd rounds each op's result to bf16, the fused backward only its outputs; both against float64
    _, dgu64, dw64 = _grads(
        _default_swiglu, gate_up.double(), None if w is None else w.double(), grad.double()
    )
    for got, ref, exact in ((dgu, dgu_ref, dgu64), (dw, dw_ref, dw64)):
        if exact is None:
            continue
        err_fused = (got.double() - exact).norm()
        err_default = (ref.double() - exact).norm()
        assert err_fused <= err_default * 1.01 + 1e-12, (float(err_fused), float(err_default))
        # and within bf16's rounding of the truth (the output is the fp32 result rounded once)
        torch.testing.assert_close(got.double(), exact, rtol=8e-3, atol=1e-5)


def test_swiglu_gradcheck_and_leading_dims() -> None:
    gen = torch.Generator().manual_seed(1)
    gate_up = torch.randn(2, 3, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    w = torch.rand(2, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(swiglu, (gate_up, w))
    assert torch.autograd.gradcheck(lambda x: swiglu(x), (gate_up,))
    d_gu, d_w = swiglu_backward(torch.ones(2, 3, 4, dtype=torch.float64), gate_up.detach(), None)
    assert d_gu.shape == gate_up.shape and d_w is None
    with pytest.raises(ValueError, match="equal width"):
        swiglu(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="one value per row"):
        swiglu(torch.zeros(4, 6), torch.zeros(3))


def _tables(b: int, s: int, rot: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.arange(s).repeat(b, 1)
    freqs = pos[..., None].float() / (10000 ** (torch.arange(0, rot, 2).float() / rot))
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


@pytest.mark.parametrize("rot,head_dim", [(64, 128), (8, 16), (16, 16), (4, 16)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_flip_is_bitwise(rot: int, head_dim: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 9, 3, head_dim, generator=gen).to(dtype)
    cos, sin = _tables(2, 9, rot, dtype)
    grad = torch.randn(2, 9, 3, head_dim, generator=gen).to(dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_ref, out = apply_rope(a, cos, sin), apply_rope_flip(b, cos, sin)
    assert torch.equal(out, out_ref)
    out_ref.backward(grad)
    out.backward(grad)
    assert torch.equal(b.grad, a.grad)


def test_rope_flip_refuses_unsupported_shapes() -> None:
    assert (
        flip_rope_supported(128, 64) and not flip_rope_supported(128, 48) and not flip_rope_supported(12, 3)
    )
    cos, sin = _tables(1, 4, 6, torch.float32)
    with pytest.raises(ValueError, match="even rotary dim dividing"):
        apply_rope_flip(torch.zeros(1, 4, 2, 16), cos, sin)


def test_both_trace_as_one_graph() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 4, 16, dtype=torch.bfloat16, generator=gen)
    cos, sin = _tables(2, 5, 8, torch.bfloat16)
    gate_up = torch.randn(40, 12, dtype=torch.bfloat16, generator=gen)
    w = torch.rand(40, dtype=torch.bfloat16, generator=gen)

    def fn(x, gate_up, w):  # type: ignore[no-untyped-def]
        return apply_rope_flip(x, cos, sin), swiglu(gate_up, w)

    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True)
    args = [t.clone().requires_grad_() for t in (x, gate_up, w)]
    ref_args = [t.clone().requires_grad_() for t in (x, gate_up, w)]
    outs, refs = compiled(*args), fn(*ref_args)
    for o, r in zip(outs, refs, strict=True):
        assert torch.equal(o, r)
    sum(o.float().sum() for o in outs).backward()
    sum(r.float().sum() for r in refs).backward()
    for a, r in zip(args, ref_args, strict=True):
        assert torch.equal(a.grad, r.grad)


def _step(
    model: GLMForCausalLM, ids: torch.Tensor, doc_lens: list[list[int]] | None = None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], set[str]]:
    model.zero_grad(set_to_none=True)
    out = model(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, aux_weight=1e-3)
    ops = autograd_ops(out.loss)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), out.loss.detach(), grads, ops


def test_model_with_fused_glue_equals_default(debug_cfg: ModelConfig) -> None:
    """fp32, debug flavour (MoE layers, a dense layer, MTP, aux loss), MoE on the gather path (where the fused
    SwiGLU replaces the routed experts' SwiGLU; the shared experts and the dense MLP take it too)."""
    gen = torch.Generator().manual_seed(4)
    ids = torch.randint(0, debug_cfg.vocab_size, (2, 24), generator=gen)
    base = GLMForCausalLM(debug_cfg, seed=0)
    base.set_moe_path("gather")
    for router in base.routers():  # biased routers: no near-ties between the picks
        router.e_score_correction_bias.copy_(torch.linspace(-0.5, 0.5, router.n_experts))
    fused = set_fused_glue(copy.deepcopy(base), swiglu=True, rope=True)
    doc_lens = [[10, 14], [24]]  # packed documents in one row, a whole row in the other
    logits_ref, loss_ref, grads_ref, ops_ref = _step(base, ids, doc_lens)
    logits, loss, grads, ops = _step(fused, ids, doc_lens)
    assert "_SwiGLUBackward" in ops and "FlipBackward0" in ops  # the new paths ran
    assert "_SwiGLUBackward" not in ops_ref and "FlipBackward0" not in ops_ref
    torch.testing.assert_close(logits, logits_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-6, atol=1e-6)
    assert grads.keys() == grads_ref.keys()
    for name, g in grads_ref.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-5, atol=1e-6, msg=name)
    rope_only = set_fused_glue(copy.deepcopy(base), rope=True)
    assert torch.equal(
        _step(rope_only, ids, doc_lens)[0], logits_ref
    )  # RoPE without cat: the same values, bit for bit
    with pytest.raises(ValueError, match="no attention, MLP or expert"):
        set_fused_glue(torch.nn.Linear(2, 2))


def test_model_regions_with_fused_glue_trace_as_one_graph(debug_cfg: ModelConfig) -> None:
    """What the compiled regions hold with the PyTorch round-10 paths on: the attention's projection (QK-norm,
    RoPE without cat, v contiguous) and the MoE block on the gather path (routed, shared SwiGLU) each trace as one
    graph (``fullgraph``, ``aot_eager``, bf16) and run backward."""
    model = GLMForCausalLM(debug_cfg, seed=0).to(torch.bfloat16)
    model.set_moe_path("gather")
    set_fused_glue(model, swiglu=True, rope=True)
    layer = model.model.layers[1]
    x = torch.randn(2, 16, debug_cfg.hidden_size, dtype=torch.bfloat16, requires_grad=True)
    cos, sin = model.model.rotary_emb(torch.arange(16).repeat(2, 1), torch.bfloat16)
    q, k, v = torch.compile(layer.self_attn.project, backend="aot_eager", fullgraph=True)(x, cos, sin)
    assert v.is_contiguous()
    y, _ = torch.compile(layer.mlp, backend="aot_eager", fullgraph=True)(x)
    (q.float().sum() + k.float().sum() + v.float().sum() + y.float().sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad.float()).all()


_DS_SCRIPT = r"""
import json, os, socket, sys
import torch
sys.path.insert(0, os.environ["ROOT"])
import deepspeed
from model.config import model_config
from model.glm import GLMForCausalLM
from model.train.main import _skip_op_builds, cuda_step_defaults, ds_config

_skip_op_builds()  # as the entry point on CPU: no JIT build of DeepSpeed's shared-memory all-reduce (unused here)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
deepspeed.init_distributed(dist_backend="gloo", verbose=False)
torch.set_num_threads(1)
cfg = model_config("debug")
gen = torch.Generator().manual_seed(0)
batches = [torch.randint(0, cfg.vocab_size, (2, 16), generator=gen) for _ in range(2)]
out = {}
for foreach in (False, True):
    model = GLMForCausalLM(cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    config = ds_config(global_batch=4, micro_batch=2, world=1, zero_stage=1, clip=1.0, optimizer="adamw",
                       precision="bf16")
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
    installed = cuda_step_defaults(engine, cuda=True) if foreach else None  # what the entry point does on CUDA
    calls = []
    inner = engine.optimizer.get_grad_norm_direct
    def counted(*a, **k):
        calls.append(1)
        return inner(*a, **k)
    engine.optimizer.get_grad_norm_direct = counted
    norms = []
    for _ in range(2):
        for ids in batches:
            engine.backward(engine(ids, labels=ids, return_logits=False).loss)
            engine.step()
        norms.append(float(engine.get_global_grad_norm()))
    out[foreach] = {"norms": norms, "installed": installed, "calls": len(calls), "optimizer": type(engine.optimizer).__name__,
                    "weights": {n: p.detach().float().clone() for n, p in model.named_parameters()}}
# the norm itself on made-up gradients: finite, and with a NaN (DeepSpeed masks a non-finite norm to -1)
from model.zero_grad_norm import foreach_grad_norm_direct
opt = engine.optimizer
params = [torch.nn.Parameter(torch.zeros(5)), torch.nn.Parameter(torch.zeros(3))]
fin = [torch.linspace(-2, 3, 5, dtype=torch.bfloat16), torch.tensor([0.5, -1.5, 7.0], dtype=torch.bfloat16)]
bad = [fin[0], torch.tensor([0.5, float("nan"), 7.0], dtype=torch.bfloat16)]
direct = {}
for tag, gs in (("finite", fin), ("nan", bad)):
    direct[tag] = [float(type(opt).get_grad_norm_direct(opt, gs, params)), float(foreach_grad_norm_direct(opt, gs, params))]
rel = max(abs(a - b) / abs(b) for a, b in zip(out[True]["norms"], out[False]["norms"]))
wdiff = max(float((out[True]["weights"][n] - t).abs().max()) for n, t in out[False]["weights"].items())
print(json.dumps({"rel": rel, "installed": out[True]["installed"], "calls": out[True]["calls"],
                  "optimizer": out[True]["optimizer"], "wdiff": wdiff, "norms": out[False]["norms"],
                  "norms_foreach": out[True]["norms"], "direct": direct}))
"""


_TRITON_SCRIPT = r"""
import json, os, sys
import torch
sys.path.insert(0, os.environ["ROOT"])
import model.kernels.swiglu_triton  # noqa: F401 - registers arcflow::swiglu_backward
from model.kernels.swiglu import swiglu, swiglu_backward
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
worst = {}
for dtype in (torch.float32, torch.bfloat16):
    for n, i, weighted in ((37, 200, True), (16, 128, False), (5, 24, True)):  # row and column tails
        gu = (torch.randn(n, 2 * i, generator=gen) * 2).to(dtype)
        grad = torch.randn(n, i, generator=gen).to(dtype)
        w = torch.rand(n, generator=gen).to(dtype) if weighted else None
        got = torch.ops.arcflow.swiglu_backward(grad, gu, w)
        want = swiglu_backward(grad, gu, w)
        for k, (a, b) in enumerate(zip(got, want)):
            if b is None:
                assert a.numel() == 0
                continue
            assert a.dtype == b.dtype and a.shape == b.shape
            rel = float(((a.float() - b.float()).abs() / (b.float().abs() + 1e-3)).max())
            key = f"{str(dtype)[6:]}-{'dgu' if k == 0 else 'dw'}"
            worst[key] = max(worst.get(key, 0.0), rel)
# the whole path: swiglu(impl="triton") under autograd, against the PyTorch backward (eager only: under the
# interpreter wrap_triton hands the kernel back as is, so fake tensors would reach it; on CUDA triton_op traces it)
gu = torch.randn(3, 7, 2 * 40, generator=gen, dtype=torch.float32)
w = torch.rand(3, 7, generator=gen)
def run(impl):
    a, b = gu.clone().requires_grad_(), w.clone().requires_grad_()
    (swiglu(a, b, impl) * torch.linspace(-1, 1, 40)).sum().backward()
    return a.grad, b.grad
path = max(float((x - y).abs().max()) for x, y in zip(run("triton"), run("torch")))
print(json.dumps({"worst": worst, "path": path}))
"""


def test_swiglu_triton_backward_in_the_interpreter() -> None:
    """The Triton backward (model/kernels/swiglu_triton.py) under ``TRITON_INTERPRET=1`` on CPU tensors, in a
    subprocess (the interpreter is chosen when the kernel is defined): equal to the PyTorch backward (fp32 1e-5
    relative; bf16 within one rounding), with row and column tails, with and without a weight, and through
    ``swiglu(impl="triton")`` under autograd (eager: the interpreter's kernel cannot be traced; on CUDA
    ``triton_op`` traces it, untested here). Skips without triton (the project does not depend on it)."""
    pytest.importorskip("triton")
    env = {**os.environ, "ROOT": str(ROOT), "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _TRITON_SCRIPT], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["worst"]["float32-dgu"] < 1e-5 and got["worst"]["float32-dw"] < 1e-5, got
    assert got["worst"]["bfloat16-dgu"] < 1.6e-2 and got["worst"]["bfloat16-dw"] < 1.6e-2, got
    assert got["path"] < 1e-5, got


_QKNORM_SCRIPT = r"""
import json, os, sys
import torch
sys.path.insert(0, os.environ["ROOT"])
from model.kernels.qknorm_rope_triton import qknorm_rope
from model.glm import RMSNorm, apply_rope
torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
worst = {}
for dtype in (torch.float32, torch.bfloat16):
    for d, rot, n in ((128, 64, 3), (16, 16, 2), (32, 8, 4)):  # partial and full rotary dims
        b, s = 2, 5
        qkv = torch.randn(b, s, n * d + 7 * d, generator=gen).to(dtype)  # q: a strided slice of a wider output
        pos = torch.arange(s).repeat(b, 1)
        freqs = pos[..., None].float() / (10000 ** (torch.arange(0, rot, 2).float() / rot))
        emb = torch.cat((freqs, freqs), -1)
        cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
        norm = RMSNorm(d, 1e-6).to(dtype)
        with torch.no_grad():
            norm.weight.copy_(torch.rand(d, generator=gen) + 0.5)
        a, c = qkv.clone().requires_grad_(), qkv.clone().requires_grad_()
        w = norm.weight.detach().clone().requires_grad_()
        xa = a[..., d : d + n * d].view(b, s, n, d)
        xc = c[..., d : d + n * d].view(b, s, n, d)
        ref = apply_rope(norm(xa), cos, sin)
        out = qknorm_rope(xc, w, cos, sin, 1e-6)
        grad = torch.randn(ref.shape, generator=gen).to(dtype)
        ref.backward(grad)
        out.backward(grad)
        for key, got, want in (("out", out, ref), ("dx", c.grad, a.grad), ("dw", w.grad, norm.weight.grad)):
            rel = float((got.float() - want.float()).abs().max() / want.float().abs().max())
            k = f"{str(dtype)[6:]}-{key}"
            worst[k] = max(worst.get(k, 0.0), rel)
        assert out.is_contiguous() and c.grad[..., :d].abs().max() == 0  # only q's columns get a gradient
print(json.dumps(worst))
"""


def test_qknorm_rope_triton_in_the_interpreter() -> None:
    """QK-norm + RoPE as one Triton kernel each way (model/kernels/qknorm_rope_triton.py) under
    ``TRITON_INTERPRET=1`` on CPU, against ``apply_rope(RMSNorm(x))`` of model/glm.py with autograd: output, x's
    gradient (x a strided slice of a wider q/k/v output) and the norm weight's gradient, partial and full rotary
    dims; fp32 within 1e-6 of the largest value, bf16 within two roundings (1/64). Skips without triton."""
    pytest.importorskip("triton")
    env = {**os.environ, "ROOT": str(ROOT), "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _QKNORM_SCRIPT], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-3000:]
    worst = json.loads(res.stdout.strip().splitlines()[-1])
    for key, rel in worst.items():
        # bf16: eager rounds each of the default's ops (norm, weight, two products, sum), the kernel its output once
        assert rel < (1e-6 if key.startswith("float32") else 1 / 64), worst


_MODEL_TRITON_SCRIPT = r"""
import copy, json, os, sys
import torch
sys.path.insert(0, os.environ["ROOT"])
from tests.model._inputs import autograd_ops
from model.config import model_config
from model.glm import GLMForCausalLM
from model.kernels import set_fused_glue
torch.set_num_threads(1)
cfg = model_config("debug")
ids = torch.randint(0, cfg.vocab_size, (2, 24), generator=torch.Generator().manual_seed(4))
doc_lens = [[10, 14], [24]]
base = GLMForCausalLM(cfg, seed=0)
base.set_moe_path("gather")
for router in base.routers():
    router.e_score_correction_bias.copy_(torch.linspace(-0.5, 0.5, router.n_experts))
fused = set_fused_glue(copy.deepcopy(base), swiglu="triton", rope="triton")

def step(model):
    model.zero_grad(set_to_none=True)
    out = model(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, aux_weight=1e-3)
    out.loss.backward()
    ops = autograd_ops(out.loss)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return out.logits.detach(), float(out.loss), grads, ops

lr, loss_r, gr, _ = step(base)
lf, loss_f, gf, ops = step(fused)
rel = lambda a, b: float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
print(json.dumps({
    "logits": rel(lf, lr), "loss": abs(loss_f - loss_r) / abs(loss_r), "same_keys": gf.keys() == gr.keys(),
    "grads": max(rel(gf[n], g) for n, g in gr.items()),
    "ran": sorted(o for o in ops if o in ("_QKNormRopeBackward", "_SwiGLUBackward")),
}))
"""


def test_model_with_triton_kernels_equals_default() -> None:
    """The debug model with both Triton kernels on (``set_fused_glue(swiglu="triton", rope="triton")``), under
    Triton's interpreter on CPU, fp32, packed rows, MTP and aux loss, MoE on the gather path: the default model's
    logits, loss and every gradient (1e-5 of each tensor's largest value), and both kernels ran. Skips without
    triton."""
    pytest.importorskip("triton")
    env = {**os.environ, "ROOT": str(ROOT), "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _MODEL_TRITON_SCRIPT], env=env, capture_output=True, text=True, timeout=300,
        cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["ran"] == ["_QKNormRopeBackward", "_SwiGLUBackward"], got
    assert got["same_keys"] and got["logits"] < 1e-5 and got["loss"] < 1e-6 and got["grads"] < 1e-5, got


def test_triton_kernels_compile_for_h100_h200() -> None:
    """The Triton kernels compiled ahead of time for sm_90 (no GPU needed: triton's own ptxas): SwiGLU's backward
    with and without a weight, QK-norm + RoPE forward and backward at small's head shape: a cubin comes out and the
    bf16 row loads (and SwiGLU's stores) are 16-byte vectors, given the 16-aligned pointers and strides that torch's
    allocations and small's shapes give. Skips without triton."""
    pytest.importorskip("triton")
    import re

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from model.kernels import swiglu_triton

    sig = {"grad_ptr": "*bf16", "gu_ptr": "*bf16", "w_ptr": "*bf16", "dgu_ptr": "*bf16", "dw_ptr": "*fp32",
           "n_rows": "i32", "width": "i32", "HAS_W": "constexpr", "BLOCK_M": "constexpr", "BLOCK_N": "constexpr"}  # fmt: skip
    for has_w in (True, False):
        src = ASTSource(
            fn=swiglu_triton._swiglu_backward_kernel,
            signature=sig,
            constexprs={
                "HAS_W": has_w,
                "BLOCK_M": swiglu_triton.BLOCK_ROWS,
                "BLOCK_N": swiglu_triton.BLOCK_COLS,
            },
            attrs={(i,): [["tt.divisibility", 16]] for i in range(7)},
        )
        out = triton.compile(src, target=GPUTarget("cuda", 90, 32))
        assert out.asm["cubin"], has_w
        ptx = out.asm["ptx"]
        assert (
            len(re.findall(r"ld\.global\.v4", ptx)) >= 6 and len(re.findall(r"st\.global\.v4", ptx)) >= 4
        ), has_w


@pytest.mark.slow
def test_foreach_grad_norm_equals_deepspeeds() -> None:
    """Two ZeRO-1 bf16 steps of two micro-batches (the entry point's config, clipping 1.0, engaged at both steps:
    norms ~2.4 and ~1.9), the foreach norm installed as the entry point does on CUDA (``cuda_step_defaults``):
    DeepSpeed's gradient norm with the fp32 foreach pass equals its fp64 one within 1e-6 on the same gradients (the
    first step), and the clipped weights agree within a bf16 rounding step (about 20 s on CPU)."""
    pytest.importorskip("deepspeed")
    env = {**os.environ, "ROOT": str(ROOT), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _DS_SCRIPT], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["optimizer"] == "DeepSpeedZeroOptimizer" and got["installed"] is True, got
    assert got["calls"] == 2, got  # the patched norm ran at each optimizer step
    assert all(n > 1.0 for n in got["norms"]), got  # above the clip (1.0): clipping engaged at both steps
    # the first step's norm is of the same gradients: equal within 1e-6; the clip factors then differ in the 7th
    # digit, which can round a bf16 weight one step apart (wdiff), so the second step's gradients, and its norm,
    # differ by that rounding (9e-5 relative on one CPU, 0 on another)
    (ours1, ours2), (ds1, ds2) = got["norms_foreach"], got["norms"]
    assert abs(ours1 - ds1) <= 1e-6 * ds1, got
    assert abs(ours2 - ds2) <= 1e-3 * ds2, got
    assert got["wdiff"] < 1e-2, got  # bf16 weights: at most a rounding step apart
    (ds_fin, ours_fin), (ds_nan, ours_nan) = got["direct"]["finite"], got["direct"]["nan"]
    assert abs(ours_fin - ds_fin) <= 1e-6 * ds_fin and ds_fin > 0, got
    assert ours_nan == ds_nan == -1.0, got  # a NaN gradient: DeepSpeed's mask, the same with the foreach norm


@pytest.mark.slow
def test_round10_rehearsal_on_cpu(tmp_path: Path) -> None:
    """``benchmarks/train.py --device cpu --sections round10`` (debug, eager, DeepSpeed over gloo, grid 2x2 and 4x4;
    about 30 s): every row runs, each model change's bf16 check has the default's loss and expert loads, and every
    row of a grid entry ends its 6 updates at the default's loss within bf16 rounding (2e-4 relative)."""
    pytest.importorskip("deepspeed")
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "benchmarks/train.py", "--device", "cpu", "--sections", "round10", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "FAILED" not in res.stdout, res.stdout[-3000:]
    rows = json.loads((tmp_path / "train_bench.json").read_text())
    checks = [r for r in rows if r["section"] == "round10 check"]
    assert checks and all("error" not in r and r["same_expert_loads"] for r in checks), checks
    assert all(r["loss_rel_diff"] < 1e-6 for r in checks), checks
    steps = [r for r in rows if r["section"] == "round10 step"]
    default = {r["grid"]: r["loss"] for r in steps if r["change"] == "default"}
    assert set(default) == {"2 x 2", "4 x 4"}
    expected = {"default", "all, PyTorch", "SwiGLU backward without cat", "RoPE without cat, v contiguous in the region",
                "DeepSpeed gradient norm in one fp32 foreach pass"}  # fmt: skip
    assert expected <= {r["change"] for r in steps}
    for r in steps:
        assert abs(r["loss"] - default[r["grid"]]) <= 2e-4 * default[r["grid"]], r["name"]
        assert r["optimizer"] == "DeepSpeedZeroOptimizer"
