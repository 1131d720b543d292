"""How the defaults that round 8 measured on an H200 are chosen per device (docs/TRAIN_SPEED.md, "Round 8
measured"): the router's top-k (``auto``: argmax on CUDA, topk elsewhere), the gather dispatch's narrow sort keys
(``None``: on CUDA only), the norms outside the layer regions (compiled with the layers on CUDA only) and the fused
head + loss's block size (CUDA: one block while the logits fit 1/16 of the device's memory; CPU: the 1 GiB fp32
rule as before). All on CPU: the CUDA choices are checked through the selection functions with a CUDA device
object or a given memory figure, and the CPU model is checked to run exactly the paths it ran before.

Round 11 (docs/TRAIN_SPEED.md, "Round 10 measured"): SwiGLU's backward as one Triton kernel (``fused_swiglu``
``None`` resolves to ``"triton"`` on CUDA where triton imports, to the ``chunk`` path elsewhere or without triton;
``set_fused_glue(model, swiglu=False)`` opts out) and DeepSpeed's ZeRO 1/2 gradient norm as one fp32 foreach pass,
installed by the training entry point on CUDA only. Triton's availability is monkeypatched (the probe's cache, or
``triton`` blocked in ``sys.modules``); the CUDA choice is followed on CPU tensors, where ``swiglu(impl="triton")``
takes the ``cat``-free PyTorch backward (the Triton kernel itself: tests/model/test_round10_paths.py, under Triton's
interpreter)."""

from __future__ import annotations

import copy
import logging
import sys
from types import SimpleNamespace

import pytest
import torch

import model.glm as glm
import model.kernels.swiglu as swiglu_mod
import model.moe as moe
from model.config import ModelConfig
from model.glm import GLMForCausalLM, norms_compiled
from model.kernels import set_fused_glue
from model.kernels.swiglu import resolve_swiglu, triton_backward_available
from model.loss import CUDA_BLOCK_SHARE, default_chunk_size, linear_cross_entropy
from model.moe import resolve_narrow_keys, resolve_topk
from model.moe_dispatch import narrow_keys, sort_slots
from model.train.main import cuda_step_defaults
from model.zero_grad_norm import foreach_grad_norm_direct
from tests.model._inputs import _biased, _ids, autograd_ops

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
H200 = 140 << 30  # about an H200's total memory (a figure for the rule, not a reading)
DOC_LENS = [[5, 11, 3], [19]]


