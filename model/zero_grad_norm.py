"""DeepSpeed ZeRO 1/2's gradient norm in one ``foreach`` pass in fp32 instead of one fp64 copy and one fp64 norm
per gradient (round 10, opt-in: :func:`use_foreach_grad_norm` on an initialised engine).

DeepSpeed 0.19's ``DeepSpeedZeroOptimizer.get_grad_norm_direct`` (the norm that gradient clipping needs, once per
optimizer step) widens every gradient of the partition to ``get_norm_dtype()`` (fp64 on CUDA) and norms each one:
at the ``small`` headline step that is 225 copies that write 0.84B fp64 values (3.9 ms on an H200) and 225 fp64
norms that read them back (2.5 ms), 1.4% of the step, for one scalar (docs/TRAIN_SPEED.md, "Where the round-8
step's time goes"). :func:`foreach_grad_norm_direct` computes the same per-gradient L2 norms with
``torch._foreach_norm(..., dtype=torch.float32)`` (one multi-tensor pass over the bf16 gradients, accumulating in
fp32) and sums their squares in fp64 as DeepSpeed does, then runs DeepSpeed's own all-reduces and its NaN/inf
masking. The result differs from DeepSpeed's by fp32 rounding of each tensor's sum of squares (relative ~1e-7,
far below what clipping at 1.0 can tell apart); a non-finite gradient still gives a non-finite norm (masked by
DeepSpeed as before: the training entry point stops on it).

The same parameters are skipped as in DeepSpeed (zero-padding tensors, pipeline-replicated parameters, model-parallel
duplicates on ranks other than 0); norms other than L2 (``inf``) go to DeepSpeed's own code.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import torch


def foreach_grad_norm_direct(
    self: Any, gradients: list[torch.Tensor], params: list[Any], norm_type: float = 2
) -> torch.Tensor:
    """``DeepSpeedZeroOptimizer.get_grad_norm_direct`` for the L2 norm with fp32 foreach norms (module docstring);
    ``self`` is the ZeRO optimizer."""
    from deepspeed import comm as dist
    from deepspeed.runtime.constants import PIPE_REPLICATED
    from deepspeed.runtime.utils import is_model_parallel_parameter, mask_nan_or_inf_with_val_inplace

    norm_type = float(norm_type)
    if norm_type != 2.0:
        return type(self).get_grad_norm_direct(self, gradients, params, norm_type)
    kept = []
    param_gradients = (g for g in gradients if not getattr(g, "_zero_padding", False))
    for g, p in zip(
        param_gradients, params, strict=False
    ):  # DeepSpeed's own pairing (zip stops short) and skips
        if hasattr(p, PIPE_REPLICATED) and p.ds_pipe_replicated:
            continue
        if is_model_parallel_parameter(p) or self.model_parallel_rank == 0:
            kept.append(g.detach())
    if kept:
        norms = torch._foreach_norm(kept, 2, dtype=torch.float32)
        total_norm = torch.stack(norms).double().pow(2).sum().float()
    else:
        total_norm = torch.tensor(0.0, dtype=torch.float32, device=self.device)
    dist.all_reduce(total_norm, op=dist.ReduceOp.SUM, group=self.dp_process_group)
    self._model_parallel_all_reduce(tensor=total_norm, op=dist.ReduceOp.SUM)
    total_norm = total_norm.pow(1.0 / norm_type)
    mask_nan_or_inf_with_val_inplace(total_norm, device=self.device)
    return total_norm


def use_foreach_grad_norm(engine: Any) -> bool:
    """Make ``engine``'s ZeRO optimizer (DeepSpeed's ``DeepSpeedZeroOptimizer``, ZeRO 1/2) compute its gradient norm
    by :func:`foreach_grad_norm_direct` (this optimizer object only). Returns False, changing nothing, when the
    engine runs another optimizer (ZeRO 0, ZeRO 3, ``BF16_Optimizer``), which has its own norm."""
    opt = getattr(engine, "optimizer", None)
    if opt is None or type(opt).__name__ != "DeepSpeedZeroOptimizer":
        return False
    opt.get_grad_norm_direct = types.MethodType(foreach_grad_norm_direct, opt)
    return True


def is_invalid_norm(norm: float | torch.Tensor) -> bool:
    """True for a gradient norm that is NaN, infinite or negative (DeepSpeed masks a NaN/inf group norm to -1)."""
    value = float(norm)
    return not math.isfinite(value) or value < 0


def track_invalid_group_norms(engine: Any) -> Callable[[], bool] | None:
    """Record every per-group norm ``engine``'s ZeRO 1/2 optimizer computes (its own or the foreach one: call this
    after :func:`use_foreach_grad_norm`); the returned function says whether any since its last call was invalid
    (NaN/inf, or DeepSpeed's -1 sentinel) and forgets them. DeepSpeed before ``combine_grad_norm_groups`` (0.19.8
    has it) combined a -1 group norm as a finite 1.0, so the combined norm alone cannot tell an overflow there.
    One host read per call (the step's grad norm is read at the same point). None when the engine runs another
    optimizer (ZeRO 0: the loop's own clipping sees the raw norm)."""
    opt = getattr(engine, "optimizer", None)
    if opt is None or type(opt).__name__ != "DeepSpeedZeroOptimizer":
        return None
    inner = opt.get_grad_norm_direct
    seen: list[torch.Tensor] = []

    def recorded(self: Any, *args: Any, **kwargs: Any) -> Any:
        norm = inner(*args, **kwargs)
        seen.append(torch.as_tensor(norm).detach().reshape(-1).float())
        return norm

    opt.get_grad_norm_direct = types.MethodType(recorded, opt)

    def any_invalid() -> bool:
        if not seen:
            return False
        norms = torch.cat([n.to(seen[0].device) for n in seen])
        seen.clear()
        return bool(((~torch.isfinite(norms)) | (norms < 0)).any())

    return any_invalid
