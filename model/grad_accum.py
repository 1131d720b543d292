"""Gradient accumulation over micro-batches with one ``foreach`` add per dtype instead of one add per parameter.

When a parameter already has a gradient, autograd's ``AccumulateGrad`` adds each micro-batch's new gradient into it
with its own kernel: at the ``small`` headline step (4 micro-batches, about 220 parameters) that is 660 small add
kernels per optimizer step, 5.8 ms of GPU time on an H200 for about 0.1 GB of bf16 gradients (round-7 profile,
docs/TRAIN_SPEED.md), launch-bound. :class:`ForeachGradAccumulation` moves the gradients of the small parameters
aside when a backward starts (autograd then stores the new gradients without a kernel) and, when that backward
ends, adds the new gradients to the old ones with ``torch._foreach_add_`` (a few multi-tensor kernels) and puts the
sums back as the gradients. The sum is the same operation as autograd's in-place add (``old += new``, same dtype,
same rounding), so the gradients are bit-identical. Large parameters (above ``max_numel``: the experts, the
embedding, the head) keep autograd's own add: they are bandwidth-bound either way, and a new gradient whose layout
differs from its parameter's would be copied by autograd when no gradient is there yet.

Opt-in, and it stays so: measured on the H200 training step (``small``, 4 micro-batches of 8 x 4096 rows, DeepSpeed
ZeRO-1) it gave 1.002x, within the call's noise (docs/TRAIN_SPEED.md, "Round 8 measured"): the adds it saves did not show in the
step's time. Nothing in the model or the training entry point turns it on.

Where it may be used: wherever nothing reads or moves ``.grad`` during the backward pass itself: plain PyTorch,
DeepSpeed ZeRO 0 and ZeRO 1 without ``overlap_comm`` (its hooks then only count; the gradients are read after
backward). Not under ZeRO 2 or ``overlap_comm``, whose hooks reduce and free each gradient as it is produced: when
every new gradient is gone at the end of a backward, it raises instead of putting the old sums back.

Mechanics: a forward hook on the model registers a hook on the returned loss (``output.loss``, or the output itself
when it is a tensor); that hook runs first in the backward pass, before any gradient is accumulated, and queues the
final add as an autograd-engine callback, which runs when the backward pass ends and before callbacks queued later
(DeepSpeed queues its own epilogue on the first gradient hook, so it sees the sums).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ForeachGradAccumulation:
    """Accumulate the gradients of ``model``'s parameters of at most ``max_numel`` elements with foreach adds (see the
    module docstring). ``remove()`` detaches it."""

    def __init__(self, model: nn.Module, max_numel: int = 1 << 22) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad and p.numel() <= max_numel]
        self._handle = model.register_forward_hook(self._on_forward)
        self.adds = 0  # foreach accumulations done (for tests and logs)

    def remove(self) -> None:
        """Stop: later backward passes accumulate as autograd does."""
        self._handle.remove()

    def _on_forward(self, module: nn.Module, args: Any, output: Any) -> None:
        loss = output if isinstance(output, torch.Tensor) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.register_hook(self._start)

    def _start(self, grad: torch.Tensor) -> None:
        stash = [(p, p.grad) for p in self.params if p.grad is not None]
        if not stash:  # the first micro-batch: autograd stores the gradients, nothing to add
            return
        for p, _ in stash:
            p.grad = None
        torch.autograd.Variable._execution_engine.queue_callback(lambda: self._finish(stash))

    def _finish(self, stash: list[tuple[nn.Parameter, torch.Tensor]]) -> None:
        if all(p.grad is None for p, _ in stash):
            # every new gradient is gone: something took them during backward (a ZeRO-2 or overlap_comm hook
            # reducing and freeing each one); putting the old sums back would lose this micro-batch
            raise RuntimeError(
                "ForeachGradAccumulation: the gradients of this backward were taken during it (DeepSpeed ZeRO 2 or "
                "overlap_comm reduce and free each gradient as it is produced); remove it for that setup "
                "(model/grad_accum.py)"
            )
        groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        for p, old in stash:
            new = p.grad
            p.grad = old
            if new is None:  # no gradient this micro-batch (an unused layer): the old one stays
                continue
            if new.dtype != old.dtype or new.device != old.device:  # autograd's add would cast; so do we
                new = new.to(old)
            olds, news = groups.setdefault((old.device, old.dtype), ([], []))
            olds.append(old)
            news.append(new)
        with torch.no_grad():
            for olds, news in groups.values():
                torch._foreach_add_(olds, news)
        self.adds += 1
