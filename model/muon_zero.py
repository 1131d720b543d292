"""Muon under DeepSpeed ZeRO-1/2, with clipping on the raw gradients.

ZeRO-1/2 flatten each optimizer group into one vector and give every rank a slice of it, cut wherever the slice
boundary falls: a Muon matrix can straddle two ranks, and DeepSpeed's own Muon support then orthogonalises inside
its reduction and clips the *orthogonalised* update with its ``gradient_clipping`` (DeepSpeed PR #7776). So the
two families are split here:

- **AdamW part** (embedding, head, norms, biases, router): the client optimizer DeepSpeed wraps is
  :class:`ClippedAdamW` over these groups only; ZeRO partitions its moments (stage 1) and gradients too (stage 2)
  as usual. DeepSpeed's ``gradient_clipping`` is off.
- **Muon part** (every hidden matrix): never handed to DeepSpeed. :class:`ShardedMuon` cuts it into whole
  matrices (one per 2-D weight, one per expert of a stacked ``[E, ...]`` expert weight) and gives each to one
  owner rank (greedy by size, so ranks hold about equal shares). At the step boundary every rank reduces each
  matrix's gradient to its owner (``dist.reduce``, averaged like DeepSpeed's all-reduce) and drops its own
  gradients; the owner keeps the momentum of its matrices, orthogonalises them (``model/muon.py``'s
  :func:`~model.muon.muon_updates`, the step ZeRO 0 takes) and broadcasts the new weights.

Clipping: the global norm is ``sqrt(|g_adamw|^2 + |g_muon|^2)`` over the reduced raw gradients. The Muon part's
square is summed by the owners and all-reduced (:meth:`ShardedMuon.reduce_grads`); the AdamW part's norm is the
one DeepSpeed computes over its partitions at the start of its step, before it calls the client optimizer (the
value the engine reports as ``get_global_grad_norm``). :class:`RawGradClip` combines them; ``ClippedAdamW``
scales its gradient partitions and ``ShardedMuon`` its reduced gradients by the same factor
``min(1, max_norm / (norm + 1e-6))`` (``torch.nn.utils.clip_grad_norm_``'s) before any moment or momentum sees
them, so a run at ZeRO 1 or 2 takes ZeRO 0's steps.

Memory per rank, against ZeRO 0 (N ranks): Muon momentum 1/N (whole matrices, about equal shares); AdamW moments
1/N (DeepSpeed); AdamW gradients 1/N at stage 2 (DeepSpeed). Muon gradients are whole on every rank during the
backward pass (they are reduced once, at the step boundary) and only the owner's 1/N is kept after it: stage 2
does not lower the peak for the matrices. Weights stay whole on every rank (as in any ZeRO-1/2); bf16 weights have
no fp32 master copy for the Muon part (as at ZeRO 0). Newton-Schulz work is split over the ranks too.

Checkpoints: DeepSpeed saves the weights and the AdamW part; :meth:`ShardedMuon.save` writes each rank's momentum
(keyed by matrix, so a resume with another rank count finds every matrix) beside DeepSpeed's files.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from model.muon import OptimConfig, adamw_group_step, apply_muon_updates, muon_updates

MOMENTUM_FILE = "muon_momentum_rank{rank:05d}.pt"


@dataclass(frozen=True)
class _Matrix:
    """One matrix Muon treats as a whole: a 2-D weight, or expert ``index`` of a stacked expert weight."""

    key: str
    name: str
    param: nn.Parameter
    index: int | None
    owner: int

    def of(self, t: torch.Tensor) -> torch.Tensor:
        """This matrix's view of ``t`` (the parameter, or a tensor of its shape): ``[E, A, B] -> [1, A, B]``."""
        return t if self.index is None else t[self.index : self.index + 1]


