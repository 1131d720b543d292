"""QK-norm (RMSNorm over each head) and RoPE (rotate-half, partial) as one Triton kernel forward and one backward
(round 10, opt-in: ``set_fused_glue(model, rope="triton")``; CUDA only, elsewhere the PyTorch paths).

In the round-8 profile the compiled pre-attention region spent 6.9 ms per step forward on QK-norm + RoPE (a
reduction pass for the norm's rstd, then an apply pass that rotates) and 11.4 ms backward (RoPE's backward as its
own pass, then QK-norm's backward: a reduction pass and an apply pass), all reading or writing q and k
(docs/TRAIN_SPEED.md, "Where the round-8 step's time goes"). Here each direction is one pass over q and k:

- forward, per (token, head) row of D: ``xn = bf16(x * rstd)``, ``y = w * xn``, ``out = bf16(y * C + flip(y) * S)``
  (C, S as in :mod:`model.kernels.rope`: cos / +-sin on the rotated dims, 1 / 0 on the others), in fp32 between
  the two roundings (as inductor computes the default path); ``rstd`` [rows] fp32 is kept for backward;
- backward, per row: ``g = dy * C + flip(dy * S)`` (RoPE's backward), ``d(xn) = g * w``, ``dx = rstd * (d(xn) -
  xhat * mean(d(xn) * xhat))`` with ``xhat = x * rstd``, and the norm weight's gradient ``sum_rows g * xn`` from
  per-program partial sums (added up by one small reduction).

x may be a strided view (q and k are slices of the fused q/k/v GEMM's output): rows are addressed by a token stride.
The ops are ``torch.library.triton_op`` s (``arcflow::qknorm_rope_fwd`` / ``_bwd``), so ``torch.compile`` keeps them
in the compiled region as user kernels. Values: equal to the default path within fp32 rounding (fp32 inputs) and
within one bf16 rounding (bf16); the tests run the kernels under ``TRITON_INTERPRET=1`` on CPU and compile them for
sm_90 ahead of time. This module imports ``triton``; the project does not depend on it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

ROWS_PER_PROGRAM = 16


@triton.jit
def _tables(cs_ptr, sn_ptr, tok, cols, ROT: tl.constexpr, HALF: tl.constexpr, row_ok):
    """C and S for the columns ``cols`` of token ``tok`` (1 / 0 beyond the rotated dims)."""
    rot_col = cols < ROT
    m = row_ok[:, None] & rot_col[None, :]
    off = tok[:, None] * ROT + cols[None, :]
    c = tl.load(cs_ptr + off, mask=m, other=1.0).to(tl.float32)
    s = tl.load(sn_ptr + off, mask=m, other=0.0).to(tl.float32)
    s = tl.where((cols < HALF)[None, :], -s, s)  # rotate-half: -sin on x1's half, +sin on x2's
    return c, s


@triton.jit
def _qknorm_rope_fwd_kernel(
    x_ptr, w_ptr, cs_ptr, sn_ptr, out_ptr, rstd_ptr,
    n_rows, n_heads, tok_stride, eps,
    D: tl.constexpr, ROT: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    HALF: tl.constexpr = ROT // 2
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    tok = rows64 // n_heads
    head = rows64 % n_heads
    cols = tl.arange(0, D)
    # the partner column of rotate-half (x2 for x1 and back); the untouched columns are their own partner (S = 0)
    partner = tl.where(cols < HALF, cols + HALF, tl.where(cols < ROT, cols - HALF, cols))
    base = tok * tok_stride + head * D
    m = row_ok[:, None]
    x = tl.load(x_ptr + base[:, None] + cols[None, :], mask=m, other=0.0).to(tl.float32)
    xp = tl.load(x_ptr + base[:, None] + partner[None, :], mask=m, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / D + eps)
    w = tl.load(w_ptr + cols).to(tl.float32)
    wp = tl.load(w_ptr + partner).to(tl.float32)
    y = w[None, :] * (x * rstd[:, None]).to(x_ptr.dtype.element_ty).to(tl.float32)
    yp = wp[None, :] * (xp * rstd[:, None]).to(x_ptr.dtype.element_ty).to(tl.float32)
    c, s = _tables(cs_ptr, sn_ptr, tok, cols, ROT, HALF, row_ok)
    out = y * c + yp * s
    tl.store(out_ptr + rows64[:, None] * D + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=m)
    tl.store(rstd_ptr + rows64, rstd, mask=row_ok)


@triton.jit
def _qknorm_rope_bwd_kernel(
    dy_ptr, x_ptr, w_ptr, cs_ptr, sn_ptr, rstd_ptr, dx_ptr, dw_part_ptr,
    n_rows, n_heads, tok_stride,
    D: tl.constexpr, ROT: tl.constexpr, BLOCK_R: tl.constexpr,
):  # fmt: skip
    HALF: tl.constexpr = ROT // 2
    pid = tl.program_id(0)
    rows = pid * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    rows64 = rows.to(tl.int64)
    tok = rows64 // n_heads
    head = rows64 % n_heads
    cols = tl.arange(0, D)
    partner = tl.where(cols < HALF, cols + HALF, tl.where(cols < ROT, cols - HALF, cols))
    m = row_ok[:, None]
    dy_off = rows64[:, None] * D
    dy = tl.load(dy_ptr + dy_off + cols[None, :], mask=m, other=0.0).to(tl.float32)
    dyp = tl.load(dy_ptr + dy_off + partner[None, :], mask=m, other=0.0).to(tl.float32)
    c, s = _tables(cs_ptr, sn_ptr, tok, cols, ROT, HALF, row_ok)
    # RoPE's backward: d(y)[j] = dy[j] C[j] + dy[p(j)] S[p(j)], S at the partner column (0 beyond the rotated dims)
    pm = row_ok[:, None] & (cols < ROT)[None, :]
    s_at_p = tl.load(sn_ptr + tok[:, None] * ROT + partner[None, :], mask=pm, other=0.0).to(tl.float32)
    sp = tl.where((partner < HALF)[None, :], -s_at_p, s_at_p)
    g = dy * c + dyp * sp  # d(y)
    x = tl.load(x_ptr + (tok * tok_stride + head * D)[:, None] + cols[None, :], mask=m, other=0.0).to(
        tl.float32
    )
    rstd = tl.load(rstd_ptr + rows64, mask=row_ok, other=0.0)
    xhat = x * rstd[:, None]
    xn = xhat.to(x_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(w_ptr + cols).to(tl.float32)
    dxn = g * w[None, :]
    dot = tl.sum(dxn * xhat, axis=1) / D
    dx = rstd[:, None] * (dxn - xhat * dot[:, None])
    tl.store(dx_ptr + rows64[:, None] * D + cols[None, :], dx.to(dx_ptr.dtype.element_ty), mask=m)
    tl.store(dw_part_ptr + pid * D + cols, tl.sum(tl.where(m, g * xn, 0.0), axis=0))


def _rows(x: torch.Tensor) -> tuple[int, int, int]:
    """(rows, heads, token stride) of x [B, S, n, D] whose head rows are contiguous and whose tokens are evenly
    strided (a slice of the fused q/k/v output, or a dense tensor)."""
    b, s, n, d = x.shape
    if x.stride(3) != 1 or x.stride(2) != d or x.stride(0) != s * x.stride(1):
        raise ValueError(
            f"qknorm_rope: x needs contiguous head rows and evenly strided tokens, got {x.stride()}"
        )
    return b * s * n, n, x.stride(1)


@triton_op("arcflow::qknorm_rope_fwd", mutates_args=())
def qknorm_rope_fwd(
    x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, S, n, D] (see :func:`_rows`), weight [D], cos/sin [B, S, rot] -> (RoPE(RMSNorm(x)) [B, S, n, D]
    dense, rstd [B*S*n] fp32)."""
    n_rows, n_heads, tok_stride = _rows(x)
    d, rot = x.shape[-1], cos.shape[-1]
    out = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    rstd = torch.empty(n_rows, device=x.device, dtype=torch.float32)
    grid = (triton.cdiv(n_rows, ROWS_PER_PROGRAM),)
    wrap_triton(_qknorm_rope_fwd_kernel)[grid](
        x, weight, cos.contiguous(), sin.contiguous(), out, rstd, n_rows, n_heads, tok_stride, eps,
        D=d, ROT=rot, BLOCK_R=ROWS_PER_PROGRAM,
    )  # fmt: skip
    return out, rstd


