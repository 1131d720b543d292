"""SwiGLU over a fused gate/up projection, optionally times a per-row weight, with a backward written without
``cat`` (round 10; ``model.kernels.set_fused_glue(model, swiglu=...)`` sets ``GroupedExperts.fused_swiglu`` and
``MLP.fused_swiglu``). Since round 11 the default (``None``, :func:`resolve_swiglu`) is the backward as one Triton
kernel on CUDA wherever ``triton`` imports (1.024x the H200 step at 8 x 4, 1.028x at 16 x 16, docs/TRAIN_SPEED.md
"Round 10 measured"), and the ``chunk`` path as before elsewhere (CPU, or no triton); ``True`` (this module's
PyTorch backward) stays opt-in, ``False`` is the explicit opt-out.

``swiglu(gate_up, weight)`` is ``silu(gate) * up`` (``gate, up = gate_up.chunk(2, -1)``), times ``weight[..., None]``
when a weight is given (the MoE gather path's gate weights, multiplied in before the down projection). Its forward
runs the same ops as the default path, so it gives the same bytes. Its backward differs in shape only: autograd's
backward of ``chunk`` is a ``cat`` of d(gate) and d(up), which inductor compiles as one pointwise kernel over
[N, 2I] whose every element evaluates both halves' loads under masks (``x % 2I < I``); in the round-8 profile that
kernel took 284 us per MoE layer and micro-batch for 600 MB (2.1 TB/s), where the forward's SwiGLU moves 4.3 TB/s
(docs/TRAIN_SPEED.md, "Where the round-8 step's time goes"). Here d(gate_up) is one ``where`` over the [..., 2, I]
view of the gradient, choosing per element between two values computed from the same unmasked loads of gate, up
and the incoming gradient, so the loads are contiguous rows and the output is written once. It computes in fp32
and rounds its outputs once (autograd's eager bf16 backward rounds each op; compiled, inductor computes the default
in fp32 too).
"""

from __future__ import annotations

import importlib
import logging
import os
from typing import Literal

import torch
import torch.nn.functional as F

SwiGLUImpl = Literal["torch", "triton"]
# the Triton backward runs on CUDA tensors, and on CPU ones under Triton's interpreter (the tests)
_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
_TRITON_BACKWARD: list[
    bool
] = []  # whether model/kernels/swiglu_triton.py imported (probed once, on first need)


@torch.compiler.assume_constant_result
def triton_backward_available() -> bool:
    """Whether the Triton SwiGLU backward can run here: ``model.kernels.swiglu_triton`` imports (``triton`` is
    installed and registers ``arcflow::swiglu_backward``). Probed once and cached; a failed import is no error (the
    project does not depend on triton: torch's CUDA wheels bring it, its CPU wheels do not). Under
    ``torch.compile`` the answer is taken as a constant when the region is traced (it cannot change in a process)."""
    if not _TRITON_BACKWARD:
        try:  # by name through sys.modules (registers arcflow::swiglu_backward)
            importlib.import_module("model.kernels.swiglu_triton")
        except Exception as exc:  # noqa: BLE001 - ImportError, or a triton that fails to load: the default path then
            _TRITON_BACKWARD.append(False)
            # probed for a CUDA default (resolve_swiglu): say once that the slower path runs
            if env_swiglu() is None:
                _LOG.warning(
                    "triton is not importable here (%s): SwiGLU's backward on CUDA runs the slower chunk path; "
                    "install triton, or set %s=chunk to choose that path and silence this",
                    exc,
                    ENV_VAR,
                )
        else:
            _TRITON_BACKWARD.append(True)
    return _TRITON_BACKWARD[0]


ENV_VAR = "ARCFLOW_FUSED_SWIGLU"
_ENV_CHOICES: dict[str, bool | str | None] = {
    "": None, "auto": None, "0": False, "chunk": False, "1": True, "torch": True, "triton": "triton",
}  # fmt: skip
_LOG = logging.getLogger(__name__)


@torch.compiler.assume_constant_result
def env_swiglu() -> bool | str | None:
    """The pipeline-level choice of the default SwiGLU path, ``ARCFLOW_FUSED_SWIGLU``: unset, ``""`` or ``auto``
    (``None``: the per-device default), ``0`` / ``chunk`` (``False``, the opt-out), ``1`` / ``torch`` (``True``),
    ``triton``. Read on each call (taken as a constant under ``torch.compile``); any other value is an error."""
    raw = os.environ.get(ENV_VAR, "").strip().lower()
    if raw not in _ENV_CHOICES:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r}: give 0 or chunk (the chunk path), torch (the cat-free PyTorch "
            "backward), triton (the Triton backward on CUDA) or auto (the default: triton on CUDA where it imports)"
        )
    return _ENV_CHOICES[raw]