def _step(
    model: GLMForCausalLM, ids: torch.Tensor, **kw: object
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    out = model(ids, doc_lens=DOC_LENS, labels=ids, mtp_weight=0.3, aux_weight=1e-2, **kw)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_router_topk_auto_resolves_by_device(debug_cfg: ModelConfig) -> None:
    assert resolve_topk("auto", CUDA) == "argmax" and resolve_topk("auto", CPU) == "topk"
    for impl in ("topk", "argmax"):  # asked for by name: the same on every device
        assert resolve_topk(impl, CUDA) == impl and resolve_topk(impl, CPU) == impl
    model = GLMForCausalLM(debug_cfg)
    assert {r.topk_impl for r in model.routers()} == {"auto"}
    assert {r.topk_impl for r in model.set_router_topk("topk").routers()} == {"topk"}
    assert {r.topk_impl for r in model.set_router_topk().routers()} == {"auto"}


def test_default_router_on_cpu_is_torch_topk(debug_cfg: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A default model on CPU never runs the argmax rounds and gives the numbers and load counts of an explicit
    ``topk`` model bit for bit (CPU behaviour unchanged)."""
    base = _biased(GLMForCausalLM(debug_cfg))
    explicit = copy.deepcopy(base).set_router_topk("topk")

    def no_argmax(choice: torch.Tensor, k: int) -> torch.Tensor:
        raise AssertionError("the argmax top-k ran on CPU")

    monkeypatch.setattr(moe, "topk_by_argmax", no_argmax)
    ids = _ids(debug_cfg, 2, 24, seed=1)
    loss_a, grads_a = _step(base, ids)
    loss_b, grads_b = _step(explicit, ids)
    assert torch.equal(loss_a, loss_b)
    for name, grad in grads_a.items():
        assert torch.equal(grad, grads_b[name]), name
    for ra, rb in zip(base.routers(), explicit.routers(), strict=True):
        assert ra.load.sum() > 0 and torch.equal(ra.load, rb.load)


def test_narrow_sort_keys_default_by_device(debug_cfg: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """``None`` (the default) sorts narrow keys on CUDA only; the CPU gather path keeps the int64 sort unless asked."""
    assert resolve_narrow_keys(None, CUDA) and not resolve_narrow_keys(None, CPU)
    assert resolve_narrow_keys(True, CPU) and not resolve_narrow_keys(False, CUDA)
    model = GLMForCausalLM(debug_cfg).set_moe_path("gather")
    experts = [layer.mlp.experts for layer in model.model.layers if layer.is_moe]
    assert {e.narrow_sort_keys for e in experts} == {None}
    seen: list[bool] = []
    real = moe.sort_slots

    def spy(topk_idx: torch.Tensor, n: int, shared: bool, narrow: bool = False) -> tuple[torch.Tensor, ...]:
        seen.append(narrow)
        return real(topk_idx, n, shared, narrow)

    monkeypatch.setattr(moe, "sort_slots", spy)
    ids = _ids(debug_cfg, 2, 24, seed=2)
    model(ids, labels=ids)
    assert seen and not any(seen)
    seen.clear()
    model.set_moe_path("gather", narrow_sort_keys=True)(ids, labels=ids)
    assert seen and all(seen)


@pytest.mark.parametrize("n_experts", [255, 256, 257, 1000])
def test_narrow_sort_keys_at_the_uint8_boundary(n_experts: int) -> None:
    """Expert counts around 256: uint8 keys while the largest id (n - 1) fits, int16 above; the highest ids
    present; the same slots as the int64 sort."""
    gen = torch.Generator().manual_seed(n_experts)
    t, k = 200, 4
    topk = torch.stack([torch.randperm(n_experts, generator=gen)[:k] for _ in range(t)])
    topk[0] = torch.arange(n_experts - k, n_experts)  # the top ids are picked
    keys = narrow_keys(topk.reshape(-1), n_experts)
    assert keys.dtype == (torch.uint8 if n_experts <= 256 else torch.int16)
    assert int(keys.max()) == n_experts - 1  # no wrap-around
    for shared in (False, True):
        for a, b in zip(
            sort_slots(topk, n_experts, shared), sort_slots(topk, n_experts, shared, True), strict=True
        ):
            assert a.dtype == b.dtype and torch.equal(a, b)


def test_compile_layers_norms_follow_the_device(
    debug_cfg: ModelConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``compile_layers()`` leaves the norms to the device (compiled on CUDA, eager on CPU); ``norms=True/False``
    holds everywhere; nothing compiled when the layers are not."""
    assert norms_compiled(None, CUDA) and not norms_compiled(None, CPU)
    assert norms_compiled(True, CPU) and not norms_compiled(False, CUDA)
    model = GLMForCausalLM(debug_cfg)
    assert model.compiled_norms is False  # not compiled at all by default
    model.compile_layers()
    assert model.compiled_norms is None and model.mtp_layer.compiled_norms is None
    assert model.compile_layers(norms=False).compiled_norms is False
    assert model.compile_layers(norms=True).mtp_layer.compiled_norms is True
    assert model.compile_layers(False).compiled_norms is False
    # a CPU forward of a model compiled with the default keeps the norms eager (the layer regions left eager here:
    # inductor's CPU code generation would take minutes)
    model.compile_layers()
    for layer in model.model.layers:
        layer.compiled = False
    model.ce_compiled = False

    def no_compiled_norms() -> tuple[object, object]:
        raise AssertionError("the compiled norms ran on CPU")

    monkeypatch.setattr(glm, "_compiled_norm_fns", no_compiled_norms)
    ids = _ids(debug_cfg, 2, 24, seed=3)
    out = model(ids, doc_lens=DOC_LENS, labels=ids, mtp_weight=0.3, return_logits=False)
    assert torch.isfinite(out.loss)


def test_loss_block_size_rule() -> None:
    """CPU (no device memory): the 1 GiB fp32 rule, whatever the rows. CUDA (a memory figure): one block while the
    logits fit 1/16 of it, else the fewest blocks within that share, of equal size."""
    for rows in (1, 4096, 1 << 20):
        assert default_chunk_size(rows, 65_536, 2) == 4096  # 64K vocabulary: 4096 rows of fp32 logits = 1 GiB
        assert default_chunk_size(rows, 151_552, 2) == (1 << 30) // (4 * 151_552)
    # small (64K vocabulary) on an H200: 8 or 16 rows of 4096 in one block, 32 rows in two
    assert default_chunk_size(8 * 4096, 65_536, 2, H200) == 8 * 4096
    assert default_chunk_size(16 * 4096, 65_536, 2, H200) == 16 * 4096
    assert default_chunk_size(32 * 4096, 65_536, 2, H200) == 16 * 4096
    # air (151,552) at 32K rows: two blocks on an H200, seven on a 24 GiB card, three in fp32 on an H200
    assert default_chunk_size(32_768, 151_552, 2, H200) == 16_384
    assert default_chunk_size(32_768, 151_552, 2, 24 << 30) == 4682
    assert default_chunk_size(32_768, 151_552, 4, H200) == 10_923  # three blocks (the last 10,922)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        rows = int(torch.randint(1, 300_000, (), generator=gen))
        vocab = int(torch.randint(1000, 300_000, (), generator=gen))
        memory = int(torch.randint(1 << 30, 200 << 30, (), generator=gen))
        chunk = default_chunk_size(rows, vocab, 2, memory)
        budget_rows = max(1, memory // CUDA_BLOCK_SHARE // (2 * vocab))
        assert 1 <= chunk <= min(rows, budget_rows)  # within the budget
        assert -(-rows // chunk) == -(-rows // budget_rows)  # the fewest blocks
        assert rows - (-(-rows // chunk) - 1) * chunk > chunk - -(
            -rows // chunk
        )  # the last block nearly full


def test_loss_in_the_chosen_blocks_equals_one_block() -> None:
    """The blocks the CUDA rule picks for a vocabulary too large for one (as ``air`` at 32K rows on a small card),
    scaled down: the loss and gradients of one block (fp32, ignored targets included)."""
    gen = torch.Generator().manual_seed(1)
    n, h, v = 37, 16, 50
    memory = CUDA_BLOCK_SHARE * 4 * v * 10  # 10 rows of fp32 logits per block
    chunk = default_chunk_size(n, v, 4, memory)
    assert chunk == 10  # four blocks: 10, 10, 10, 7
    hs, w = torch.randn(n, h, generator=gen), torch.randn(v, h, generator=gen) * 0.3
    targets = torch.randint(0, v, (n,), generator=gen)
    targets[::4] = -100
    results = []
    for size in (chunk, n):
        hh, ww = hs.clone().requires_grad_(), w.clone().requires_grad_()
        loss = linear_cross_entropy(hh, ww, targets, size)
        (loss * 0.5).backward()
        results.append((loss.detach(), hh.grad, ww.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_swiglu_default_resolves_by_device_and_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """``None``: the Triton backward on CUDA where triton imports; the chunk path on CUDA without triton and on CPU
    (where triton is not even probed); an explicit choice is taken as given on every device."""
    monkeypatch.delenv(swiglu_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(swiglu_mod, "_TRITON_BACKWARD", [True])
    assert resolve_swiglu(None, CUDA) == "triton" and resolve_swiglu(None, CPU) is False
    monkeypatch.setattr(swiglu_mod, "_TRITON_BACKWARD", [False])
    assert resolve_swiglu(None, CUDA) is False and resolve_swiglu(None, CPU) is False
    for given in (False, True, "triton"):
        assert resolve_swiglu(given, CUDA) == given and resolve_swiglu(given, CPU) == given

    def no_probe() -> bool:
        raise AssertionError("triton was probed for a CPU tensor")

    monkeypatch.setattr(swiglu_mod, "triton_backward_available", no_probe)
    assert resolve_swiglu(None, CPU) is False


def test_triton_probe_without_triton_is_no_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``triton`` absent (blocked in ``sys.modules``, the kernel module not yet imported): the probe answers False
    once and caches it, and a CUDA default then resolves to the chunk path, no error."""
    monkeypatch.delenv(swiglu_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(swiglu_mod, "_TRITON_BACKWARD", [])
    monkeypatch.setitem(sys.modules, "triton", None)  # ``import triton`` raises ImportError
    monkeypatch.delitem(sys.modules, "model.kernels.swiglu_triton", raising=False)
    with caplog.at_level(logging.WARNING, logger=swiglu_mod.__name__):
        assert triton_backward_available() is False
        assert swiglu_mod._TRITON_BACKWARD == [False]
        assert resolve_swiglu(None, CUDA) is False
    # one warning line: the slower path runs, and how to choose it explicitly
    lines = [r.getMessage() for r in caplog.records if r.name == swiglu_mod.__name__]
    assert len(lines) == 1 and "slower chunk path" in lines[0] and "ARCFLOW_FUSED_SWIGLU=chunk" in lines[0]
    caplog.clear()  # the path chosen through the variable: no warning
    monkeypatch.setenv(swiglu_mod.ENV_VAR, "chunk")
    monkeypatch.setattr(swiglu_mod, "_TRITON_BACKWARD", [])
    with caplog.at_level(logging.WARNING, logger=swiglu_mod.__name__):
        assert triton_backward_available() is False
    assert not [r for r in caplog.records if r.name == swiglu_mod.__name__]


@pytest.mark.parametrize(
    ("value", "cuda", "cpu"),
    [("0", False, False), ("chunk", False, False), ("torch", True, True), ("1", True, True),
     ("triton", "triton", False), ("auto", "triton", False), ("", "triton", False)],
)  # fmt: skip
def test_swiglu_default_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, cuda: bool | str, cpu: bool | str
) -> None:
    """``ARCFLOW_FUSED_SWIGLU`` chooses the default's path for a whole pipeline (triton present); a module's own
    ``fused_swiglu`` still wins."""
    monkeypatch.setattr(swiglu_mod, "_TRITON_BACKWARD", [True])
    monkeypatch.setenv(swiglu_mod.ENV_VAR, value)
    assert resolve_swiglu(None, CUDA) == cuda and resolve_swiglu(None, CPU) == cpu
    for given in (False, True, "triton"):
        assert resolve_swiglu(given, CUDA) == given


def test_swiglu_environment_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value it does not know names the variable and the values; ``triton`` asked for on CUDA without triton
    says what to install or set instead of silently running the slower path."""
    monkeypatch.setenv(swiglu_mod.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="ARCFLOW_FUSED_SWIGLU='fast': give 0 or chunk"):
        resolve_swiglu(None, CUDA)
    monkeypatch.setenv(swiglu_mod.ENV_VAR, "triton")
    monkeypatch.setattr(swiglu_mod, "_TRITON_BACKWARD", [False])
    with pytest.raises(RuntimeError, match="ARCFLOW_FUSED_SWIGLU=triton, but triton is not importable"):
        resolve_swiglu(None, CUDA)
    assert resolve_swiglu(None, CPU) is False


def test_triton_probe_with_triton_registers_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    """``triton`` installed: the probe imports model/kernels/swiglu_triton.py (registering
    ``arcflow::swiglu_backward``, which the compiled backward calls) and a CUDA default resolves to it. Skips
    without triton."""
    pytest.importorskip("triton")
    monkeypatch.setattr(swiglu_mod, "_TRITON_BACKWARD", [])
    assert triton_backward_available() is True
    assert hasattr(torch.ops.arcflow, "swiglu_backward")
    assert resolve_swiglu(None, CUDA) == "triton"


def test_swiglu_default_in_the_model(debug_cfg: ModelConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every MLP and expert block starts at ``fused_swiglu=None``. On CPU the default model runs the chunk path
    (bit for bit the explicit opt-out ``swiglu=False``); resolved as on CUDA with triton (here on CPU tensors, so
    the ``cat``-free PyTorch backward stands in for the kernel) the routed experts, shared experts and dense MLP
    take the fused SwiGLU with the same loss and gradients (fp32), and ``set_fused_glue(model, swiglu=False)``
    keeps the chunk path even then."""
    monkeypatch.delenv(swiglu_mod.ENV_VAR, raising=False)
    base = _biased(GLMForCausalLM(debug_cfg)).set_moe_path(
        "gather"
    )  # the experts' SwiGLU site (CUDA's default)
    blocks = [m for m in base.modules() if isinstance(m, (moe.MLP, moe.GroupedExperts))]
    assert blocks and {m.fused_swiglu for m in blocks} == {None}
    opt_out = set_fused_glue(copy.deepcopy(base), swiglu=False)
    assert {m.fused_swiglu for m in opt_out.modules() if isinstance(m, (moe.MLP, moe.GroupedExperts))} == {
        False
    }
    ids = _ids(debug_cfg, 2, 24, seed=5)

    def step(model: GLMForCausalLM) -> tuple[torch.Tensor, dict[str, torch.Tensor], set[str]]:
        model.zero_grad(set_to_none=True)
        out = model(ids, doc_lens=DOC_LENS, labels=ids, mtp_weight=0.3, aux_weight=1e-2)
        ops = autograd_ops(out.loss)
        out.loss.backward()
        return (
            out.loss.detach(),
            {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            ops,
        )

    loss_cpu, grads_cpu, ops_cpu = step(base)
    loss_off, grads_off, ops_off = step(opt_out)
    assert "_SwiGLUBackward" not in ops_cpu and "_SwiGLUBackward" not in ops_off
    assert torch.equal(loss_cpu, loss_off)
    assert all(torch.equal(g, grads_off[n]) for n, g in grads_cpu.items())

    seen: list[object] = []
    monkeypatch.setattr(swiglu_mod, "_TRITON_BACKWARD", [True])

    def as_on_cuda(fused: bool | str | None, device: torch.device) -> bool | str:
        seen.append(fused)
        return resolve_swiglu(fused, CUDA)

    monkeypatch.setattr(moe, "resolve_swiglu", as_on_cuda)
    loss_cuda, grads_cuda, ops_cuda = step(base)
    assert "_SwiGLUBackward" in ops_cuda and None in seen
    torch.testing.assert_close(loss_cuda, loss_cpu, rtol=1e-6, atol=1e-6)
    assert grads_cuda.keys() == grads_cpu.keys()
    for name, g in grads_cpu.items():
        torch.testing.assert_close(grads_cuda[name], g, rtol=1e-5, atol=1e-6, msg=name)
    assert "_SwiGLUBackward" not in step(opt_out)[2]  # the opt-out holds on CUDA too
    with pytest.raises(ValueError, match="swiglu is None, False, True or 'triton'"):
        set_fused_glue(base, swiglu="cuda")


def test_foreach_grad_norm_on_cuda_only() -> None:
    """The training entry point's engine defaults (``cuda_step_defaults``): on CUDA DeepSpeed's ZeRO 1/2
    optimizer computes its gradient norm by ``foreach_grad_norm_direct``; on CPU, and at ZeRO 0 (torch's optimizer
    with our own clipping), nothing changes. The optimizer here only carries DeepSpeed's class name (a real one is
    built by ``deepspeed.initialize`` in tests/model/test_round10_paths.py, which checks the norm, the clipped
    weights and the NaN masking against DeepSpeed's own)."""

    class DeepSpeedZeroOptimizer:  # the class name use_foreach_grad_norm looks for
        def get_grad_norm_direct(self, gradients: list, params: list, norm_type: float = 2) -> str:
            return "deepspeed"

    engine = SimpleNamespace(optimizer=DeepSpeedZeroOptimizer())
    assert cuda_step_defaults(engine, cuda=False) is False
    assert engine.optimizer.get_grad_norm_direct([], []) == "deepspeed"
    assert cuda_step_defaults(engine, cuda=True) is True
    assert engine.optimizer.get_grad_norm_direct.__func__ is foreach_grad_norm_direct
    zero0 = SimpleNamespace(optimizer=torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))]))
    assert cuda_step_defaults(zero0, cuda=True) is False
    assert not hasattr(zero0.optimizer, "get_grad_norm_direct")
