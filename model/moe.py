"""The GLM-4.5 MoE feed-forward: sigmoid router with a correction bias, routed experts as 3D tensors, a shared expert,
loss-free balance counters and an optional sequence-level auxiliary balance loss.

Module and parameter names are those of transformers' ``Glm4MoeMoE`` (``mlp.gate.weight``,
``mlp.gate.e_score_correction_bias``, ``mlp.experts.gate_up_proj`` [E, 2I, H], ``mlp.experts.down_proj`` [E, H, I],
``mlp.shared_experts.{gate,up,down}_proj.weight``), so a state dict loads into ``Glm4MoeForCausalLM`` as is.

Routing (GLM-4.5 report, after DeepSeek-V3): ``s = sigmoid(x W^T)`` in fp32; the top-k experts are chosen on
``s + b`` (``b`` = ``e_score_correction_bias``, optionally group-limited), but the gate weights use ``s`` only,
renormalised over the k picks and multiplied by ``routed_scaling_factor``.

Loss-free balance (Wang et al. 2024, arXiv 2408.15664): each router counts its top-k picks in ``load`` while
training. After the optimizer step, :func:`update_router_biases` sums the counts over data-parallel ranks (one
all-reduce for all layers when ``torch.distributed`` is initialised), applies ``b += u * sign(mean(load) - load)``,
returns MaxVio per layer (``(max(load) - mean(load)) / mean(load)``) and clears the counts. Counting happens in
``train()`` mode only, pads excluded. Activation checkpointing reruns the forward in backward, which would count
twice: a trainer that uses it sets ``router.count_load = False`` around the recompute.

Expert compute (:class:`GroupedExperts`): the (token, expert) pairs are sorted by expert (group ends by
``searchsorted``, so no host sync and no data-dependent shape: the layer compiles whole), then

- ``loop``: one GEMM pair per expert over its contiguous slice (the expert tensors are ``unbind``-ed once: indexing
  a parameter per expert would make E full-size zero gradients in backward, which is what made per-expert loops
  slow at 64 experts).
- ``bmm``: the slices padded to the largest expert's count, one batched matmul over [E, C, H].
- ``grouped_mm``: ``F.grouped_mm`` (``torch._grouped_mm`` on older torch) over the sorted rows with expert offsets.
  One kernel on CUDA; on CPU torch 2.13 it is the fastest of the three or tied with ``loop``
  (benchmarks/model_cpu.py, CPU time, one thread, forward + backward, best of 7: debug 5.1 ms vs loop 5.8 / bmm 6.4;
  tiny 28 vs 28 / 32; small 417 vs 544 / 677), so ``auto`` picks it wherever the op exists, else ``loop``.

The outputs go back to token order by the inverse permutation and are summed over each token's k picks with their
gate weights (no atomic index_add: deterministic on GPU).

Dispatch (``MoE.dispatch``, :meth:`model.glm.GLMForCausalLM.set_moe_path`): ``gather`` moves tokens to the experts
and back with gathers whose backward is the other gather (model/moe_dispatch.py: no scatter-add, no atomics), one
``sort`` for the order and the sorted ids, the gate weights multiplied into the SwiGLU output before the down
projection; ``index`` is the path described above (an index, an ``index_copy_`` and a weighted sum). ``auto`` (the
default) takes ``gather`` on CUDA, where it measured +1.4% on the full training step and 2.1 GiB less memory on an
H200 (docs/TRAIN_SPEED.md, fourth round), and ``index`` elsewhere (the CPU paths stay as they were). Both give the
same loss and gradients (fp32: 1e-6). With ``MoE.fuse_shared`` (opt-in; measured 0.99x) the shared expert (same
width when ``n_shared_experts`` is 1) runs as one more group of the same grouped GEMM, every token visiting it once,
and its sum joins the combine.

Measured in the eighth GPU round (docs/TRAIN_SPEED.md, "Round 8 measured") and now the defaults on CUDA: the
router's top-k as k fused argmax rounds with the load counted by a one-hot sum (``TopkRouter.topk_impl``:
``auto``, the default, is ``argmax`` on CUDA tensors and ``topk`` elsewhere; :func:`topk_by_argmax`; the same
picks wherever a token's k+1 best scores are not tied; 1.020x the full H200 step), and the gather path's sort on
uint8 expert ids (``GroupedExperts.narrow_sort_keys``: ``None``, the default, is on for CUDA tensors; the same
permutation in one radix pass; 1.011x). CPU keeps torch's top-k and the int64 sort (both selectable there too):
the argmax rounds pay where ``torch.compile`` fuses them into the MoE region, which CPU training does not use, and
on CPU the narrow keys' casts cost about what the sort saves at the sizes trained there (``sort_slots``, one
thread: 2K slots 54 us against 47, 16K slots 636 against 614, 262K slots 1.7 ms against 4.3): the same
permutation, not reliably cheaper.

Measured in round 10 and the default on CUDA since round 11: the SwiGLU of the gather path's routed experts, the
shared experts and the dense MLPs runs :func:`model.kernels.swiglu.swiglu` with its backward as one Triton kernel
(``fused_swiglu``: ``None``, the default, resolves to ``"triton"`` on CUDA tensors where triton imports and to the
``chunk`` path elsewhere, :func:`model.kernels.swiglu.resolve_swiglu`; the same forward values; 1.024x the H200 step
at 8 x 4, 1.028x at 16 x 16). ``model.kernels.set_fused_glue(model, swiglu=False)`` opts out, and
``ARCFLOW_FUSED_SWIGLU=0`` for a whole pipeline (:func:`model.kernels.swiglu.env_swiglu`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from model.config import ModelConfig
from model.kernels.swiglu import resolve_swiglu, swiglu
from model.moe_dispatch import gather_sum, permute, sort_slots, spread

ExpertImpl = Literal["auto", "loop", "bmm", "grouped_mm"]
MoEDispatch = Literal["auto", "index", "gather"]
RouterTopk = Literal["auto", "topk", "argmax"]


def resolve_topk(impl: RouterTopk, device: torch.device) -> RouterTopk:
    """The router top-k that ``impl`` runs on ``device``: ``auto`` is ``argmax`` on CUDA (fused into the compiled
    MoE region; 1.020x the H200 step) and ``topk`` elsewhere (torch's top-k, as before on CPU)."""
    if impl == "auto":
        return "argmax" if device.type == "cuda" else "topk"
    return impl


def resolve_narrow_keys(narrow: bool | None, device: torch.device) -> bool:
    """Whether the gather dispatch sorts narrow expert ids on ``device``: ``None`` (the default) means on CUDA (one
    radix pass instead of eight; 1.011x the H200 step) and off elsewhere; a bool is taken as given."""
    return device.type == "cuda" if narrow is None else narrow


def topk_by_argmax(choice: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the k largest entries of each row of ``choice`` [T, E], largest first (``choice.topk(k)``'s
    indices), as k rounds of ``argmax`` over the row with each pick masked to -inf before the next. Under
    ``torch.compile`` the rounds are reductions over the same short rows and fuse into one kernel (torch's top-k,
    which inductor leaves to ATen, was a kernel of 112 us per MoE layer and micro-batch on an H200 at T = 32K,
    E = 64). Equal to ``topk`` wherever a row has no ties among its k+1 largest values; on a tie argmax takes the
    lowest index (topk's choice among ties is unspecified on CUDA)."""
    cols = torch.arange(choice.shape[-1], device=choice.device)
    picks = []
    for _ in range(k):
        idx = choice.argmax(-1, keepdim=True)  # [T, 1]
        picks.append(idx)
        choice = choice.masked_fill(cols == idx, float("-inf"))
    return torch.cat(picks, dim=-1)  # [T, k]


class MLP(nn.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``. HF: ``Glm4MoeMLP``."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)
        # SwiGLU's path (model/kernels.set_fused_glue): None (the default) the Triton backward on CUDA where triton
        # imports, the chunk path elsewhere (resolve_swiglu); False / True / "triton" as given
        self.fused_swiglu: bool | str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., H] -> [..., H]
        fused = resolve_swiglu(getattr(self, "fused_swiglu", None), x.device)
        if fused:  # one GEMM, SwiGLU with the cat-free (or Triton) backward: the same values
            gate_up = F.linear(x, torch.cat([self.gate_proj.weight, self.up_proj.weight]))
            return self.down_proj(swiglu(gate_up, None, "triton" if fused == "triton" else "torch"))
        if x.is_cuda:  # gate and up in one GEMM (the weights keep HF's names)
            gate, up = F.linear(x, torch.cat([self.gate_proj.weight, self.up_proj.weight])).chunk(2, dim=-1)
        else:  # on CPU the weight copy costs more than the call it saves
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class TopkRouter(nn.Module):
    """Sigmoid top-k router. HF: ``Glm4MoeTopkRouter`` (``weight`` [E, H] and ``e_score_correction_bias`` [E], fp32)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_experts = cfg.n_routed_experts
        self.top_k = cfg.num_experts_per_tok
        self.n_group, self.topk_group = cfg.n_group, cfg.topk_group
        self.norm_topk_prob = cfg.norm_topk_prob
        self.routed_scaling_factor = cfg.routed_scaling_factor
        self.weight = nn.Parameter(torch.zeros(self.n_experts, cfg.hidden_size, dtype=torch.float32))
        self.register_buffer("e_score_correction_bias", torch.zeros(self.n_experts, dtype=torch.float32))
        # top-k picks per expert since the last update_router_biases (not saved: a step's counts start at zero)
        self.register_buffer("load", torch.zeros(self.n_experts, dtype=torch.float32), persistent=False)
        self.count_load = True
        # "topk": torch's top-k and an index_add of the picks; "argmax": topk_by_argmax and the picks counted by a
        # one-hot sum (both fuse into the compiled region); "auto" (the default): argmax on CUDA, topk elsewhere
        # (resolve_topk; GLMForCausalLM.set_router_topk)
        self.topk_impl: RouterTopk = "auto"

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> TopkRouter:
        """Casts (``model.to(torch.bfloat16)``, DeepSpeed's bf16 wrap) leave the correction bias and the load counts
        in fp32: a bias step of u = 1e-3 on a bias near 0.1 would round away in bf16."""
        super()._apply(fn, recurse)
        for name in ("e_score_correction_bias", "load"):
            buf = self._buffers[name]
            if buf is not None and buf.dtype != torch.float32:
                self._buffers[name] = buf.float()
        return self

    def update_bias(self, u: float) -> float:
        """Loss-free balance step of this router alone (see :func:`update_router_biases`); returns its MaxVio."""
        return update_router_biases([self], u)[0]

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [T, H], valid [T] bool (tokens that count towards the load) -> (topk_idx [T, k] int64,
        topk_weight [T, k] in x's dtype, scores [T, E] fp32 sigmoid scores)."""
        impl = resolve_topk(self.topk_impl, x.device)
        scores = torch.sigmoid(F.linear(x.float(), self.weight.float()))  # [T, E]
        with torch.no_grad():
            choice = scores + self.e_score_correction_bias  # bias steers selection only
            if self.n_group > 1:
                per_group = choice.view(-1, self.n_group, self.n_experts // self.n_group)  # [T, G, E/G]
                group_score = per_group.topk(2, dim=-1).values.sum(-1)  # [T, G]
                keep = torch.zeros_like(group_score, dtype=torch.bool)
                keep.scatter_(1, group_score.topk(self.topk_group, dim=-1).indices, True)
                choice = per_group.masked_fill(~keep[..., None], float("-inf")).view(-1, self.n_experts)
            if impl == "argmax":
                topk_idx = topk_by_argmax(choice, self.top_k)  # [T, k]
            else:
                topk_idx = choice.topk(self.top_k, dim=-1).indices  # [T, k]
            if self.training and self.count_load:
                # a weighted count, not topk_idx[valid]: boolean indexing waits for the GPU (a host sync)
                if impl == "argmax":  # a one-hot sum: a reduction, no atomics (same integer counts)
                    onehot = topk_idx[..., None] == torch.arange(self.n_experts, device=x.device)  # [T, k, E]
                    if valid is not None:
                        onehot = onehot & valid[:, None, None]
                    self.load += onehot.sum((0, 1), dtype=torch.float32)
                else:
                    ones = torch.ones_like(topk_idx, dtype=torch.float32)
                    picks = ones if valid is None else ones * valid[:, None]
                    self.load.index_add_(0, topk_idx.reshape(-1), picks.reshape(-1))
        topk_weight = scores.gather(1, topk_idx)  # [T, k]
        if self.norm_topk_prob:
            topk_weight = topk_weight / (topk_weight.sum(-1, keepdim=True) + 1e-20)
        topk_weight = topk_weight * self.routed_scaling_factor
        return topk_idx, topk_weight.to(x.dtype), scores


class GroupedExperts(nn.Module):
    """E SwiGLU experts as 3D tensors. HF: ``Glm4MoeExperts`` (``gate_up_proj`` [E, 2I, H], ``down_proj`` [E, H, I])."""

    def __init__(self, cfg: ModelConfig, impl: ExpertImpl = "auto") -> None:
        super().__init__()
        e, i, h = cfg.n_routed_experts, cfg.moe_intermediate_size, cfg.hidden_size
        self.n_experts, self.intermediate = e, i
        self.gate_up_proj = nn.Parameter(torch.empty(e, 2 * i, h))
        self.down_proj = nn.Parameter(torch.empty(e, h, i))
        self.impl: ExpertImpl = impl
        # the gather path sorts the expert ids as uint8 (model/moe_dispatch.narrow_keys; set_moe_path): None (the
        # default) on CUDA only (resolve_narrow_keys), True / False everywhere
        self.narrow_sort_keys: bool | None = None
        # the gather path's SwiGLU (model/kernels.set_fused_glue): None (the default) the Triton backward on CUDA
        # where triton imports, the chunk path elsewhere (resolve_swiglu); False / True / "triton" as given
        self.fused_swiglu: bool | str | None = None

    def resolved_impl(self, device: torch.device) -> ExpertImpl:
        """The implementation ``auto`` picks on ``device``: grouped_mm on CUDA when torch has ``_grouped_mm``, and on
        CPU when it has the public ``F.grouped_mm`` (torch >= 2.10, whose CPU kernel has a backward), else loop."""
        if self.impl != "auto":
            return self.impl
        if device.type == "cuda" and (hasattr(F, "grouped_mm") or hasattr(torch, "_grouped_mm")):
            return "grouped_mm"
        if device.type == "cpu" and hasattr(F, "grouped_mm"):
            return "grouped_mm"
        return "loop"

    def forward(self, x: torch.Tensor, topk_idx: torch.Tensor, topk_weight: torch.Tensor) -> torch.Tensor:
        """x [T, H], topk_idx [T, k], topk_weight [T, k] -> [T, H] (sum over the k picks of weight * expert(x))."""
        t, k = topk_idx.shape
        flat_expert = topk_idx.reshape(-1)  # [T*k]
        order = flat_expert.argsort(stable=True)  # slots grouped by expert
        token_of_slot = order // k  # [T*k]
        # group ends from the sorted ids (no bincount: its output size depends on the data, which stops
        # torch.compile and, on CUDA, waits for the GPU)
        ends = torch.searchsorted(
            flat_expert[order], torch.arange(self.n_experts, device=x.device), right=True
        )
        xs = x[token_of_slot]  # [T*k, H], rows of expert 0 first, then expert 1 ...
        impl = self.resolved_impl(x.device)
        if impl == "loop":
            ys = self._loop(xs, torch.diff(ends, prepend=ends.new_zeros(1)).tolist())
        elif impl == "bmm":
            ys = self._bmm(xs, torch.diff(ends, prepend=ends.new_zeros(1)))
        elif impl == "grouped_mm":
            ys = self._grouped_mm(xs, ends)
        else:
            raise ValueError(f"unknown expert implementation {impl!r}: use auto, loop, bmm or grouped_mm")
        # back to token order by the inverse permutation (a scatter of distinct rows, no atomics), then the
        # gate-weighted sum over each token's k picks: deterministic, unlike an index_add over tokens
        per_slot = torch.empty_like(ys).index_copy_(0, order, ys).view(t, k, -1)  # [T, k, H]
        return (per_slot * topk_weight.to(ys.dtype)[..., None]).sum(1).to(x.dtype)

    def forward_gather(
        self, x: torch.Tensor, topk_idx: torch.Tensor, topk_weight: torch.Tensor, shared: MLP | None = None
    ) -> torch.Tensor:
        """The ``gather`` path (module docstring): the same sum as :meth:`forward`, plus ``shared(x)`` when
        ``shared`` is given (run as group E of the grouped GEMM). x [T, H] -> [T, H]."""
        t, k = topk_idx.shape
        order, src, inv, ends = sort_slots(
            topk_idx, self.n_experts, shared is not None, resolve_narrow_keys(self.narrow_sort_keys, x.device)
        )
        xs = spread(x, src, inv, k)  # [N, H]: routed rows by expert, then (shared) every token once
        w = permute(topk_weight.reshape(-1), order, inv)  # [T*k] gate weight of each sorted row
        gate_up, down = self.gate_up_proj, self.down_proj  # [G, 2I, H], [G, H, I]
        if shared is not None:
            width = shared.gate_proj.weight.shape[0]
            if width != self.intermediate:
                raise ValueError(
                    f"fuse_shared needs the shared expert as wide as a routed one (moe_intermediate_size "
                    f"{self.intermediate}); it is {width} (n_shared_experts > 1): leave fuse_shared off"
                )
            w = torch.cat([w, w.new_ones(t)])
            gate_up = torch.cat([gate_up, torch.cat([shared.gate_proj.weight, shared.up_proj.weight])[None]])
            down = torch.cat([down, shared.down_proj.weight[None]])
        impl = self.resolved_impl(x.device)
        if impl == "grouped_mm":
            gu = _grouped_mm(xs, gate_up.transpose(1, 2), offs=ends)
            fused = resolve_swiglu(getattr(self, "fused_swiglu", None), x.device)
            if fused:  # the same values; the cat-free (or Triton) backward
                hidden = swiglu(gu, w, "triton" if fused == "triton" else "torch")
            else:
                hidden = self._swiglu(gu) * w[:, None]
            ys = _grouped_mm(hidden, down.transpose(1, 2), offs=ends)  # [N, H]
        elif impl == "loop":
            counts = torch.diff(ends, prepend=ends.new_zeros(1)).tolist()
            outs = []
            for xe, we, gu, dn in zip(
                xs.split(counts), w.split(counts), gate_up.unbind(0), down.unbind(0), strict=True
            ):
                if xe.shape[0]:
                    outs.append(F.linear(self._swiglu(F.linear(xe, gu)) * we[:, None], dn))
            ys = torch.cat(outs)
        else:
            raise ValueError(f"the gather dispatch runs grouped_mm or loop experts, not {impl!r}")
        return gather_sum(ys, src, inv, k).to(x.dtype)

    def _swiglu(self, gate_up: torch.Tensor) -> torch.Tensor:  # [..., 2I] -> [..., I]
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up

    def _loop(self, xs: torch.Tensor, counts: list[int]) -> torch.Tensor:
        outs = []
        # unbind, not [e]: indexing a parameter E times makes E full-size zero gradients in backward
        gate_up, down = self.gate_up_proj.unbind(0), self.down_proj.unbind(0)
        for e, xe in enumerate(xs.split(counts)):  # xe [n_e, H]
            if xe.shape[0] == 0:
                continue
            outs.append(F.linear(self._swiglu(F.linear(xe, gate_up[e])), down[e]))
        return torch.cat(outs) if outs else xs.new_zeros(0, self.down_proj.shape[1])

    def _bmm(self, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        cap = int(counts.max()) if counts.numel() else 0
        starts = torch.cumsum(counts, 0) - counts  # [E]
        expert_of_slot = torch.repeat_interleave(torch.arange(self.n_experts, device=xs.device), counts)
        row_in_expert = torch.arange(xs.shape[0], device=xs.device) - starts[expert_of_slot]
        padded = xs.new_zeros(self.n_experts, cap, xs.shape[1])  # [E, C, H]
        padded[expert_of_slot, row_in_expert] = xs
        hidden = self._swiglu(torch.bmm(padded, self.gate_up_proj.transpose(1, 2)))  # [E, C, I]
        out = torch.bmm(hidden, self.down_proj.transpose(1, 2))  # [E, C, H]
        return out[expert_of_slot, row_in_expert]

    def _grouped_mm(self, xs: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
        offs = ends.to(torch.int32)  # [E], end row of each expert
        hidden = self._swiglu(_grouped_mm(xs, self.gate_up_proj.transpose(1, 2), offs=offs))  # [T*k, I]
        return _grouped_mm(hidden, self.down_proj.transpose(1, 2), offs=offs)  # [T*k, H]


def _grouped_mm(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """x [N, K] (rows grouped), w [E, K, M], offs [E] int32 group ends -> [N, M]; torch's public op when present."""
    fn = getattr(F, "grouped_mm", None) or torch._grouped_mm
    return fn(x, w, offs=offs)


class MoE(nn.Module):
    """Routed experts plus shared expert(s). HF: ``Glm4MoeMoE`` (``gate``, ``experts``, ``shared_experts``)."""

    def __init__(self, cfg: ModelConfig, expert_impl: ExpertImpl = "auto") -> None:
        super().__init__()
        self.gate = TopkRouter(cfg)
        self.experts = GroupedExperts(cfg, expert_impl)
        self.has_shared = cfg.n_shared_experts > 0
        if self.has_shared:
            self.shared_experts = MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)
        self.dispatch: MoEDispatch = "auto"  # gather on CUDA, index elsewhere (module docstring)
        self.fuse_shared = False  # the shared expert as one more group of the grouped GEMM (gather path only)

    def resolved_dispatch(self, device: torch.device) -> MoEDispatch:
        """The dispatch this layer runs on ``device``: ``auto`` is ``gather`` on CUDA and ``index`` elsewhere;
        ``fuse_shared`` always runs on the gather path."""
        if self.fuse_shared:
            return "gather"
        if self.dispatch == "auto":
            return "gather" if device.type == "cuda" else "index"
        return self.dispatch

    def forward(
        self, x: torch.Tensor, valid: torch.Tensor | None = None, aux_weight: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B, S, H], valid [B, S] bool (non-pad) -> (y [B, S, H], aux balance loss (unweighted) or None)."""
        b, s, h = x.shape
        flat = x.reshape(b * s, h)
        flat_valid = None if valid is None else valid.reshape(-1)
        topk_idx, topk_weight, scores = self.gate(flat, flat_valid)
        if self.resolved_dispatch(x.device) == "gather":
            fused = self.shared_experts if self.has_shared and self.fuse_shared else None
            y = self.experts.forward_gather(flat, topk_idx, topk_weight, fused).view(b, s, h)
            if self.has_shared and fused is None:
                y = y + self.shared_experts(x)
        else:
            y = self.experts(flat, topk_idx, topk_weight).view(b, s, h)
            if self.has_shared:
                y = y + self.shared_experts(x)
        aux = None
        if aux_weight > 0:
            aux = sequence_balance_loss(scores.view(b, s, -1), topk_idx.view(b, s, -1), valid)
        return y, aux


def sequence_balance_loss(
    scores: torch.Tensor, topk_idx: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """DeepSeek-V3's sequence-wise balance loss, unweighted, averaged over rows (one packed row = one sequence).

    scores [B, S, E] sigmoid scores, topk_idx [B, S, k], valid [B, S] bool or None.
    Per row: ``sum_i f_i * P_i`` with ``f_i = E / (k * T) * #picks of i`` and ``P_i`` the mean over tokens of the
    scores normalised to sum 1 per token.
    """
    b, s, e = scores.shape
    k = topk_idx.shape[-1]
    mask = torch.ones(b, s, device=scores.device) if valid is None else valid.float()  # [B, S]
    n_tok = mask.sum(-1).clamp(min=1)  # [B]
    picks = torch.zeros(b, s, e, device=scores.device).scatter_(2, topk_idx, 1.0)  # [B, S, E]
    f = (picks * mask[..., None]).sum(1) * e / (k * n_tok[:, None])  # [B, E]
    p_norm = scores / scores.sum(-1, keepdim=True)
    p = (p_norm * mask[..., None]).sum(1) / n_tok[:, None]  # [B, E]
    return (f * p).sum(-1).mean()


def max_violation(load: torch.Tensor) -> float:
    """MaxVio of one layer's load counts: ``(max - mean) / mean`` (0 when perfectly balanced or nothing counted)."""
    mean = load.float().mean()
    if mean <= 0:
        return 0.0
    return float((load.max() - mean) / mean)


@torch.no_grad()
def update_router_biases(
    routers: list[TopkRouter], u: float, process_group: dist.ProcessGroup | None = None
) -> list[float]:
    """Loss-free balance step for ``routers`` (call after ``optimizer.step()``): all-reduce the load counts over the
    data-parallel ranks (when ``torch.distributed`` is initialised), apply ``b += u * sign(mean(load) - load)``,
    clear the counts and return MaxVio per router, computed on the summed counts before the update."""
    if not routers:
        return []
    loads = torch.stack([r.load for r in routers])  # [L, E]
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(loads, op=dist.ReduceOp.SUM, group=process_group)
    vios = []
    for router, load in zip(routers, loads, strict=True):
        vios.append(max_violation(load))
        if u != 0:
            router.e_score_correction_bias += u * torch.sign(load.mean() - load)
        router.load.zero_()
    return vios
