"""Fused output head + cross-entropy: the loss of ``h @ W^T`` against targets without keeping the [N, V] logits.

``linear_cross_entropy(h, W, targets)`` walks the N rows in chunks; per chunk it computes the logits in fp32, the
summed loss, and right away the gradient of that loss with respect to the logits (``softmax - onehot``), folding it
into dL/dh and dL/dW. Backward then only scales those two by the incoming gradient. Memory: one [chunk, V] block
instead of the [N, V] logits plus their softmax, which is what dominates at long sequences and large vocabularies;
time: the log-softmax backward pass and its zero-filled buffers disappear. Same numbers as
``F.cross_entropy(h @ W.T, targets, ignore_index=-100, reduction="sum")`` up to fp32 summation order. (Liger
Kernel and Apple's cut-cross-entropy do the same on GPU with fused kernels; this is the plain-PyTorch version.)

Block size when none is given (:func:`default_chunk_size`): on CUDA, one block for all rows when their logits in the
model's dtype fit 1/16 of the device's memory (their gradient, the same size, is the other 1/16), else the fewest
equal blocks within that share; one block per micro-batch measured 1.024x the H200 training step and two blocks
1.017x (docs/TRAIN_SPEED.md, round 8), against eight blocks of 4096 rows before. Elsewhere (CPU) the rule is
unchanged: as many rows as keep a block's fp32 logits within 1 GiB.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

IGNORE = -100
_BLOCK_BYTES = 1 << 30  # default block off CUDA: as many rows as keep its fp32 logits within 1 GiB
CUDA_BLOCK_SHARE = 16  # default block on CUDA: its logits within 1/16 of the device's memory


def default_chunk_size(rows: int, vocab: int, itemsize: int, device_memory: int | None = None) -> int:
    """Rows per block of the fused head + loss when no chunk size is given. ``device_memory`` None (CPU and any
    device other than CUDA): as many rows as keep a block's fp32 logits within 1 GiB, whatever ``rows`` is (the
    rule before round 8). Given (a CUDA device's total memory, bytes): all ``rows`` in one block when their
    logits, ``itemsize`` bytes each (2 in bf16), fit ``device_memory / CUDA_BLOCK_SHARE``; else the fewest blocks
    within that share, of equal size (no thin last block, one compiled block shape). E.g. the ``air`` vocabulary
    (151,552) at 32K rows of bf16: on an H200 (140 GiB) two blocks of 16,384 rows, on a 24 GiB card seven of
    4,682 (the last 4,676); the ``small`` vocabulary (65,536) on an H200: one block up to about 71K rows (16 rows
    of 4096), two blocks of 64K rows at 32 rows."""
    if device_memory is None:
        return max(1, _BLOCK_BYTES // (4 * vocab))
    max_rows = max(1, device_memory // CUDA_BLOCK_SHARE // (itemsize * vocab))
    if rows <= max_rows:
        return max(rows, 1)
    blocks = -(-rows // max_rows)
    return -(-rows // blocks)


def device_chunk_size(h: torch.Tensor, vocab: int) -> int:
    """:func:`default_chunk_size` for rows ``h`` [N, H] on their device (CUDA: its total memory, a property read
    without waiting for the GPU)."""
    memory = torch.cuda.get_device_properties(h.device).total_memory if h.is_cuda else None
    return default_chunk_size(h.shape[0], vocab, h.element_size(), memory)


def _block_eager(
    logits: torch.Tensor, targets: torch.Tensor, grad_dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """One block: logits [c, V] (any float dtype), targets [c] -> (summed fp32 loss, dL/dlogits [c, V] in
    ``grad_dtype``), in place on an fp32 copy of the logits."""
    valid = targets != IGNORE
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)  # [c]
    picked = logits.gather(1, safe[:, None])[:, 0]  # [c]
    loss = ((lse - picked) * valid).sum()
    grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place of the logits
    grad[torch.arange(grad.shape[0], device=grad.device), safe] -= 1.0
    grad *= valid[:, None]
    return loss, grad.to(grad_dtype)


def _block_pointwise(
    logits: torch.Tensor, targets: torch.Tensor, grad_dtype: torch.dtype
) -> tuple[torch.Tensor, ...]:
    """:func:`_block_eager` written as one reduction and one pointwise pass (what ``torch.compile`` fuses into two
    kernels over the block instead of about eight)."""
    valid = targets != IGNORE
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)  # [c]
    picked = logits.gather(1, safe[:, None])[:, 0]
    loss = ((lse - picked) * valid).sum()
    onehot = torch.arange(logits.shape[1], device=logits.device)[None, :] == safe[:, None]
    grad = ((logits - lse[:, None]).exp() - onehot.float()) * valid[:, None]
    return loss, grad.to(grad_dtype)


_COMPILED: list[Callable[..., tuple[torch.Tensor, ...]]] = []


def _block_compiled() -> Callable[..., tuple[torch.Tensor, ...]]:
    if not _COMPILED:
        _COMPILED.append(torch.compile(_block_pointwise, dynamic=False))
    return _COMPILED[0]


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        h: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_size: int | None,
        compiled: bool,
    ) -> torch.Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if chunk_size is None:
            chunk_size = device_chunk_size(h, weight.shape[0])
        block = _block_compiled() if compiled else _block_eager
        if chunk_size >= h.shape[0]:  # one block: no fp32 accumulator, no per-block adds and casts
            loss, grad = block(h @ weight.T, targets, h.dtype)  # logits [N, V] -> loss, dL/dlogits
            ctx.save_for_backward(
                grad @ weight if need_h else torch.empty(0), grad.T @ h if need_w else torch.empty(0)
            )
            ctx.need = (need_h, need_w)
            return loss
        grad_h = torch.empty_like(h) if need_h else None  # [N, H]
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        )  # [V, H]
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for start in range(0, h.shape[0], chunk_size):
            hc, tc = h[start : start + chunk_size], targets[start : start + chunk_size]  # [c, H], [c]
            loss, grad = block(hc @ weight.T, tc, h.dtype)  # logits [c, V] -> loss, dL/dlogits
            total += loss
            if need_h or need_w:
                if need_h:
                    grad_h[start : start + chunk_size] = grad @ weight
                if need_w:
                    grad_w += (grad.T @ hc).float()
        ctx.save_for_backward(
            grad_h if need_h else torch.empty(0), grad_w.to(weight.dtype) if need_w else torch.empty(0)
        )
        ctx.need = (need_h, need_w)
        return total

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, None, None, None]:
        grad_h, grad_w = ctx.saved_tensors
        need_h, need_w = ctx.need
        return (
            grad_h * grad_out.to(grad_h.dtype) if need_h else None,
            grad_w * grad_out.to(grad_w.dtype) if need_w else None,
            None,
            None,
            None,
        )


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_size: int | None = None,
    *,
    compiled: bool = False,
) -> torch.Tensor:
    """Summed cross-entropy of ``h [..., H] @ weight[V, H]^T`` against ``targets [...]`` (-100 = no loss), in fp32.
    ``chunk_size``: rows per block (None: :func:`default_chunk_size`, one block per call on CUDA where the
    logits fit 1/16 of the device's memory, fp32 logits of a block within 1 GiB elsewhere); at least the number
    of rows makes one block, whose weight gradient is one GEMM in the weight's dtype (the same numbers as the
    blocked path with that chunk size: there a single block's product is cast to fp32, added to zeros and cast
    back), with no fp32 accumulator and no per-block adds (on an H200 at 32K rows and a 64K vocabulary one block
    holds 4 GiB of bf16 logits and 4 GiB of their gradient); ``compiled``: each block's arithmetic through
    ``torch.compile`` (two fused kernels)."""
    return _LinearCrossEntropy.apply(
        h.reshape(-1, h.shape[-1]), weight, targets.reshape(-1), chunk_size, compiled
    )
