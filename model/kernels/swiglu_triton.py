"""The backward of :func:`model.kernels.swiglu.swiglu` as one Triton kernel per call (round 10, opt-in:
``set_fused_glue(model, swiglu="triton")``; CUDA only, the ``cat``-free PyTorch backward elsewhere).

One program takes a block of rows and walks their I columns in tiles, reading gate, up and the incoming gradient
once and writing d(gate) and d(up) once; the gate weight's gradient (a sum over I per row) is accumulated in the
same pass. In the round-8 profile the routed experts' SwiGLU backward was two kernels per MoE layer and
micro-batch: the pointwise ``cat`` (284 us, 600 MB) and the weight gradient's row reduction (79 us, re-reading
gate, up and the gradient); this kernel moves ~500 MB once (about 120 us at the 4.3 TB/s the forward reaches).

It is a ``torch.library.triton_op`` (``arcflow::swiglu_backward``), so ``torch.compile`` keeps it in the compiled
backward graph as a user kernel. Values: computed in fp32 from the bf16 inputs, rounded once, as the PyTorch
backward (:func:`model.kernels.swiglu.swiglu_backward`); the tests run it under ``TRITON_INTERPRET=1`` on CPU.
This module imports ``triton``; the project does not depend on it (torch's CUDA wheels bring it).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

BLOCK_ROWS = 16
BLOCK_COLS = 128


@triton.jit
def _swiglu_backward_kernel(
    grad_ptr,  # [N, I]
    gu_ptr,  # [N, 2I]: gate then up
    w_ptr,  # [N] (unused without HAS_W)
    dgu_ptr,  # [N, 2I] out
    dw_ptr,  # [N] fp32 out (unused without HAS_W)
    n_rows,
    width,  # I
    HAS_W: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    if HAS_W:
        w = tl.load(w_ptr + rows64, mask=row_ok, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_M], dtype=tl.float32)
    for c0 in range(0, width, BLOCK_N):
        cols = c0 + tl.arange(0, BLOCK_N)
        m = row_ok[:, None] & (cols < width)[None, :]
        gu_off = rows64[:, None] * (2 * width) + cols[None, :]
        g = tl.load(gu_ptr + gu_off, mask=m, other=0.0).to(tl.float32)
        u = tl.load(gu_ptr + gu_off + width, mask=m, other=0.0).to(tl.float32)
        d = tl.load(grad_ptr + rows64[:, None] * width + cols[None, :], mask=m, other=0.0).to(tl.float32)
        s = tl.sigmoid(g)
        act = g * s
        if HAS_W:
            acc += tl.sum(d * act * u, axis=1)
            d = d * w[:, None]
        d_gate = d * u * (s * (1.0 + g * (1.0 - s)))
        d_up = d * act
        tl.store(dgu_ptr + gu_off, d_gate.to(dgu_ptr.dtype.element_ty), mask=m)
        tl.store(dgu_ptr + gu_off + width, d_up.to(dgu_ptr.dtype.element_ty), mask=m)
    if HAS_W:
        tl.store(dw_ptr + rows64, acc, mask=row_ok)


@triton_op("arcflow::swiglu_backward", mutates_args=())
def swiglu_backward_triton(
    grad: torch.Tensor, gate_up: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(d(gate_up) [..., 2I] in gate_up's dtype, d(weight) [...] in weight's dtype, or an empty tensor without a
    weight) for the output gradient ``grad`` [..., I]; inputs contiguous (made so here)."""
    width = gate_up.shape[-1] // 2
    grad2 = grad.reshape(-1, width).contiguous()
    gu2 = gate_up.reshape(-1, 2 * width).contiguous()
    n = gu2.shape[0]
    d_gu = torch.empty_like(gu2)
    has_w = weight is not None
    w = weight.reshape(-1).contiguous() if weight is not None else gu2  # any pointer when unused
    dw = torch.empty(n if has_w else 0, device=gu2.device, dtype=torch.float32)
    grid = (triton.cdiv(n, BLOCK_ROWS),)
    wrap_triton(_swiglu_backward_kernel)[grid](
        grad2, gu2, w, d_gu, dw if has_w else d_gu, n, width,
        HAS_W=has_w, BLOCK_M=BLOCK_ROWS, BLOCK_N=BLOCK_COLS,
    )  # fmt: skip
    out_w = dw.to(weight.dtype).reshape(weight.shape) if weight is not None else dw
    return d_gu.reshape(gate_up.shape), out_w
