"""Rotary position embedding (rotate-half, partial) written without ``cat`` (round 10, opt-in:
``Attention.fused_rope``).

``apply_rope`` of model/glm.py builds its output with two ``cat``s (the rotated half ``cat(-x2, x1)``, then the
rotated dims with the untouched ones). Inductor lowers a pointwise ``cat`` to masked loads per output slice, and in
the round-8 profile that split QK-norm + RoPE into two passes over q and k (the norm's reduction runs over whole
128-wide head rows, the RoPE apply over 64-wide slices, so they did not fuse: 6.9 ms per step forward) and put the
RoPE backward (slice-backward + cat) in a kernel of its own before QK-norm's backward read its output again
(docs/TRAIN_SPEED.md, "Where the round-8 step's time goes").

:func:`apply_rope_flip` computes the same values as one elementwise expression over the whole head row: with the
head dim viewed as [D/rot, 2, rot/2] (block 0 the rotated dims, its two halves x1 and x2; the other blocks
untouched), ``out = x * C + flip(x, -2) * S`` where C is cos on block 0 and 1 elsewhere and S is (-sin, +sin) on
block 0's halves and 0 elsewhere. ``flip`` is an affine index (no mask), its backward is a flip, and the
expression's backward is ``g * C + flip(g * S)``: no ``cat`` either way.

Values: in eager, the rotated dims are the default's products and sums in the same order (``(-x2) * sin`` and
``x2 * (-sin)`` round alike), and the untouched dims are ``x * 1 + partner * 0``, equal to x (a -0.0 may come out
as +0.0; an inf or NaN in an untouched dim's partner would spread to it, where the default copies the dim as is).
"""

from __future__ import annotations

import torch


def flip_rope_supported(head_dim: int, rot: int) -> bool:
    """Whether :func:`apply_rope_flip` handles ``head_dim`` with ``rot`` rotated dims (an even ``rot`` dividing the
    head dim; the model's flavours all qualify); elsewhere callers keep the default."""
    return rot > 0 and rot % 2 == 0 and head_dim % rot == 0


def apply_rope_flip(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, S, n, D], cos/sin [B, S, rot] (rotate-half tables: both halves of the last dim alike) -> x with its
    first rot dims rotated: the values of model.glm.apply_rope (module docstring), without ``cat``."""
    rot, d = cos.shape[-1], x.shape[-1]
    if not flip_rope_supported(d, rot):
        raise ValueError(f"apply_rope_flip needs an even rotary dim dividing the head dim; got {rot} of {d}")
    blocks, half = d // rot, rot // 2
    x6 = x.unflatten(-1, (blocks, 2, half))  # [B, S, n, D/rot, 2, rot/2]
    c = cos.unflatten(-1, (2, half))[:, :, None, None]  # [B, S, 1, 1, 2, rot/2]
    s = sin.unflatten(-1, (2, half))[:, :, None, None]
    idx = torch.arange(blocks, device=x.device).view(blocks, 1, 1)
    rotated = idx == 0  # [D/rot, 1, 1]: the rotated block
    first = torch.arange(2, device=x.device).view(2, 1) == 0  # [2, 1]: x1's half
    c_full = torch.where(rotated, c, torch.ones_like(c))  # [B, S, 1, D/rot, 2, rot/2]
    s_full = torch.where(rotated, torch.where(first, -s, s), torch.zeros_like(s))
    return (x6 * c_full + x6.flip(-2) * s_full).flatten(-3)
