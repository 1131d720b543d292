"""The end of the attention's q/k/v projection (QK-norm, RoPE, v) on the round-10 paths: what
``model.glm.Attention.project`` runs when ``Attention.fused_rope`` is set (:func:`model.kernels.set_fused_glue`).

- ``True``: QK-norm as the default, then RoPE without ``cat`` (:func:`model.kernels.rope.apply_rope_flip`, the
  same values bit for bit);
- ``"triton"``: QK-norm and RoPE as one Triton kernel each way (:mod:`model.kernels.qknorm_rope_triton`) on CUDA
  tensors (and CPU ones under Triton's interpreter), where the layer has QK-norm and a power-of-two head dim;
  elsewhere as ``True``.

Both return v contiguous, so the copy that cuDNN's call otherwise makes of the strided v slice (an eager kernel
outside the compiled region) happens inside the region. :func:`project_tail` returns None where neither applies
(an unsupported rotary layout), and the default path runs.
"""

from __future__ import annotations

import torch
from torch import nn

from model.kernels.rope import apply_rope_flip, flip_rope_supported
from model.kernels.swiglu import _INTERPRET


def project_tail(
    attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """q [B, S, nh, D], k/v [B, S, nkv, D] straight from the projections (views of its output), cos/sin
    [B, S, rot] -> (q, k, v) ready for attention, or None when ``attn.fused_rope`` is off or does not apply."""
    mode = getattr(attn, "fused_rope", False)
    d, rot = q.shape[-1], cos.shape[-1]
    if not mode or not flip_rope_supported(d, rot):
        return None
    kernel = getattr(attn, "qknorm_rope_kernel", None)  # set by set_fused_glue(rope="triton")
    if (
        mode == "triton"
        and kernel is not None
        and attn.use_qk_norm
        and (q.is_cuda or _INTERPRET)
        and not d & (d - 1)
    ):
        q = kernel(q, attn.q_norm.weight, cos, sin, attn.q_norm.eps)
        k = kernel(k, attn.k_norm.weight, cos, sin, attn.k_norm.eps)
        return q, k, v.contiguous()
    if attn.use_qk_norm:
        q, k = attn.q_norm(q), attn.k_norm(k)
    return apply_rope_flip(q, cos, sin), apply_rope_flip(k, cos, sin), v.contiguous()
