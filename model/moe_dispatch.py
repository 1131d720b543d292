"""Token dispatch and combine for the MoE experts as gathers only (the ``gather`` path of :class:`model.moe.MoE`).

The routed (token, pick) slots are sorted by expert; expert e's rows are a contiguous block of the grouped GEMM's
input. Two row maps describe the sort:

- ``src`` [N]: for each sorted row, the token it reads (``order // k``), then, with the shared expert fused in as one
  more group, ``0 .. T-1`` (every token once, already in order);
- ``inv`` [T*k]: for each slot ``t*k + j`` (token t's j-th pick), its row in the sorted order (the inverse
  permutation of ``order``).

:func:`spread` makes the grouped GEMM's input, ``x[src]``; :func:`gather_sum` brings expert outputs back to tokens,
``y[t] = sum_j ys[inv[t*k + j]] (+ ys[T*k + t])``. Each is the other's adjoint, so each one's backward is the other:
gathers in both directions, no scatter-add, no atomics, no zero-filled gradient buffer (the default path's
``x[token_of_slot]`` has an index-put-with-accumulate backward: a sort or atomics on CUDA) and the same bytes at every
run. Under ``torch.compile`` a gather and the sum over the k picks fuse into one kernel.

The gate weights are not applied here: the ``gather`` path multiplies them into the experts' SwiGLU output before
the down projection (linearity: ``w * down(h) = down(w * h)``), where the multiply fuses with SwiGLU and touches I
columns instead of H.
"""

from __future__ import annotations

import torch


def _spread(x: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """x [T, H], src [N] -> x[src] [N, H]."""
    return x.index_select(0, src)


def _gather_sum(ys: torch.Tensor, inv: torch.Tensor, k: int, shared: bool) -> torch.Tensor:
    """ys [N, H] sorted rows, inv [T*k] -> [T, H]: the sum of each token's k routed rows (plus its shared row)."""
    t = inv.shape[0] // k
    y = ys.index_select(0, inv).view(t, k, ys.shape[1]).sum(1)
    if shared:
        y = y + ys[t * k :]
    return y


class _Spread(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        src: torch.Tensor,
        inv: torch.Tensor,
        k: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(src, inv)
        ctx.k = k
        return _spread(x, src)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        return _GatherSum.apply(grad.contiguous(), *ctx.saved_tensors, ctx.k), None, None, None


class _GatherSum(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        ys: torch.Tensor,
        src: torch.Tensor,
        inv: torch.Tensor,
        k: int,
    ) -> torch.Tensor:
        ctx.save_for_backward(src, inv)
        ctx.k = k
        return _gather_sum(ys, inv, k, src.shape[0] > inv.shape[0])

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        return _Spread.apply(grad.contiguous(), *ctx.saved_tensors, ctx.k), None, None, None


class _Permute(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, v: torch.Tensor, order: torch.Tensor, inv: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(inv)
        return v.index_select(0, order)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None, None]:
        (inv,) = ctx.saved_tensors
        return grad.index_select(0, inv), None, None


def permute(v: torch.Tensor, order: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """``v[order]`` for a permutation ``order`` with inverse ``inv``; backward is the gather ``grad[inv]`` (autograd's
    own backward of an index would be an index_add: a zero-filled buffer and atomics)."""
    return _Permute.apply(v, order, inv)


def spread(x: torch.Tensor, src: torch.Tensor, inv: torch.Tensor, k: int) -> torch.Tensor:
    """The grouped GEMM's input rows ``x[src]`` (x [T, H]); backward is :func:`gather_sum` (see the module
    docstring)."""
    return _Spread.apply(x, src, inv, k)


def gather_sum(ys: torch.Tensor, src: torch.Tensor, inv: torch.Tensor, k: int) -> torch.Tensor:
    """Expert output rows ``ys`` [N, H] back to tokens, summed over each token's picks (and its shared row when
    ``src`` has T more rows than ``inv``); backward is :func:`spread`."""
    return _GatherSum.apply(ys, src, inv, k)


def narrow_keys(flat: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Expert ids as the narrowest integer type that holds ``0 .. n_experts - 1`` (uint8 up to 256 experts, int16
    up to 32768): a stable sort of these gives the same permutation as of the int64 ids, and a radix sort (torch's
    CUDA sort of a long 1-D tensor) makes one pass per 8 key bits, so uint8 keys take one pass instead of eight."""
    if n_experts <= 256:
        return flat.to(torch.uint8)
    if n_experts <= 1 << 15:
        return flat.to(torch.int16)
    return flat


def sort_slots(
    topk_idx: torch.Tensor, n_experts: int, shared: bool, narrow: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """topk_idx [T, k] -> (order [T*k]: slots sorted by expert, stable; src [N]; inv [T*k]; ends [G] int32: the end
    row of each group, G = n_experts (+1 for the shared group)). No host sync, no data-dependent shape. ``narrow``:
    sort the ids as :func:`narrow_keys` (the same outputs; the model turns it on for CUDA tensors, where it measured
    1.011x the H200 training step: ``model.moe.resolve_narrow_keys``)."""
    t, k = topk_idx.shape
    flat = topk_idx.reshape(-1)
    keys = narrow_keys(flat, n_experts) if narrow else flat
    sorted_expert, order = keys.sort(
        stable=True
    )  # one kernel gives both (argsort then a gather would be two)
    slots = torch.arange(t * k, device=flat.device)
    inv = torch.empty_like(order).scatter_(0, order, slots)
    if narrow:  # the group ends searched on int32 (the sorted keys widened: a cast fused into the search)
        sorted_expert = sorted_expert.to(torch.int32)
    ends = torch.searchsorted(
        sorted_expert, torch.arange(n_experts, device=flat.device, dtype=sorted_expert.dtype), right=True
    )
    src = torch.div(order, k, rounding_mode="floor")
    if shared:
        src = torch.cat([src, torch.arange(t, device=flat.device)])
        ends = torch.cat([ends, ends.new_full((1,), t * k + t)])
    return order, src, inv, ends.to(torch.int32)