def resolve_swiglu(fused: bool | str | None, device: torch.device) -> bool | str:
    """The SwiGLU path ``fused`` (a module's ``fused_swiglu``) runs on ``device``: ``None`` (the default) is
    ``"triton"`` (the backward as one Triton kernel) on CUDA where :func:`triton_backward_available`, else ``False``
    (``silu(gate) * up`` over ``chunk``, autograd's backward: the path CPU always ran); ``False``, ``True`` (the
    ``cat``-free PyTorch backward) and ``"triton"`` are taken as given (``"triton"`` then needs triton). A default
    module follows ``ARCFLOW_FUSED_SWIGLU`` when set (:func:`env_swiglu`; ``triton`` there applies on CUDA only and
    needs triton)."""
    if fused is not None:
        return fused
    chosen = env_swiglu()
    if chosen is None:
        return "triton" if device.type == "cuda" and triton_backward_available() else False
    if chosen == "triton":
        if device.type != "cuda":
            return False
        if not triton_backward_available():
            raise RuntimeError(
                f"{ENV_VAR}=triton, but triton is not importable here (model/kernels/swiglu_triton.py); install "
                f"triton, or set {ENV_VAR}=chunk (or unset it) for the chunk path"
            )
    return chosen


def _forward(gate_up: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    gate, up = gate_up.chunk(2, dim=-1)
    hidden = F.silu(gate) * up
    return hidden if weight is None else hidden * weight[..., None]


def swiglu_backward(
    grad: torch.Tensor, gate_up: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """d(gate_up) [..., 2I] and d(weight) [...] (None without a weight) of :func:`swiglu` for the output gradient
    ``grad`` [..., I], computed in fp32 and returned in the inputs' dtypes."""
    i = gate_up.shape[-1] // 2
    gu = gate_up.unflatten(-1, (2, i)).float()  # [..., 2, I]
    g, u = gu[..., :1, :], gu[..., 1:, :]  # [..., 1, I] each: views, no copy
    d = grad.float().unsqueeze(-2)  # [..., 1, I]
    s = torch.sigmoid(g)
    act = g * s  # silu(gate)
    dw = None
    if weight is not None:
        dw = (d * act * u).sum((-2, -1)).to(weight.dtype)  # d(weight) = sum over I of grad * silu(gate) * up
        d = d * weight.float()[..., None, None]
    d_gate = d * u * (s * (1 + g * (1 - s)))  # silu'(g) = s (1 + g (1 - s))
    d_up = d * act
    first = torch.arange(2, device=grad.device).unsqueeze(-1) == 0  # [2, 1]: True on the gate half
    d_gu = torch.where(first, d_gate, d_up)  # [..., 2, I]
    return d_gu.flatten(-2).to(gate_up.dtype), dw


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        gate_up: torch.Tensor,
        weight: torch.Tensor | None,
        triton: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(gate_up, weight)
        ctx.triton = triton
        return _forward(gate_up, weight)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        gate_up, weight = ctx.saved_tensors
        if ctx.triton:  # model/kernels/swiglu_triton.py (registered by importing it)
            d_gu, dw = torch.ops.arcflow.swiglu_backward(grad, gate_up, weight)
        else:
            d_gu, dw = swiglu_backward(grad, gate_up, weight)
        return d_gu, (dw if weight is not None and ctx.needs_input_grad[1] else None), None


def swiglu(
    gate_up: torch.Tensor, weight: torch.Tensor | None = None, impl: SwiGLUImpl = "torch"
) -> torch.Tensor:
    """``silu(gate) * up`` of ``gate_up`` [..., 2I] (gate first), times ``weight`` [...] per row when given: the
    default path's values, with the ``cat``-free backward of the module docstring; ``impl="triton"``: the backward
    as one Triton kernel (model/kernels/swiglu_triton.py, which must have been imported) on CUDA tensors, the
    PyTorch one elsewhere."""
    if impl not in ("torch", "triton"):
        raise ValueError(f"swiglu impl must be 'torch' or 'triton', not {impl!r}")
    if gate_up.shape[-1] % 2:
        raise ValueError(f"swiglu needs gate and up of equal width; the last dim is {gate_up.shape[-1]}")
    if weight is not None and weight.shape != gate_up.shape[:-1]:
        raise ValueError(
            f"swiglu's weight must have one value per row: {tuple(weight.shape)} for rows {tuple(gate_up.shape[:-1])}"
        )
    use_triton = impl == "triton" and (gate_up.is_cuda or _INTERPRET)
    return _SwiGLU.apply(gate_up, weight, use_triton)