class ShardedMuon:
    """The Muon part of a ZeRO-1/2 run: whole matrices, each owned by one rank (see the module docstring).

    Per step: ``sq = reduce_grads()`` after the last backward of the step, then ``step(lr, coef)``."""

    def __init__(
        self,
        named: Iterable[tuple[str, nn.Parameter]],
        cfg: OptimConfig,
        rank: int,
        world: int,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        pieces: list[tuple[str, str, nn.Parameter, int | None]] = []
        for name, p in named:
            if p.ndim == 2:
                pieces.append((name, name, p, None))
            elif p.ndim == 3:  # stacked experts [E, A, B]: one matrix per expert (gate and up split later)
                pieces += [(f"{name}.{e}", name, p, e) for e in range(p.shape[0])]
            else:
                raise ValueError(
                    f"Muon parameter {name} has shape {tuple(p.shape)}; expected 2-D or [E, A, B]"
                )
        load = [0] * world
        owner: dict[str, int] = {}
        per = {key: p.numel() // (p.shape[0] if e is not None else 1) for key, _, p, e in pieces}
        for key, *_ in sorted(pieces, key=lambda t: -per[t[0]]):  # stable: name order among equal sizes
            r = min(range(world), key=lambda k: (load[k], k))
            owner[key] = r
            load[r] += per[key]
        self.matrices = [_Matrix(key, name, p, e, owner[key]) for key, name, p, e in pieces]
        self.by_owner = [[m for m in self.matrices if m.owner == r] for r in range(world)]
        self.params = list({id(m.param): m.param for m in self.matrices}.values())
        self.rank, self.world, self.group = rank, world, group
        self.hparams = {
            "momentum": cfg.momentum, "nesterov": cfg.nesterov, "ns_steps": cfg.ns_steps,
            "update_rms": cfg.update_rms,
        }  # fmt: skip
        self.weight_decay = cfg.weight_decay
        self.momentum: dict[str, torch.Tensor] = {}  # owned matrices only
        self.grads: dict[str, torch.Tensor] = {}  # owned reduced gradients, between reduce_grads and step

    @property
    def mine(self) -> list[_Matrix]:
        return self.by_owner[self.rank]

    def owned_numel(self) -> int:
        return sum(m.of(m.param).numel() for m in self.mine)

    @torch.no_grad()
    def reduce_grads(self) -> float:
        """Average every matrix's gradient onto its owner, free the parameters' gradients, and return the squared
        L2 norm of all reduced Muon gradients (the same on every rank). A missing gradient counts as zeros (as
        DeepSpeed's own reduction does at ZeRO 0)."""
        grads = {id(p): (p.grad if p.grad is not None else torch.zeros_like(p)) for p in self.params}
        for r, mats in enumerate(self.by_owner):
            if not mats:
                continue
            parts = [m.of(grads[id(m.param)]) for m in mats]
            flat = _flatten_dense_tensors(parts)
            if self.world > 1:
                dist.reduce(flat, dst=r, group=self.group)
            if r == self.rank:
                flat.mul_(1.0 / self.world)
                for m, g in zip(mats, _unflatten_dense_tensors(flat, parts), strict=True):
                    self.grads[m.key] = g
        for p in self.params:
            p.grad = None
        device = self.params[0].device if self.params else torch.device("cpu")
        sq = torch.zeros((), dtype=torch.float64, device=device)
        if self.grads:
            norms = torch._foreach_norm([g.float() for g in self.grads.values()])
            sq = torch.stack(norms).double().pow(2).sum()
        if self.world > 1:
            dist.all_reduce(sq, group=self.group)
        return float(sq)

    @torch.no_grad()
    def step(self, lr: float, coef: torch.Tensor | None = None) -> None:
        """Scale the owned reduced gradients by ``coef`` (the clip factor, None: unclipped), take the Muon step on
        the owned matrices, then broadcast every owner's new weights."""
        mine = self.mine
        if mine:
            grads = [self.grads.pop(m.key) for m in mine]
            if coef is not None:
                torch._foreach_mul_(grads, coef.to(grads[0].device))
            bufs = [
                self.momentum.setdefault(m.key, torch.zeros_like(g)) for m, g in zip(mine, grads, strict=True)
            ]
            updates = muon_updates(grads, bufs, [m.name for m in mine], self.hparams)
            apply_muon_updates([m.of(m.param.data) for m in mine], updates, lr, self.weight_decay)
        self.grads.clear()
        if self.world > 1:
            for r, mats in enumerate(self.by_owner):
                if not mats:
                    continue
                views = [m.of(m.param.data) for m in mats]
                flat = _flatten_dense_tensors(views)
                dist.broadcast(flat, src=r, group=self.group)
                if r != self.rank:
                    for v, new in zip(views, _unflatten_dense_tensors(flat, views), strict=True):
                        v.copy_(new)

    def save(self, folder: str) -> str:
        """This rank's momentum into ``folder`` (a checkpoint's tag folder); returns the file."""
        path = os.path.join(folder, MOMENTUM_FILE.format(rank=self.rank))
        torch.save({k: t.cpu() for k, t in self.momentum.items()}, path)
        return path

    def load(self, folder: str) -> None:
        """The momentum of this rank's matrices from the files of every rank in ``folder`` (any rank count)."""
        found: dict[str, torch.Tensor] = {}
        for path in sorted(glob.glob(os.path.join(folder, MOMENTUM_FILE.replace("{rank:05d}", "*")))):
            found.update(torch.load(path, map_location="cpu", weights_only=True))
        missing = [m.key for m in self.mine if m.key not in found]
        if found and missing:
            raise ValueError(
                f"{folder}: no Muon momentum for {missing[:3]}{' ...' if len(missing) > 3 else ''}; the "
                "checkpoint was written for another model; use a fresh checkpoint.dir"
            )
        if not found:
            raise ValueError(
                f"{folder}: no Muon momentum files ({MOMENTUM_FILE.format(rank=0)} ...); it was not written by a "
                "ZeRO-1/2 Muon run (resume with the zero_stage it was written with, or use a fresh checkpoint.dir)"
            )
        for m in self.mine:
            p = m.of(m.param)
            self.momentum[m.key] = found[m.key].to(device=p.device, dtype=p.dtype)


class RawGradClip:
    """The clip factor of the raw global gradient norm of a ZeRO-1/2 Muon run: ``adam_norm`` returns DeepSpeed's
    norm of the AdamW partitions (set before it calls the client optimizer), ``muon_sq`` is set each step from
    :meth:`ShardedMuon.reduce_grads`."""

    def __init__(self, max_norm: float, adam_norm: Callable[[], float | torch.Tensor | None]) -> None:
        self.max_norm = max_norm
        self.adam_norm = adam_norm
        self.muon_sq = 0.0

    def norm(self) -> float:
        adam = self.adam_norm()
        if adam is None:
            raise RuntimeError(
                "DeepSpeed computed no gradient norm (zero_optimization.compute_grad_norm is off); raw-gradient "
                "clipping of a Muon run needs it"
            )
        adam = float(adam)
        if adam < 0:  # DeepSpeed's marker of a non-finite norm
            return float("nan")
        return math.sqrt(adam * adam + self.muon_sq)

    def coef(self) -> torch.Tensor | None:
        """``min(1, max_norm / (norm + 1e-6))`` as an fp32 scalar (``clip_grad_norm_``'s), None when off."""
        if self.max_norm <= 0:
            return None
        norm = torch.tensor(self.norm(), dtype=torch.float32)
        return torch.clamp(self.max_norm / (norm + 1e-6), max=1.0)


class ClippedAdamW(torch.optim.Optimizer):
    """The AdamW groups of :func:`model.muon.build_optimizer` as the client optimizer DeepSpeed ZeRO-1/2 wraps:
    the same AdamW step as :class:`model.muon.MuonAdamW`'s, after scaling the gradients by ``clip.coef()``.
    DeepSpeed calls ``step`` once per group (or once for all), with the gradient partitions in place and its norm
    already computed. (Its class name must not contain "muon": DeepSpeed keys its own Muon path on that.)"""

    def __init__(self, param_groups: Iterable[dict], cfg: OptimConfig) -> None:
        defaults = {
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "betas": cfg.adam_betas,
            "eps": cfg.adam_eps,
        }
        super().__init__(list(param_groups), defaults)
        self.clip: RawGradClip | None = None

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("ClippedAdamW.step takes no closure")
        coef = self.clip.coef() if self.clip is not None else None
        for group in self.param_groups:
            if coef is not None:
                grads = [p.grad for p in group["params"] if p.grad is not None]
                if grads:
                    torch._foreach_mul_(grads, coef.to(grads[0].device))
            adamw_group_step(group, self.state)


def build_zero_muon(
    model: nn.Module, cfg: OptimConfig, rank: int, world: int
) -> tuple[ClippedAdamW, ShardedMuon]:
    """(the AdamW part for ``deepspeed.initialize``, the Muon part) of ``model``; set ``adamw.clip`` to a
    :class:`RawGradClip` once the engine exists."""
    from model.muon import split_params

    muon, adam = split_params(model)
    decay = [p for _, p in adam if p.ndim >= 2]
    no_decay = [p for _, p in adam if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    adamw = ClippedAdamW([g for g in groups if g["params"]], cfg)
    return adamw, ShardedMuon(muon, cfg, rank, world)