@triton_op("arcflow::qknorm_rope_bwd", mutates_args=())
def qknorm_rope_bwd(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    rstd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx [B, S, n, D] dense, d(weight) [D]) for the output gradient dy of :func:`qknorm_rope_fwd`."""
    n_rows, n_heads, tok_stride = _rows(x)
    d, rot = x.shape[-1], cos.shape[-1]
    dy = dy.contiguous()
    dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
    programs = triton.cdiv(n_rows, ROWS_PER_PROGRAM)
    dw_part = torch.empty(programs, d, device=x.device, dtype=torch.float32)
    wrap_triton(_qknorm_rope_bwd_kernel)[(programs,)](
        dy, x, weight, cos.contiguous(), sin.contiguous(), rstd, dx, dw_part, n_rows, n_heads, tok_stride,
        D=d, ROT=rot, BLOCK_R=ROWS_PER_PROGRAM,
    )  # fmt: skip
    return dx, dw_part.sum(0).to(weight.dtype)


class _QKNormRope(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        eps: float,
    ) -> torch.Tensor:
        out, rstd = torch.ops.arcflow.qknorm_rope_fwd(x, weight, cos, sin, eps)
        ctx.save_for_backward(x, weight, cos, sin, rstd)
        return out

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        x, weight, cos, sin, rstd = ctx.saved_tensors
        dx, dw = torch.ops.arcflow.qknorm_rope_bwd(grad, x, weight, cos, sin, rstd)
        return dx, dw, None, None, None


def qknorm_rope(
    x: torch.Tensor, weight: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, eps: float
) -> torch.Tensor:
    """``apply_rope(RMSNorm(x))`` of model/glm.py for x [B, S, n, D] (a head-row slice of the q/k/v output),
    RMSNorm's ``weight`` [D] and ``eps``, rotate-half tables cos/sin [B, S, rot] (rot even, <= D, a power of two
    as D is): one kernel each way (module docstring)."""
    d, rot = x.shape[-1], cos.shape[-1]
    if d & (d - 1) or rot % 2 or rot > d:
        raise ValueError(
            f"qknorm_rope needs a power-of-two head dim and an even rotary dim <= it; got {rot} of {d}"
        )
    return _QKNormRope.apply(x, weight, cos, sin, eps)
