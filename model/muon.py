"""Muon for the hidden matrices, AdamW for the rest, in one ``torch.optim.Optimizer``; clipping on raw gradients.

Usage::

    opt = build_optimizer(model, OptimConfig(lr=2.5e-4))
    for step in ...:
        loss.backward()
        set_lr(opt, lr_at(step, schedule))                 # model/schedule.py
        grad_norm = clip_and_step(opt, max_norm=1.0)      # clip RAW grads, then Muon / AdamW step
        model.update_router_biases(u)                     # loss-free balance, after the step
        opt.zero_grad(set_to_none=True)

Which parameter gets what (:func:`split_params`):

- Muon: every matrix inside the blocks: attention q/k/v/o, dense and shared-expert MLPs, the MTP ``eh_proj``, and
  the routed experts, orthogonalised **per expert** (``gate_up_proj`` [E, 2I, H] is split into its gate and up
  halves, so 2E matrices of [I, H]; ``down_proj`` [E, H, I] is E matrices). Each parameter carries
  ``p.use_muon = True`` (the attribute DeepSpeed's Muon integration reads).
- AdamW: token embedding, output head, the router (``mlp.gate.weight``), all norms and biases.

Muon step (Jordan et al. 2024; scaling of Liu et al. 2025, "Muon is Scalable", arXiv 2502.16982): Nesterov momentum
(0.95) on the raw gradient, 5 Newton-Schulz iterations of the quintic (3.4445, -4.7750, 2.0315) towards the nearest
semi-orthogonal matrix, then the update is scaled by ``0.2 * sqrt(max(rows, cols))`` so its RMS matches AdamW's
(~0.2) and both families share one learning rate and weight decay. Weight decay (0.1, decoupled, ``p *= 1 - lr*wd``)
applies to every matrix (embedding and head included), not to norms and biases.

Clipping: :func:`clip_and_step` clips the global norm of the raw gradients *before* the optimizer orthogonalises
anything. (DeepSpeed ZeRO-1/2's own ``gradient_clipping`` clips after its Muon has replaced the gradient by the
orthogonalised update, DeepSpeed PR #7776; the launcher must clip here and leave DeepSpeed's clipping off.)
Newton-Schulz runs in fp32 on CPU and bf16 on CUDA.

ZeRO: DeepSpeed ZeRO-1/2 hand a client optimizer flat fp32 partitions, not matrices (and DeepSpeed 0.19 runs its own
Muon update on parameters marked ``use_muon`` when the optimizer's class name contains "muon"), so this optimizer
runs with ZeRO stage 0 (data parallel, full optimizer state per rank); a flat parameter in a Muon group is an error.
At ZeRO 1/2 the training loop splits the two families instead (``model/muon_zero.py``): DeepSpeed partitions the
AdamW part, and the Muon matrices are sharded whole (one owner rank per matrix, per expert) and step through the
same :func:`muon_updates` and :func:`apply_muon_updates` as here, after the same raw-gradient clip factor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from model.optim_config import OptimConfig

NS_COEFFS = (3.4445, -4.7750, 2.0315)


_ADAM_NAMES = ("embed_tokens.", "lm_head.", "mlp.gate.weight")


def split_params(model: nn.Module) -> tuple[list[tuple[str, nn.Parameter]], list[tuple[str, nn.Parameter]]]:
    """(Muon parameters, AdamW parameters) of ``model``, as (name, parameter) in name order, trainable ones only."""
    muon, adam = [], []
    for name, p in sorted(model.named_parameters()):
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and not any(tag in name for tag in _ADAM_NAMES)
        (muon if is_matrix else adam).append((name, p))
    return muon, adam


def build_optimizer(model: nn.Module, cfg: OptimConfig | None = None) -> MuonAdamW:
    """A :class:`MuonAdamW` over ``model``'s trainable parameters with the groups of :func:`split_params`."""
    cfg = cfg or OptimConfig()
    muon, adam = split_params(model)
    for _, p in muon:
        p.use_muon = True  # type: ignore[attr-defined]
    for _, p in adam:
        p.use_muon = False  # type: ignore[attr-defined]
    decay = [p for n, p in adam if p.ndim >= 2]
    no_decay = [p for n, p in adam if p.ndim < 2]
    groups = [
        {"params": [p for _, p in muon], "use_muon": True, "weight_decay": cfg.weight_decay},
        {"params": decay, "use_muon": False, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "use_muon": False, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    names = {id(p): n for n, p in [*muon, *adam]}
    opt = MuonAdamW(groups, cfg)
    opt.param_names = names
    return opt


def newton_schulz(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximate orthogonalisation of g [..., A, B] (each trailing matrix separately): returns a matrix with the
    same singular vectors and singular values pushed into roughly [0.7, 1.2]."""
    a, b, c = NS_COEFFS
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:  # iterate on the wide orientation: X X^T is the smaller Gram matrix
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.mT  # [..., A, A]
        poly = b * gram + c * (gram @ gram)
        x = a * x + poly @ x
    if transposed:
        x = x.mT
    return x.to(g.dtype)


def _as_matrices(t: torch.Tensor, name: str) -> torch.Tensor:
    """View of a Muon parameter (or its update) as a batch of the matrices Muon treats separately."""
    if t.ndim == 2:
        return t[None]  # [1, A, B]
    if name.endswith("gate_up_proj"):  # [E, 2I, H] -> [2E, I, H]: gate and up of every expert separately
        e, two_i, h = t.shape
        return t.reshape(e * 2, two_i // 2, h)
    return t.reshape(-1, t.shape[-2], t.shape[-1])  # [E, H, I] and any other stack of matrices


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer, two rules: groups with ``use_muon=True`` take the Muon step, the others AdamW."""

    def __init__(self, param_groups: Iterable[dict], cfg: OptimConfig) -> None:
        defaults = {
            "lr": cfg.lr,
            "weight_decay": cfg.weight_decay,
            "momentum": cfg.momentum,
            "nesterov": cfg.nesterov,
            "ns_steps": cfg.ns_steps,
            "update_rms": cfg.update_rms,
            "betas": cfg.adam_betas,
            "eps": cfg.adam_eps,
            "use_muon": False,
        }
        super().__init__(list(param_groups), defaults)
        self.param_names: dict[int, str] = {}

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("MuonAdamW.step takes no closure")
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon_group(group)
            else:
                self._adamw_group(group)

    def _muon_group(self, group: dict) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        params, grads, bufs, names = [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.ndim < 2:
                raise ValueError(
                    f"Muon got a parameter of shape {tuple(p.shape)}: it orthogonalises whole matrices. A flat "
                    "1-D tensor here means ZeRO-1/2 partitioned the parameters (DeepSpeed hands flat shards to the "
                    "client optimizer); under ZeRO-1/2 the Muon matrices go to model/muon_zero.py's ShardedMuon, "
                    "or put 1-D tensors in an AdamW group"
                )
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            bufs.append(state["momentum_buffer"])
            names.append(self.param_names.get(id(p), ""))
        if not params:
            return
        apply_muon_updates(params, muon_updates(grads, bufs, names, group), lr, wd)

    def _adamw_group(self, group: dict) -> None:
        adamw_group_step(group, self.state)


def muon_updates(
    grads: list[torch.Tensor], bufs: list[torch.Tensor], names: list[str], group: dict
) -> list[tuple[torch.Tensor, float]]:
    """Muon's update of each gradient, as (orthogonalised tensor of the gradient's shape, scale): Nesterov momentum
    (``bufs`` updated in place), Newton-Schulz on every matrix of :func:`_as_matrices` (one batched call per
    matrix shape: the attention projections of all layers, every expert's gate, up and down...); ``scale`` brings
    the update to RMS ``update_rms``. ``group`` gives momentum, nesterov, ns_steps and update_rms. ZeRO 0
    (:class:`MuonAdamW`) and ZeRO-1/2 (``model/muon_zero.py``) both step through this and
    :func:`apply_muon_updates`, so they take the same step."""
    beta = group["momentum"]
    mats = []
    for g, buf, name in zip(grads, bufs, names, strict=True):
        buf.mul_(beta).add_(g)
        update = g.add(buf, alpha=beta) if group["nesterov"] else buf
        mats.append(_as_matrices(update, name))  # [n, A, B]
    by_shape: dict[tuple[int, int], list[int]] = {}
    for i, m in enumerate(mats):
        by_shape.setdefault(tuple(m.shape[-2:]), []).append(i)
    out: list[tuple[torch.Tensor, float]] = [(grads[0], 0.0)] * len(grads)
    for (rows, cols), idx in by_shape.items():
        ortho = newton_schulz(torch.cat([mats[i] for i in idx]), group["ns_steps"])  # [sum n, A, B]
        scale = group["update_rms"] * math.sqrt(max(rows, cols))
        for i, o in zip(idx, ortho.split([mats[i].shape[0] for i in idx]), strict=True):
            out[i] = (o.reshape(grads[i].shape), scale)
    return out


def apply_muon_updates(
    params: list[torch.Tensor], updates: list[tuple[torch.Tensor, float]], lr: float, wd: float
) -> None:
    """``p *= 1 - lr * wd`` then ``p -= lr * scale * update`` for each parameter (or view of one)."""
    if wd:
        torch._foreach_mul_(params, 1 - lr * wd)
    by_scale: dict[float, list[int]] = {}
    for i, (_, scale) in enumerate(updates):
        by_scale.setdefault(scale, []).append(i)
    for scale, idx in by_scale.items():
        torch._foreach_add_([params[i] for i in idx], [updates[i][0] for i in idx], alpha=-lr * scale)


def adamw_group_step(group: dict, state: dict) -> None:
    """One decoupled AdamW step (torch's formulas) on the parameters of ``group`` that have a gradient, with
    foreach kernels over the group; ``state`` is the optimizer's per-parameter state. Shared by
    :class:`MuonAdamW` and the AdamW part that DeepSpeed ZeRO-1/2 partitions (``model/muon_zero.py``)."""
    lr, wd, (beta1, beta2), eps = group["lr"], group["weight_decay"], group["betas"], group["eps"]
    params, grads, ms, vs, bc1, bc2 = [], [], [], [], [], []
    for p in group["params"]:
        if p.grad is None:
            continue
        st = state[p]
        if "step" not in st:
            st["step"] = 0
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        st["step"] += 1
        params.append(p)
        grads.append(p.grad)
        ms.append(st["exp_avg"])
        vs.append(st["exp_avg_sq"])
        bc1.append(1 - beta1 ** st["step"])
        bc2.append(1 - beta2 ** st["step"])
    if not params:
        return
    # decoupled AdamW as torch's (same formulas), with foreach kernels over the whole group
    torch._foreach_lerp_(ms, grads, 1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
    denom = torch._foreach_div(vs, bc2)
    torch._foreach_sqrt_(denom)
    torch._foreach_add_(denom, eps)
    if wd:
        torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_addcdiv_(params, ms, denom, [-lr / b for b in bc1])


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every group (Muon and AdamW share it, see the module docstring)."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_and_step(optimizer: torch.optim.Optimizer, max_norm: float | None) -> float:
    """Clip the global L2 norm of the raw gradients to ``max_norm`` (None or <= 0: no clipping), then
    ``optimizer.step()``. Returns the norm before clipping (inf/nan are returned, not raised)."""
    grads = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    if not grads:
        optimizer.step()
        return 0.0
    if max_norm is not None and max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(grads, max_norm, error_if_nonfinite=False)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in grads])
    optimizer.step()
    return float(norm)
