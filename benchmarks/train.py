"""Training throughput of model/ (the GLM-4.5-style MoE) against transformers' ``Glm4MoeForCausalLM`` of the same
shape: tokens/s, MFU and peak memory on a GPU, and tokens/s on CPU.

GPU (``--device cuda``; the figures in docs/TRAIN_SPEED.md come from one run on an H200):

* **headline**: the ``small`` flavour, 4K rows, bf16, one full training step (forward, backward, AdamW step) under
  DeepSpeed ZeRO-1 with the training entry point's own config (``model.train.main.ds_config``: bf16 with fp32
  master weights, clipping 1.0, throughput timer off, bf16 overflow check off; micro-batch x gradient
  accumulation), ours against HF with its fastest settings (SDPA attention; each of its expert implementations is
  timed first and the fastest kept), then a table of the rows with their ratio to HF. Both do the same work: every
  token a target, no MTP, one document per row (HF's SDPA path has no document masking). Ours is also timed as it
  trains (MTP loss on, packed rows with several documents each). ``--device cpu --sections headline`` rehearses it
  on ``debug`` (plumbing only).
* **dense**: the same for a dense ``small`` (every layer a 3072-wide SwiGLU FFN, no MTP).
* **ablation**: forward + backward alone (no optimizer), packed rows, starting from the plain version (per-expert
  GEMM loop, one SDPA call with a block-diagonal mask, logits materialised for the loss, eager) and adding one
  step at a time: grouped GEMM experts, varlen (flash) attention, the fused head + loss, ``torch.compile`` of the
  layers, a larger micro-batch.
* **profile**: ``torch.profiler`` of a few steps of the eager and the compiled model, GPU time by kernel kind.
* **speed**: the second round, each against the headline: DeepSpeed's bf16 ``immediate_grad_update``, micro-batch
  16, 16 micro-batches per step (a pre-training accumulation) for both models, FlashAttention-3 and the
  ``max-autotune-no-cudagraphs`` compile mode where they exist and time is left (``--time-limit``); one profiled
  DeepSpeed step (``profile_step.txt``).
* **attention**: the attention kernels alone at the old and the new ``small`` head shapes (varlen FlashAttention-2,
  SDPA flash, cuDNN): TFLOP/s and cuDNN's difference from varlen.
* **round3** / **round4**: the third round on the new ``small`` (head_dim 128): FlashAttention-2 against cuDNN, the
  headline step again under the profiler (kernels by kind), 16 micro-batches per step for both models, DeepSpeed's
  immediate_grad_update, the old shape with cuDNN, micro-batch 16, the max-autotune-no-cudagraphs compile mode (within
  ``--time-limit``). HF is timed with torch's SDPA backend order and with cuDNN first (``--hf-sdpa``).
* **round6**: the opt-in paths prepared for the fourth round, each on and off in one call (within
  ``--time-limit``): a bf16 agreement check of each against the default, packed rows as trained on varlen
  FlashAttention-2 and FlexAttention (``"flex"``; cuDNN's ragged kernel, timed there too, was removed for NaN
  gradients), the headline step and forward + backward with the MoE ``gather`` dispatch and the shared expert fused
  into the grouped GEMM (``set_moe_path``), inductor's ``combo_kernels``, then the best of each together as trained,
  profiled. Its rows pin that round's defaults (index dispatch, no inductor options).
* **round7**: DeepSpeed's share of the headline step (forward + backward 36.4% MFU, full step 32.7% in round 6),
  with the model's new defaults (gather dispatch, combo kernels): the step as configured so far (profiled: kernels
  by kind, GPU idle, host waits), then DeepSpeed settings each against it: its throughput timer off (it synchronizes
  the device at every micro-batch's forward and step), bf16 ``check_grad_overflow`` off, the ZeRO optimizer's
  ``overlap_comm`` / ``contiguous_gradients`` / bucket sizes, ``data_types.grad_accum_dtype`` fp32 (DeepSpeed's
  BF16_Optimizer) alone and with flat fp32 accumulation, no all-reduce at world size 1 and a foreach clip
  (:class:`DSVariant`), the best together (profiled), and the new defaults checked in the full step (combo kernels
  off, index dispatch) and as trained. ``--device cpu --sections round7`` rehearses it on ``debug`` (plumbing only).
* **round8**: the model's glue in the headline step (the entry point's DeepSpeed config): the default step and the
  opt-in changes prepared for round 8 (the head + loss in one block, foreach gradient accumulation, the router's
  top-k as fused argmax rounds, uint8 sort keys for the MoE dispatch, the final norm compiled) all together and
  each alone, after a bf16 check of each against the default; both profiled steps list every kernel, the kernels of
  each compiled graph and the ops by shape, with their Chrome traces and inductor's generated code
  (``inductor_code.tar.gz``). ``--device cpu --sections round8`` rehearses it on ``debug`` (plumbing only).
* **round10**: the glue the round-8 profile showed (docs/TRAIN_SPEED.md, "Where the round-8 step's time goes"):
  SwiGLU with a ``cat``-free backward (or as one Triton kernel), QK-norm + RoPE as one Triton kernel each way,
  DeepSpeed's gradient norm in one fp32 foreach pass, RoPE without ``cat``,
  each alone and together against the defaults with every round-8 change, at 8 x 4 and 16 x 16 (``--r10-grid``),
  after a bf16 check; one profiled step and inductor's code. ``--device cpu --sections round10`` rehearses it on
  ``debug`` (plumbing only).
* **round11**: the headline step as the model and the entry point run it since round 11 (SwiGLU's backward as one
  Triton kernel on CUDA, DeepSpeed's gradient norm as one fp32 foreach pass) at 8 x 4, 16 x 16 and 32 x 16
  (``--r11-grid``), the round-10 default and HF (sdpa, grouped_mm experts) at 16 x 16 (``--r11-ref``) in the same
  call, then a table with both ratios. ``--device cpu --sections round11`` rehearses it on ``debug``.
* **ranks**: the real entry point (``python -m model.train.main``) on one GPU and, through the DeepSpeed launcher,
  on two, AdamW at ZeRO 1 and Muon at ZeRO 0, on one seeded shard of random packed rows: per-step losses (equal for
  one global batch) and tokens/s per GPU (``ranks.json``, ``ranks.log``).

MFU: model FLOPs (model/config.py ``flops_per_token``: 6 x active matmul parameters, head included (twice with
MTP), plus causal attention, half the score matrix, ``6 * layers * heads * head_dim * seq_len`` per token; for packed
rows the attention term is summed per document) over time, against the H100/H200 SXM datasheet dense bf16 rate (989
TFLOP/s). That figure (``mfu``) is the one the target is judged by. Each row also has ``mfu_palm``: PaLM's MFU
definition, the whole attention matrix (``12 * layers * heads * head_dim * seq_len`` per token; per document for
packed rows), as torchtitan and Megatron-LM's FLOP formula count it, for comparison with published figures. Timing: CUDA-synchronised wall time over ``--iters`` steps
after ``--warmup`` steps (compilation happens in the warm-up).

CPU (``--device cpu``): the ``debug`` flavour, forward + backward tokens per CPU-second, ours against HF's expert
implementations (benchmarks/model_cpu.py does the timing; one thread).

Run: ``python benchmarks/train.py --device cuda [--out DIR] [--sections ...]`` (the default sections take about 2
minutes on an H200, ``ranks`` about 4 more on two GPUs; DeepSpeed optional: without it the headline runs on plain
torch AdamW and says so); ``python benchmarks/train.py --device cpu``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.config import ModelConfig, flops_per_token, model_config, to_hf  # noqa: E402
from model.glm import GLMForCausalLM  # noqa: E402

PEAK_BF16 = 989e12  # H100 / H200 SXM dense bf16, datasheet
SEQ_LEN = 4096
START = time.perf_counter()


@dataclass(frozen=True)
class Variant:
    """One configuration of our model's training step."""

    name: str
    expert_impl: str = "grouped_mm"
    attn_impl: str = "auto"  # auto on CUDA in bf16: cuDNN for whole rows, varlen (flash) for packed rows
    compile: bool = True
    fused_ce: bool = True
    micro_batch: int = 4
    packed: bool = False
    mtp: bool = False
    compile_mode: str | None = None  # torch.compile mode of the layer regions (None: its default)
    whole_rows_graph: bool = False  # rows without packing: each layer one graph with cuDNN attention inside
    moe_dispatch: str = "auto"  # auto: gather on CUDA (the default since round 6); "index": the earlier path
    fuse_shared: bool = False  # the shared expert as one more grouped-GEMM group (round 6)
    # inductor options of the regions: None the model's defaults (combo kernels on CUDA since round 6), () none
    compile_options: tuple[tuple[str, Any], ...] | None = None
    # "argmax": k fused argmax rounds instead of torch's top-k (round 8); "auto": the model's default (argmax on CUDA
    # since round 9)
    router_topk: str = "auto"
    ce_chunk: int | None = None  # rows per block of the fused head + loss (None: the model's 1 GiB blocks)
    # small parameters' gradients summed over micro-batches by foreach adds (model/grad_accum.py; round 8)
    foreach_accum: bool = False
    # the final norm and the MTP layer's norms compiled too (round 8); None: the model's default (on CUDA since round 9)
    compile_norms: bool | None = None
    # the gather dispatch sorts the expert ids as uint8 (round 8); None: the model's default (on CUDA since round 9)
    narrow_sort_keys: bool | None = None
    # SwiGLU with a cat-free backward (model/kernels/swiglu.py), "triton": as one Triton kernel (round 10); None: the
    # model's default (the Triton kernel on CUDA where triton imports since round 11), False: the chunk path
    fused_swiglu: bool | str | None = None
    # RoPE without cat, v contiguous in the region (model/kernels/rope.py), "triton": QK-norm + RoPE as one Triton
    # kernel each way (model/kernels/qknorm_rope_triton.py) (round 10)
    fused_rope: bool | str = False


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra``'s keys set, nested dicts merged (neither is changed)."""
    out = json.loads(json.dumps(base))
    for k, val in extra.items():
        out[k] = _merge(out[k], val) if isinstance(val, dict) and isinstance(out.get(k), dict) else val
    return out


@dataclass
class DSVariant:
    """How one round-7 full step runs DeepSpeed around the model: more keys of its config (``config``, merged into
    the headline's: ZeRO-1, bf16, clipping ``clip``) and changes made after ``deepspeed.initialize`` where
    DeepSpeed has no key for them (all for its ``BF16_Optimizer``, which ``data_types.grad_accum_dtype`` fp32
    selects; the default bf16 config runs its ZeRO optimizer, accumulating in bf16):

    * ``flat_accum``: the bf16 gradients live in one flat buffer laid out as DeepSpeed's flat bf16 weights, and each
      micro-batch adds it to the flat fp32 gradients in one kernel (DeepSpeed casts and adds per parameter: two
      kernels and a copy per parameter and micro-batch);
    * ``world1_skip_allreduce``: no gradient all-reduce at world size 1 (DeepSpeed flattens the fp32 gradients,
      all-reduces them with itself and copies them back);
    * ``foreach_clip``: DeepSpeed's clipping off, the flat fp32 gradients clipped by
      ``torch.nn.utils.clip_grad_norm_(foreach=True)`` before its step (one norm and one multiply per flat buffer,
      no host wait; DeepSpeed's clips per parameter after waiting for the norm's comparison);
    * ``foreach_norm`` (round 10): the ZeRO optimizer's gradient norm by one fp32 ``torch._foreach_norm`` pass
      (model/zero_grad_norm.py) instead of one fp64 copy and norm per gradient."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    flat_accum: bool = False
    world1_skip_allreduce: bool = False
    foreach_clip: bool = False
    clip: float = 1.0
    foreach_norm: bool = False

    def ds_config(self, batch: int, gas: int) -> dict[str, Any]:
        base = {
            "train_batch_size": batch * gas, "train_micro_batch_size_per_gpu": batch,
            "gradient_accumulation_steps": gas, "zero_optimization": {"stage": 1}, "bf16": {"enabled": True},
            "gradient_clipping": 0.0 if self.foreach_clip else self.clip, "steps_per_print": 1 << 30,
            "zero_allow_untested_optimizer": True,
        }  # fmt: skip
        return _merge(base, self.config)

    def problem(self) -> str | None:
        """Why this combination cannot run (before building anything), or None."""
        fp32 = self.config.get("data_types", {}).get("grad_accum_dtype") in ("fp32", "float32", "float")
        if (self.flat_accum or self.world1_skip_allreduce or self.foreach_clip) and not fp32:
            return "flat accumulation, the world-1 all-reduce skip and the foreach clip act on BF16_Optimizer's fp32 " \
                   "gradients: they need data_types.grad_accum_dtype fp32"  # fmt: skip
        if self.flat_accum and self.config.get("bf16", {}).get("immediate_grad_update"):
            return "flat accumulation replaces the per-micro-batch accumulation that immediate_grad_update moves " \
                   "into backward hooks: pick one"  # fmt: skip
        if self.foreach_clip and self.clip <= 0:
            return "foreach_clip with clipping off"
        if self.config.get("zero_optimization", {}).get("compute_grad_norm") is False and fp32:
            return "DeepSpeed refuses compute_grad_norm=false with BF16_Optimizer (ZeRO-1, fp32 accumulation)"
        if self.foreach_norm and fp32:
            return "the foreach norm replaces the ZeRO optimizer's; BF16_Optimizer (fp32 accumulation) has its own"
        return None

    def setup(self, engine: Any) -> Callable[[], None] | str | None:
        """Apply the changes made after ``deepspeed.initialize``: None (nothing to do at the step), a callable to run
        after the last micro-batch's backward (before ``engine.step()``), or a string saying why it cannot apply."""
        if self.foreach_norm:
            from model.zero_grad_norm import use_foreach_grad_norm

            if not use_foreach_grad_norm(engine):
                return f"the foreach norm needs DeepSpeed's ZeRO 1/2 optimizer, got {type(engine.optimizer).__name__}"
        if not (self.flat_accum or self.world1_skip_allreduce or self.foreach_clip):
            return None
        opt = engine.optimizer
        if type(opt).__name__ != "BF16_Optimizer":
            return f"needs DeepSpeed's BF16_Optimizer, got {type(opt).__name__}"
        if self.world1_skip_allreduce:
            import torch.distributed as dist

            if dist.is_initialized() and dist.get_world_size() > 1:
                return "the gradient all-reduce is needed at world size > 1"
            engine.enable_backward_allreduce = False
        if self.flat_accum:
            _flat_bf16_accumulation(opt)
        if self.foreach_clip:
            flats, clip = opt.fp32_groups_gradients_flat, self.clip
            return lambda: torch.nn.utils.clip_grad_norm_(flats, clip, foreach=True)
        return lambda: None


def _flat_bf16_accumulation(opt: Any) -> None:
    """Give every bf16 parameter of DeepSpeed's ``BF16_Optimizer`` ``opt`` a gradient that is a view into one flat
    bf16 buffer per group (the layout of ``opt.bf16_groups_flat``, so of the fp32 gradient buffers too), and replace
    its per-parameter accumulation by one add of the flat buffer per group. The views stay: DeepSpeed's gradient
    clearing becomes a zero of the flat buffers (autograd then accumulates into them in place); a gradient found
    outside its buffer raises instead of being missed."""
    flats = []
    for i, group in enumerate(opt.bf16_groups):
        flat = torch.zeros_like(opt.bf16_groups_flat[i])
        views = opt._split_flat_tensor(flat, [p.numel() for p in group])
        for j, (p, view) in enumerate(zip(group, views, strict=True)):
            p.grad = view.view_as(p)
            p._hp_grad = opt.fp32_groups_gradients[i][j]
        flats.append(flat)
    ptrs = [f.untyped_storage().data_ptr() for f in flats]

    def update_hp_grads(clear_lp_grads: bool = False) -> None:
        for i, group in enumerate(opt.bf16_groups):
            if any(p.grad is None or p.grad.untyped_storage().data_ptr() != ptrs[i] for p in group):
                raise RuntimeError("a gradient left the flat bf16 buffer: flat accumulation would miss it")
            opt.fp32_groups_gradients_flat[i].add_(flats[i])
            opt.fp32_groups_has_gradients[i] = [True] * len(group)
        if clear_lp_grads:
            clear(False)

    def clear(set_to_none: bool = False) -> None:  # the views stay, whatever set_to_none says
        for f in flats:
            f.zero_()

    def zero_grad(set_to_none: bool = True) -> None:
        clear()
        opt.clear_hp_grads()

    opt.update_hp_grads, opt.clear_lp_grads, opt.zero_grad = update_hp_grads, clear, zero_grad


def entry_ds_config(batch: int, gas: int, bf16: dict[str, Any] | None = None) -> dict[str, Any]:
    """DeepSpeed's config as the training entry point builds it (``model.train.main.ds_config``) for one rank's step
    of ``gas`` micro-batches of ``batch`` rows: ZeRO-1, bf16, AdamW with DeepSpeed's clipping at 1.0 (the entry
    point's default ``optim.clip``); ``bf16``: more keys of its ``bf16`` section (``--ds-bf16``)."""
    from model.train.main import ds_config

    config = ds_config(
        global_batch=batch * gas, micro_batch=batch, world=1, zero_stage=1, clip=1.0, optimizer="adamw",
        precision="bf16",
    )  # fmt: skip
    return _merge(config, {"bf16": bf16}) if bf16 else config


def packed_doc_lens(batch: int, seq_len: int, seed: int) -> list[list[int]]:
    """Seeded document lengths filling each row exactly (log-uniform from 64 to seq_len: a few long documents and
    some short ones per row, as best-fit packing of web text gives)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        lens, left = [], seq_len
        while left > 0:
            n = int(torch.exp(torch.empty(1).uniform_(4.16, 8.32, generator=gen)).item())
            n = min(max(n, 1), left)
            lens.append(n)
            left -= n
        rows.append(lens)
    return rows


def step_flops(
    cfg: ModelConfig, batch: int, doc_lens: list[list[int]] | None, mtp: bool, whole_matrix: bool = False
) -> float:
    """Model FLOPs of one forward + backward over [batch, SEQ_LEN] (see the module docstring). ``whole_matrix``:
    the PaLM convention (every attention score of the causal matrix counted, not half; per document for packed
    rows), for the secondary MFU figure only."""
    with_mtp = mtp and cfg.num_nextn_predict_layers > 0
    if doc_lens is None:
        return flops_per_token(cfg, SEQ_LEN, causal=not whole_matrix, with_mtp=with_mtp) * batch * SEQ_LEN
    matmul = flops_per_token(cfg, 0, with_mtp=with_mtp) * batch * SEQ_LEN  # seq_len 0: no attention term
    layers = cfg.num_hidden_layers + (1 if with_mtp else 0)
    attn = 6 * layers * cfg.num_attention_heads * cfg.head_dim * sum(n * n for row in doc_lens for n in row)
    return matmul + attn * (2 if whole_matrix else 1)


def _sync() -> None:
    """Wait for the GPU (nothing to wait for on CPU: the CPU rehearsal of round7)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _sync_time(fn: Callable[[], None], warmup: int, iters: int) -> float:
    """Seconds per call of ``fn``, CUDA-synchronised, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync()
    return (time.perf_counter() - t0) / iters


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _mem_start() -> int:
    """Reset the peak-memory counter; the bytes held now (0 on CPU)."""
    if not torch.cuda.is_available():
        return 0
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _mem_peak(base: int) -> float:
    """GiB of peak memory above ``base`` since :func:`_mem_start` (0 on CPU)."""
    return (torch.cuda.max_memory_allocated() - base) / 2**30 if torch.cuda.is_available() else 0.0


def hf_name(experts: str, sdpa: str) -> str:
    """Row name of an HF variant: its expert implementation and SDPA backend order."""
    return f"HF sdpa{'' if sdpa == 'default' else f' ({sdpa} first)'}, experts={experts}"


def hf_sdpa(sdpa: str) -> Any:
    """A context in which SDPA (HF's attention) prefers ``sdpa``'s backend: ``default`` leaves torch's order (flash,
    memory-efficient, math); ``cudnn`` puts cuDNN's fused attention first (torch falls back in order where it
    cannot take the inputs)."""
    import contextlib

    if sdpa == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    first = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[sdpa]
    order = [first] + [
        b
        for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)
        if b is not first
    ]
    return sdpa_kernel(order, set_priority=True)


class Bench:
    """Shared state of one GPU run: the small weights (built once), the results table."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self._weights: dict[str, dict[str, torch.Tensor]] = {}
        self.dev = torch.device("cuda" if args.device == "cuda" else "cpu")
        # the compiled layer regions (the CUDA default); the CPU rehearsals run eager (compiling takes minutes there)
        self.compiled = self.dev.type == "cuda"

    # -- models -----------------------------------------------------------------------------------------------
    def weights(self, cfg: ModelConfig, key: str) -> dict[str, torch.Tensor]:
        """Seeded bf16 weights of ``cfg`` on the GPU (built once per key; every variant loads the same)."""
        if key not in self._weights:
            model = GLMForCausalLM(cfg, seed=0)
            self._weights[key] = {k: v.to(self.dev, torch.bfloat16) for k, v in model.state_dict().items()}
        return self._weights[key]

    def ours(self, cfg: ModelConfig, key: str, v: Variant) -> GLMForCausalLM:
        if (
            self.dev.type == "cuda"
        ):  # SwiGLU's default: triton probed once, eagerly, before any region compiles
            from model.kernels.swiglu import triton_backward_available

            triton_backward_available()
        with self.dev:
            model = GLMForCausalLM(cfg, expert_impl=v.expert_impl, attn_impl=v.attn_impl, seed=None)  # type: ignore[arg-type]
        model.load_state_dict(self.weights(cfg, key))
        model.to(torch.bfloat16)
        for router in model.routers():
            router.float()
        options = None if v.compile_options is None else dict(v.compile_options)
        model.compile_layers(
            v.compile, v.compile_mode, v.whole_rows_graph, options=options, norms=v.compile_norms
        )
        model.set_moe_path(v.moe_dispatch, v.fuse_shared, v.narrow_sort_keys)
        model.set_router_topk(v.router_topk)
        if v.ce_chunk is not None:  # else the model's own block size
            model.ce_chunk_size = v.ce_chunk
        if v.fused_swiglu is not None or v.fused_rope:
            from model.kernels import set_fused_glue

            set_fused_glue(model, swiglu=v.fused_swiglu, rope=v.fused_rope)
        if v.foreach_accum:  # its forward hook lives as long as the model
            from model.grad_accum import ForeachGradAccumulation

            model.foreach_accumulation = ForeachGradAccumulation(model)  # type: ignore[assignment]
        return model.train()

    def hf(self, cfg: ModelConfig, key: str, experts: str) -> torch.nn.Module:
        from transformers import Glm4MoeForCausalLM

        hf_cfg = to_hf(cfg.model_copy(update={"num_nextn_predict_layers": 0}))
        hf_cfg._attn_implementation = "sdpa"
        if cfg.first_k_dense_replace < cfg.num_hidden_layers:
            hf_cfg._experts_implementation = experts
        with self.dev:
            model = Glm4MoeForCausalLM(hf_cfg)
        mtp = f"model.layers.{cfg.num_hidden_layers}."
        state = {k: v for k, v in self.weights(cfg, key).items() if not k.startswith(mtp)}
        model.load_state_dict(state, strict=True)
        model.to(torch.bfloat16)
        used = getattr(model.config, "_experts_implementation", None)
        if cfg.first_k_dense_replace < cfg.num_hidden_layers and used != experts:
            raise RuntimeError(f"transformers kept experts implementation {used!r}, not {experts!r}")
        return model.train()

    # -- measuring --------------------------------------------------------------------------------------------
    def record(
        self, section: str, name: str, seconds: float, tokens: int, flops: float, peak: float,
        flops_palm: float | None = None, **extra: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """One result row. ``mfu`` (our convention, half the causal attention matrix) is the figure the target is
        judged by; ``mfu_palm`` (from ``flops_palm``: the whole matrix, PaLM's MFU definition as torchtitan and
        Megatron report it) is printed beside it for comparison with published figures."""
        row = {
            "section": section,
            "name": name,
            "ms": seconds * 1e3,
            "tok_s": tokens / seconds,
            "tflops": flops / seconds / 1e12,
            "mfu": flops / seconds / PEAK_BF16,
            "peak_gib": peak,
            **extra,
        }
        if flops_palm is not None:
            row["tflops_palm"] = flops_palm / seconds / 1e12
            row["mfu_palm"] = flops_palm / seconds / PEAK_BF16
        self.rows.append(row)
        # every row on disk at once: a call cut off by its time limit keeps what it measured
        (Path(self.args.out) / "train_bench.json").write_text(json.dumps(self.rows, indent=1, default=str))
        palm = f" (PaLM {row['mfu_palm'] * 100:5.1f}%)" if "mfu_palm" in row else ""
        print(
            f"[{section}] {name:44s} {row['tok_s']:10.0f} tok/s  MFU {row['mfu'] * 100:5.1f}%{palm}  "
            f"{row['ms']:8.1f} ms/step  peak {peak:6.1f} GiB",
            flush=True,
        )
        return row

    def inputs(
        self, cfg: ModelConfig, batch: int, packed: bool
    ) -> tuple[torch.Tensor, list[list[int]] | None]:
        ids = torch.randint(0, cfg.vocab_size, (batch, SEQ_LEN), generator=torch.Generator().manual_seed(1))
        return ids.to(self.dev), packed_doc_lens(batch, SEQ_LEN, 2) if packed else None

    def fwd_bwd(self, section: str, cfg: ModelConfig, key: str, v: Variant) -> dict[str, Any] | None:
        """Forward + backward of our model (no optimizer)."""
        try:
            _free()
            base = _mem_start()
            model = self.ours(cfg, key, v)
            ids, doc_lens = self.inputs(cfg, v.micro_batch, v.packed)
            mtp_w = 0.3 if v.mtp else 0.0

            def step() -> None:
                model.zero_grad(set_to_none=True)
                out = model(
                    ids, doc_lens=doc_lens, labels=ids, mtp_weight=mtp_w, return_logits=not v.fused_ce
                )
                out.loss.backward()

            sec = _sync_time(step, self.args.warmup, self.args.iters)
            peak = _mem_peak(base)
            flops = step_flops(cfg, v.micro_batch, doc_lens, v.mtp)
            palm = step_flops(cfg, v.micro_batch, doc_lens, v.mtp, whole_matrix=True)
            model = None  # drop it before the next variant
            return self.record(
                section, v.name, sec, v.micro_batch * SEQ_LEN, flops, peak, flops_palm=palm, variant=asdict(v)
            )
        except Exception:  # noqa: BLE001 - one failed variant must not lose the others' figures
            print(f"[{section}] {v.name} FAILED:\n{traceback.format_exc()}", flush=True)
            return None

    def hf_fwd_bwd(
        self, section: str, cfg: ModelConfig, key: str, experts: str, batch: int, sdpa: str = "default"
    ) -> dict | None:
        try:
            with hf_sdpa(sdpa):
                return self._hf_fwd_bwd(section, cfg, key, experts, batch, sdpa)
        except Exception:  # noqa: BLE001
            print(
                f"[{section}] HF experts={experts} sdpa={sdpa} FAILED:\n{traceback.format_exc()}", flush=True
            )
            return None

    def _hf_fwd_bwd(
        self, section: str, cfg: ModelConfig, key: str, experts: str, batch: int, sdpa: str
    ) -> dict | None:
        _free()
        base = _mem_start()
        model = self.hf(cfg, key, experts)
        ids, _ = self.inputs(cfg, batch, False)

        def step() -> None:
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids).loss.backward()

        sec = _sync_time(step, self.args.warmup, self.args.iters)
        peak = _mem_peak(base)
        model = None
        flops, palm = (
            step_flops(cfg, batch, None, False),
            step_flops(cfg, batch, None, False, whole_matrix=True),
        )
        return self.record(
            section, hf_name(experts, sdpa), sec, batch * SEQ_LEN, flops, peak, flops_palm=palm, sdpa=sdpa
        )

    def full_step(
        self, section: str, name: str, cfg: ModelConfig, build: Callable[[], torch.nn.Module], batch: int,
        packed: bool, mtp: bool, ours: bool, gas: int | None = None, bf16: dict[str, Any] | None = None,
        profile: bool = False, warmup: int | None = None, iters: int | None = None,
    ) -> dict | None:  # fmt: skip
        """A full training step: ``gas`` (default ``--gas``) micro-batches of ``batch`` rows, backward, AdamW, under
        DeepSpeed ZeRO-1 with the training entry point's own config (``model.train.main.ds_config``: bf16 with fp32
        master weights, clipping 1.0, throughput timer off, bf16 overflow check off; ``bf16``: more keys of its
        ``bf16`` section, default ``--ds-bf16``) when DeepSpeed imports, else torch AdamW on bf16 parameters.
        ``warmup`` / ``iters``: this step's own counts (default ``--warmup`` / 2 and ``--iters`` / 3)."""
        try:
            _free()
            base = _mem_start()
            model = build()
            ids, doc_lens = self.inputs(cfg, batch, packed)
            gas = gas or self.args.gas
            bf16 = json.loads(self.args.ds_bf16) if bf16 is None else bf16
            opt = torch.optim.AdamW(
                model.parameters(), lr=1e-4, weight_decay=0.1, fused=self.dev.type == "cuda"
            )
            config = None
            if self.args.deepspeed:
                import deepspeed

                config = entry_ds_config(batch, gas, bf16)
                engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
                if ours:  # the entry point's engine changes (round 11: the fp32 foreach norm on CUDA)
                    from model.train.main import cuda_step_defaults

                    cuda_step_defaults(engine, self.dev.type == "cuda")

                def forward() -> torch.Tensor:
                    if ours:
                        return engine(
                            ids,
                            doc_lens=doc_lens,
                            labels=ids,
                            mtp_weight=0.3 if mtp else 0.0,
                            return_logits=False,
                        ).loss
                    return engine(input_ids=ids, labels=ids).loss

                def step() -> None:
                    for _ in range(gas):
                        engine.backward(forward())
                        engine.step()
            else:

                def step() -> None:
                    for _ in range(gas):
                        if ours:
                            loss = model(
                                ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3 if mtp else 0.0,
                                return_logits=False,
                            ).loss  # fmt: skip
                        else:
                            loss = model(input_ids=ids, labels=ids).loss
                        (loss / gas).backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                    opt.zero_grad(set_to_none=True)

            sec = _sync_time(
                step, warmup or max(1, self.args.warmup // 2), iters or max(2, self.args.iters // 3)
            )
            peak = _mem_peak(base)
            if profile:
                _profile_one(step, Path(self.args.out) / "profile_step.txt", name)
            flops = step_flops(cfg, batch, doc_lens, mtp) * gas
            palm = step_flops(cfg, batch, doc_lens, mtp, whole_matrix=True) * gas
            engine = model = opt = None  # noqa: F841 - drop the references before the next variant
            how = (
                "DeepSpeed ZeRO-1, the entry point's config" + (f" + bf16 {bf16}" if bf16 else "")
                if self.args.deepspeed
                else "torch AdamW (no DeepSpeed)"
            )
            return self.record(
                section, name, sec, batch * SEQ_LEN * gas, flops, peak, flops_palm=palm, step=how, gas=gas,
                ds_config=config, packed=packed, mtp=mtp,
            )  # fmt: skip
        except Exception:  # noqa: BLE001
            print(f"[{section}] {name} FAILED:\n{traceback.format_exc()}", flush=True)
            return None

    # -- sections ---------------------------------------------------------------------------------------------
    def ablation(self) -> None:
        cfg = model_config("small")
        plain = Variant(
            "plain: loop experts, SDPA mask, logits, eager", expert_impl="loop", attn_impl="sdpa",
            compile=False, fused_ce=False, packed=True,
        )  # fmt: skip
        steps = [
            plain,
            replace(plain, name="+ grouped GEMM experts", expert_impl="grouped_mm"),
            replace(plain, name="+ varlen flash attention", expert_impl="grouped_mm", attn_impl="auto"),
            replace(
                plain, name="+ fused head + loss", expert_impl="grouped_mm", attn_impl="auto", fused_ce=True
            ),
            Variant("+ torch.compile (layers, loss blocks)", packed=True),
            Variant("+ micro-batch 8", packed=True, micro_batch=8),
            Variant("+ MTP loss (as trained), micro-batch 8", packed=True, micro_batch=8, mtp=True),
        ]
        for v in steps:
            self.fwd_bwd("ablation", cfg, "small", v)

    def headline(self, flavour_key: str, cfg: ModelConfig) -> None:
        """Ours against HF with its fastest settings, forward + backward and the full step (under the training entry
        point's DeepSpeed config, both models), then ours as trained; a table of them at the end."""
        section = f"{flavour_key} step"
        moe = cfg.first_k_dense_replace < cfg.num_hidden_layers
        best = (None, 0.0, "default")
        table: list[dict[str, Any] | None] = []
        hf_rows: list[dict[str, Any]] = []
        for sdpa in self.args.hf_sdpa.split(","):
            for experts in self.args.hf_experts.split(",") if moe else ("eager",):
                row = self.hf_fwd_bwd(
                    f"{flavour_key} HF fwd+bwd", cfg, flavour_key, experts, self.args.micro_batch, sdpa
                )
                if row:
                    hf_rows.append(row)
                if row and row["tok_s"] > best[1]:
                    best = (experts, row["tok_s"], sdpa)
        table.append(max(hf_rows, key=lambda r: r["tok_s"]) if hf_rows else None)
        self.best_hf, self.best_hf_sdpa = best[0], best[2]
        ours_mb = Variant("ours fwd+bwd", micro_batch=self.args.micro_batch, compile=self.compiled)
        table.append(self.fwd_bwd(f"{flavour_key} HF fwd+bwd", cfg, flavour_key, ours_mb))
        mb = self.args.micro_batch
        if best[0] is not None:
            with hf_sdpa(best[2]):
                table.append(self.full_step(
                    section, hf_name(best[0], best[2]), cfg, lambda: self.hf(cfg, flavour_key, best[0]), mb,
                    packed=False, mtp=False, ours=False,
                ))  # fmt: skip
        v = Variant("ours", compile=self.compiled)
        table.append(self.full_step(
            section, "ours (same work as HF)", cfg, lambda: self.ours(cfg, flavour_key, v), mb,
            packed=False, mtp=False, ours=True,
        ))  # fmt: skip
        if moe:
            table.append(self.full_step(
                section, "ours as trained (packed rows, MTP)", cfg, lambda: self.ours(cfg, flavour_key, v), mb,
                packed=True, mtp=True, ours=True,
            ))  # fmt: skip
        print(headline_table(flavour_key, [r for r in table if r], self.args), flush=True)

    def speed(self) -> None:
        """The steps after the first version of this benchmark, in the same run as the headline: a larger
        micro-batch, DeepSpeed's bf16 gradient accumulation inside backward, a realistic gradient accumulation
        (pre-training batches are millions of tokens: the optimizer step is then a small share), compile modes."""
        cfg, key = model_config("small"), "small"
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        v = Variant("ours")
        ours = lambda: self.ours(cfg, key, v)  # noqa: E731
        best_hf = getattr(self, "best_hf", None) or "grouped_mm"
        hf = lambda: self.hf(cfg, key, best_hf)  # noqa: E731
        immediate = {"immediate_grad_update": True}
        steps: list[tuple[str, Callable[[], None]]] = [
            ("ours mb 8 x gas 4, bf16 immediate_grad_update", lambda: self.full_step(
                "speed step", "ours mb 8 x gas 4, immediate_grad_update", cfg, ours, 8, packed=False, mtp=False,
                ours=True, gas=4, bf16=immediate, profile=True)),
            ("ours mb 16 x gas 2", lambda: self.full_step(
                "speed step", "ours mb 16 x gas 2, immediate_grad_update", cfg, ours, 16, packed=False, mtp=False,
                ours=True, gas=2, bf16=immediate)),
            ("ours fwd+bwd mb 16", lambda: self.fwd_bwd(
                "speed fwd+bwd", cfg, key, Variant("ours fwd+bwd, micro-batch 16", micro_batch=16))),
            ("HF gas 16", lambda: self.full_step(
                "speed step gas 16", f"HF sdpa, experts={best_hf}, mb 8 x gas 16", cfg, hf, 8, packed=False,
                mtp=False, ours=False, gas=16, bf16={})),
            ("ours gas 16", lambda: self.full_step(
                "speed step gas 16", "ours mb 8 x gas 16", cfg, ours, 8, packed=False, mtp=False, ours=True,
                gas=16, bf16={})),
            ("ours gas 16 immediate", lambda: self.full_step(
                "speed step gas 16", "ours mb 8 x gas 16, immediate_grad_update", cfg, ours, 8, packed=False,
                mtp=False, ours=True, gas=16, bf16=immediate)),
            ("ours fwd+bwd FlashAttention-3", lambda: self._fa3(cfg, key)),
            ("ours fwd+bwd max-autotune", lambda: self.fwd_bwd(
                "speed fwd+bwd", cfg, key, Variant("ours fwd+bwd, mb 8, max-autotune-no-cudagraphs", micro_batch=8,
                compile_mode="max-autotune-no-cudagraphs"))),
        ]  # fmt: skip
        for name, run in steps:
            need = 150 if "max-autotune" in name else 30  # seconds a step may take (autotuning compiles long)
            if left() < need:
                print(f"[speed] {name}: skipped ({left():.0f} s of --time-limit left)", flush=True)
                continue
            run()

    def attention(self) -> None:
        """The attention kernels alone at both ``small`` shapes (old: 12 heads x 64, 4 KV heads; new: 12 x 128, 2 KV
        heads), 8 x 4096 tokens, causal, bf16: varlen FlashAttention-2, SDPA's flash backend, cuDNN (GQA as the
        kernel takes it). TFLOP/s by the MFU convention (forward 2 x 2 x S^2/2 x heads x D per row, backward 2x
        that). Also the largest relative difference of cuDNN's output and q-gradient from varlen's."""
        for heads, kv, dim in ((12, 4, 64), (12, 2, 128)):
            self._attention_shape(heads, kv, dim)
            _free()

    def _attention_shape(self, heads: int, kv: int, dim: int) -> None:
        import model.glm as glm

        b, s = 8, SEQ_LEN
        gen = torch.Generator(device="cuda").manual_seed(0)
        q = torch.randn(b, s, heads, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(b, s, kv, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(b, s, kv, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        grad = torch.randn(b, s, heads, dim, device="cuda", dtype=torch.bfloat16, generator=gen)
        cu = torch.arange(0, (b + 1) * s, s, device="cuda", dtype=torch.int32)
        fwd_flops = 4 * b * s * s / 2 * heads * dim

        def varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            shape = (b * s, -1, dim)
            return glm._varlen_causal(q.view(shape), k.view(shape), v.view(shape), cu, s).view(
                b, s, heads, dim
            )

        def flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                out = torch.nn.functional.scaled_dot_product_attention(
                    q.transpose(1, 2),
                    k.transpose(1, 2),
                    v.transpose(1, 2),
                    is_causal=True,
                    enable_gqa=True,
                )
            return out.transpose(1, 2)

        outs = {}
        for name, fn in (("varlen FA2", varlen), ("SDPA flash", flash), ("cuDNN", glm._cudnn_causal)):
            try:
                qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                out = fn(qg, kg, vg)
                out.backward(grad)
                outs[name] = (out.detach().float(), qg.grad.float())

                def fwd(fn: Callable[..., torch.Tensor] = fn) -> None:
                    with torch.no_grad():
                        fn(q, k, v)

                def fwd_bwd(fn: Callable[..., torch.Tensor] = fn) -> None:
                    qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
                    fn(qg, kg, vg).backward(grad)

                t_f = _sync_time(fwd, 3, 20)
                t_fb = _sync_time(fwd_bwd, 3, 20)
                row = {
                    "section": "attention", "name": f"{name}, {heads}x{dim}, kv {kv}", "fwd_ms": t_f * 1e3,
                    "fwd_tflops": fwd_flops / t_f / 1e12, "fwd_bwd_ms": t_fb * 1e3,
                    "fwd_bwd_tflops": 3 * fwd_flops / t_fb / 1e12,
                }  # fmt: skip
                if name == "cuDNN":
                    row["cudnn_took_gqa"] = glm._CUDNN_GQA[:1]
                    ref_out, ref_grad = outs["varlen FA2"]
                    row["rel_diff_out"] = float((out.detach().float() - ref_out).norm() / ref_out.norm())
                    row["rel_diff_dq"] = float((qg.grad.float() - ref_grad).norm() / ref_grad.norm())
                self.rows.append(row)
                print(f"[attention] {row}", flush=True)
            except Exception:  # noqa: BLE001 - one kernel missing must not lose the others' figures
                print(f"[attention] {name} {heads}x{dim} FAILED:\n{traceback.format_exc()}", flush=True)
        outs.clear()

    def round3(self) -> None:
        """The third round, on the new ``small`` (head_dim 128), each row against the headline of the same run:
        FlashAttention-2 (varlen) instead of cuDNN, the headline step again under the profiler (and as a repeat),
        16 micro-batches per step for both models, DeepSpeed's immediate_grad_update, the old shape (head_dim 64)
        with cuDNN, and the max-autotune-no-cudagraphs compile mode, while ``--time-limit`` leaves time."""
        cfg, key = model_config("small"), "small"
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        mb = self.args.micro_batch
        ours = lambda: self.ours(cfg, key, Variant("ours"))  # noqa: E731
        best_hf = getattr(self, "best_hf", None) or "grouped_mm"
        best_sdpa = getattr(self, "best_hf_sdpa", "default")
        hf = lambda: self.hf(cfg, key, best_hf)  # noqa: E731
        old = model_config("small", head_dim=64, num_key_value_heads=4)

        def hf_gas16() -> None:
            with hf_sdpa(best_sdpa):
                self.full_step(
                    "round3 step gas 16", f"{hf_name(best_hf, best_sdpa)}, mb {mb} x gas 16", cfg, hf, mb,
                    packed=False, mtp=False, ours=False, gas=16, bf16={},
                )  # fmt: skip

        steps: list[tuple[str, int, Callable[[], object]]] = [
            ("varlen", 30, lambda: self.fwd_bwd("round3 fwd+bwd", cfg, key, Variant(
                "ours fwd+bwd, varlen FlashAttention-2", attn_impl="varlen", micro_batch=mb))),
            ("profiled", 30, lambda: self.full_step(
                "round3 step", f"ours mb {mb} x gas 4 (headline again, profiled)", cfg, ours, mb, packed=False,
                mtp=False, ours=True, gas=4, bf16={}, profile=True)),
            ("ours gas 16", 30, lambda: self.full_step(
                "round3 step gas 16", f"ours mb {mb} x gas 16", cfg, ours, mb, packed=False, mtp=False, ours=True,
                gas=16, bf16={})),
            ("HF gas 16", 40, hf_gas16),
            ("immediate", 30, lambda: self.full_step(
                "round3 step", f"ours mb {mb} x gas 4, immediate_grad_update", cfg, ours, mb, packed=False,
                mtp=False, ours=True, gas=4, bf16={"immediate_grad_update": True})),
            ("old shape", 90, lambda: self.full_step(
                "round3 old shape", f"ours, old small (head_dim 64, 4 KV heads), cuDNN, mb {mb} x gas 4", old,
                lambda: self.ours(old, "small_hd64", Variant("ours")), mb, packed=False, mtp=False, ours=True,
                gas=4, bf16={})),
            ("max-autotune", 250, lambda: self.fwd_bwd("round3 fwd+bwd", cfg, key, Variant(
                "ours fwd+bwd, max-autotune-no-cudagraphs", micro_batch=mb,
                compile_mode="max-autotune-no-cudagraphs"))),
        ]  # fmt: skip
        for name, need, run in steps:
            if left() < need:
                print(f"[round3] {name}: skipped ({left():.0f} s of --time-limit left)", flush=True)
                continue
            run()

    def round4(self) -> None:
        """Micro-batch 16 on the new ``small`` (the same tokens per step as the headline and the gas-16 rows), and
        the headline step profiled once more with its kernels summed by kind (``profile_step.txt``)."""
        cfg, key = model_config("small"), "small"
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        ours = lambda: self.ours(cfg, key, Variant("ours"))  # noqa: E731
        steps: list[tuple[str, int, Callable[[], object]]] = [
            ("profiled", 30, lambda: self.full_step(
                "round4 step", "ours mb 8 x gas 4 (headline again, profiled)", cfg, ours, 8, packed=False,
                mtp=False, ours=True, gas=4, bf16={}, profile=True)),
            ("fwd+bwd mb 16", 60, lambda: self.fwd_bwd(
                "round4 fwd+bwd", cfg, key, Variant("ours fwd+bwd, micro-batch 16", micro_batch=16))),
            ("mb 16 x gas 2", 30, lambda: self.full_step(
                "round4 step", "ours mb 16 x gas 2", cfg, ours, 16, packed=False, mtp=False, ours=True, gas=2,
                bf16={})),
            ("mb 16 x gas 8", 40, lambda: self.full_step(
                "round4 step gas 16", "ours mb 16 x gas 8", cfg, ours, 16, packed=False, mtp=False, ours=True,
                gas=8, bf16={})),
        ]  # fmt: skip
        for name, need, run in steps:
            if left() < need:
                print(f"[round4] {name}: skipped ({left():.0f} s of --time-limit left)", flush=True)
                continue
            run()

    def round5(self) -> None:
        """Each layer as one compiled graph with cuDNN attention inside (rows without packing), against the regions
        around an eager attention call, in the same run: forward + backward and the headline step."""
        cfg, key = model_config("small"), "small"
        whole = Variant("ours, whole-layer graphs", whole_rows_graph=True)
        self.fwd_bwd("round5 fwd+bwd", cfg, key, Variant("ours fwd+bwd (regions)", micro_batch=8))
        self.fwd_bwd(
            "round5 fwd+bwd", cfg, key, replace(whole, name="ours fwd+bwd, whole-layer graphs", micro_batch=8)
        )
        self.full_step(
            "round5 step", "ours mb 8 x gas 4, whole-layer graphs", cfg, lambda: self.ours(cfg, key, whole), 8,
            packed=False, mtp=False, ours=True, gas=4, bf16={}, profile=True,
        )  # fmt: skip
        self.full_step(
            "round5 step", "ours mb 8 x gas 4 (regions)", cfg, lambda: self.ours(cfg, key, Variant("ours")), 8,
            packed=False, mtp=False, ours=True, gas=4, bf16={},
        )  # fmt: skip

    def round6(self) -> None:
        """The paths prepared for the fourth GPU round (docs/TRAIN_SPEED.md, "Prepared for the next round"), each on
        and off in this one call, most valuable first while ``--time-limit`` leaves time: a bf16 agreement check of
        every new path against the default (``round6 check`` rows), packed rows as trained (MTP) on varlen
        FlashAttention-2 / cuDNN's ragged kernel / FlexAttention, the headline step and forward + backward with the
        MoE ``gather`` dispatch and the fused shared expert, inductor's combo kernels, then the best MoE path with the
        best packed kernel as trained, profiled (``profile_step.txt``)."""
        cfg, key = model_config("small"), "small"
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        mb = self.args.micro_batch
        base = Variant("ours", moe_dispatch="index", compile_options=())  # the defaults of that round
        gather = replace(base, moe_dispatch="gather")
        fused = replace(gather, fuse_shared=True)
        # (cuDNN's ragged kernel, "cudnn_packed", was timed here in round 6: NaN gradients, since removed)
        attn = {"varlen": base, "flex": replace(base, attn_impl="flex")}
        moe = {"index": base, "gather": gather, "gather + fused shared": fused}
        got: dict[str, dict[str, Any] | None] = {}

        def step(tag: str, v: Variant, packed: bool, profile: bool = False) -> Callable[[], None]:
            what = "as trained (packed rows, MTP 0.3)" if packed else "headline (whole rows)"
            default = " (default)" if tag in ("varlen", "index") else ""
            name = f"ours mb {mb} x gas 4, {what}, {tag}{default}"
            section = "round6 packed step" if packed else "round6 step"

            def run() -> None:
                got[f"{section}: {tag}"] = self.full_step(
                    section, name, cfg, lambda: self.ours(cfg, key, v), mb, packed=packed, mtp=packed, ours=True,
                    gas=4, bf16={}, profile=profile,
                )  # fmt: skip

            return run

        def fb(tag: str, v: Variant) -> Callable[[], None]:
            return lambda: self.fwd_bwd(
                "round6 fwd+bwd", cfg, key, replace(v, name=f"ours fwd+bwd, {tag}", micro_batch=mb)
            )

        def best_of(table: dict[str, Variant], section: str) -> tuple[str, Variant]:
            timed = [(got[f"{section}: {t}"]["tok_s"], t) for t in table if got.get(f"{section}: {t}")]
            tag = max(timed)[1] if timed else next(iter(table))
            return tag, table[tag]

        def best_as_trained() -> None:
            a_tag, a = best_of(attn, "round6 packed step")
            m_tag, m = best_of(moe, "round6 step")
            v = replace(a, moe_dispatch=m.moe_dispatch, fuse_shared=m.fuse_shared)
            step(f"best: {a_tag} attention + {m_tag} MoE, profiled", v, packed=True, profile=True)()

        steps: list[tuple[str, int, Callable[[], object]]] = [
            ("check", 60, lambda: self._round6_check(cfg, key, {
                "sdpa with a mask (bf16 rounding floor)": replace(base, attn_impl="sdpa"),
                **{k: v for k, v in attn.items() if k != "varlen"}, "gather": gather, "gather + fused shared": fused})),
            ("packed varlen", 40, step("varlen", attn["varlen"], True)),
            ("step index", 30, step("index", moe["index"], False)),
            ("step gather", 30, step("gather", moe["gather"], False)),
            ("step fused", 30, step("gather + fused shared", moe["gather + fused shared"], False)),
            ("fwd+bwd index", 25, fb("index MoE (default)", base)),
            ("fwd+bwd gather", 25, fb("gather MoE", gather)),
            ("fwd+bwd fused", 25, fb("gather + fused shared MoE", fused)),
            ("packed flex", 90, step("flex", attn["flex"], True)),
            ("fwd+bwd combo", 60, fb("inductor combo_kernels", replace(base, compile_options=(("combo_kernels", True),)))),
            ("best as trained", 45, best_as_trained),
        ]  # fmt: skip
        for name, need, run in steps:
            if left() < need:
                print(f"[round6] {name}: skipped ({left():.0f} s of --time-limit left)", flush=True)
                continue
            run()
        # the keys of got are "<section>: <tag>", the tags those of attn (packed rows) and moe (whole rows)
        for table, section in ((attn, "round6 packed step"), (moe, "round6 step")):
            base_row = got.get(f"{section}: {next(iter(table))}")
            for tag in table:
                row = got.get(f"{section}: {tag}")
                if row and base_row:
                    print(
                        f"[round6] {section}: {tag}: {row['tok_s'] / base_row['tok_s']:.3f}x the default",
                        flush=True,
                    )

    # -- round 7: DeepSpeed's share of the full step ---------------------------------------------------------------
    def ds_step(
        self, section: str, cfg: ModelConfig, key: str, v: Variant, d: DSVariant, *, batch: int, gas: int,
        packed: bool = False, mtp: bool = False, profile: str | None = None, profile_full: bool = False,
        warmup: int | None = None, iters: int | None = None,
    ) -> dict[str, Any] | None:  # fmt: skip
        """One round-7 full step: ``gas`` micro-batches of ``batch`` rows of our model, under DeepSpeed ZeRO-1 (bf16,
        fp32 master weights, torch's fused AdamW as in the headline) configured by ``d``; ``--r7-warmup`` steps, then
        ``--r7-iters`` timed. Also returns the mean loss of the last timed step (same seeded rows every step, so each
        variant's loss after the same updates shows a wrong update; bf16 rounding moves it by about 1e-3; the first
        step's loss, before any update, is the same for all). A variant
        that cannot run on the optimizer DeepSpeed picked is skipped with the reason printed. ``profile``: a file
        name under ``--out`` for one more step under the profiler (kernels by kind, GPU idle). ``warmup`` / ``iters``:
        this step's own counts instead of ``--r7-warmup`` / ``--r7-iters``."""
        import deepspeed

        name = f"{v.name}, {d.name}"
        problem = d.problem()
        if problem:
            print(f"[{section}] {name}: skipped ({problem})", flush=True)
            return None
        engine = model = opt = None
        try:
            _free()
            base = _mem_start()
            model = self.ours(cfg, key, v)
            gen = torch.Generator().manual_seed(1)
            ids = torch.randint(0, cfg.vocab_size, (batch, SEQ_LEN), generator=gen).to(self.dev)
            doc_lens = packed_doc_lens(batch, SEQ_LEN, 2) if packed else None
            opt = torch.optim.AdamW(
                model.parameters(), lr=1e-4, weight_decay=0.1, fused=self.dev.type == "cuda"
            )
            config = d.ds_config(batch, gas)
            engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
            used = type(engine.optimizer).__name__
            setup = d.setup(engine)  # the variant's own changes around DeepSpeed (or why it cannot apply)
            if isinstance(setup, str):
                print(f"[{section}] {name}: skipped on {used} ({setup})", flush=True)
                return None
            losses: list[torch.Tensor] = []
            history: list[torch.Tensor] = []  # mean loss of each step (read after the timing: no host wait)

            def step() -> None:
                losses.clear()
                for j in range(gas):
                    loss = engine(
                        ids,
                        doc_lens=doc_lens,
                        labels=ids,
                        mtp_weight=0.3 if mtp else 0.0,
                        return_logits=False,
                    ).loss
                    engine.backward(loss)
                    losses.append(loss.detach())
                    if j == gas - 1 and setup is not None:
                        setup()  # e.g. the foreach clip of the flat fp32 gradients, before DeepSpeed's step
                    engine.step()
                history.append(torch.stack(losses).float().mean())

            sec = _sync_time(step, warmup or self.args.r7_warmup, iters or self.args.r7_iters)
            peak = _mem_peak(base)
            loss, loss_first, n_steps = float(history[-1]), float(history[0]), len(history)
            prof = None
            if profile:
                prof = _profile_one(step, Path(self.args.out) / profile, name, full=profile_full)
                # the profiler slows the host: the timed step against the same kernels is the fairer idle figure
                prof["idle_vs_timed_ms"] = sec * 1e3 - prof["kernel_ms"]
                print(
                    f"[{section}] {name}: timed step {sec * 1e3:.1f} ms, kernels {prof['kernel_ms']:.1f} ms: GPU idle "
                    f"about {prof['idle_vs_timed_ms']:.1f} ms per step without the profiler",
                    flush=True,
                )
            flops = step_flops(cfg, batch, doc_lens, mtp) * gas
            palm = step_flops(cfg, batch, doc_lens, mtp, whole_matrix=True) * gas
            return self.record(
                section, name, sec, batch * SEQ_LEN * gas, flops, peak, flops_palm=palm, loss=loss,
                loss_first_step=loss_first,
                steps=n_steps, optimizer=used, ds_config=config, variant=asdict(v), ds_variant=d.name,
                profile=prof, packed=packed, mtp=mtp,
            )  # fmt: skip
        except Exception:  # noqa: BLE001 - one failed variant must not lose the others' figures
            print(f"[{section}] {name} FAILED:\n{traceback.format_exc()}", flush=True)
            return None
        finally:
            if engine is not None and hasattr(engine, "destroy"):
                try:
                    engine.destroy()  # its hooks hold the model
                except Exception:  # noqa: BLE001 - freeing only
                    pass
            engine = model = opt = None  # noqa: F841 - drop the references before the next variant
            _free()

    def round7(self) -> None:
        """The gap between forward + backward (36.4% MFU) and the full step (32.7%) on the headline's work (whole
        rows, mb x gas of ``--micro-batch`` x ``--gas``, ZeRO-1, bf16, AdamW), with the model's new defaults (MoE
        gather dispatch, combo kernels): the headline step as it was configured (profiled: ``profile_round7_
        default.txt``), then DeepSpeed settings that remove host waits and copies, each a row against the default,
        the best of them together (profiled), and the new defaults checked in the full step (combo kernels off) and as
        trained (packed rows, MTP). Rows run most valuable first while ``--time-limit`` leaves time."""
        cfg, key = self.r7_cfg, self.r7_key
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        mb, gas = self.args.micro_batch, self.args.gas
        v = Variant("ours", compile=self.r7_compile)
        got: dict[str, dict[str, Any] | None] = {}
        fast = {"timers": {"throughput": {"enabled": False}}, "bf16": {"check_grad_overflow": False}}
        lean = DSVariant("timers off, no overflow check", fast)
        zero_opts = {  # the ZeRO optimizer's own knobs, each on top of ``lean``
            "overlap_comm": {"zero_optimization": {"overlap_comm": True}},
            "contiguous_gradients off": {"zero_optimization": {"contiguous_gradients": False}},
            "buckets 2e9": {"zero_optimization": {"reduce_bucket_size": int(2e9), "allgather_bucket_size": int(2e9)}},
        }  # fmt: skip
        fp32_accum = {"data_types": {"grad_accum_dtype": "fp32"}}

        def row(
            tag: str, d: DSVariant, need: float, model: Variant | None = None, **kw: Any
        ) -> Callable[[], None]:
            def run() -> None:
                if left() < need:
                    print(f"[round7] {tag}: skipped ({left():.0f} s of --time-limit left, needs ~{need:.0f})",
                          flush=True)  # fmt: skip
                    return
                got[tag] = self.ds_step("round7 step", cfg, key, model or v, d, batch=mb, gas=gas, **kw)

            return run

        def best_combined() -> DSVariant:
            """``lean`` plus each ZeRO knob that beat it by more than 0.5% (in this call)."""
            ref = got.get("lean")
            config: dict[str, Any] = json.loads(json.dumps(fast))
            picked = []
            for tag, extra in zero_opts.items():
                r = got.get(tag)
                if ref and r and r["tok_s"] > 1.005 * ref["tok_s"]:
                    config = _merge(config, extra)
                    picked.append(tag)
            return DSVariant(
                "best: timers off, no overflow check" + "".join(f", {t}" for t in picked), config
            )

        steps: list[tuple[str, Callable[[], None]]] = [
            ("default", row("default", DSVariant("DeepSpeed as in the headline (default)"), 40,
                            profile="profile_round7_default.txt")),
            ("timers off", row("timers off", DSVariant("throughput timer off", {"timers": fast["timers"]}), 15)),
            ("lean", row("lean", lean, 15)),
            *[(t, row(t, DSVariant(f"timers off, no overflow check, {t}", _merge(fast, c)), 15))
              for t, c in zero_opts.items()],
            ("fp32 accum", row("fp32 accum", DSVariant("grad_accum_dtype fp32 (BF16_Optimizer), timers off",
                                                       _merge(fp32_accum, {"timers": fast["timers"]})), 15)),
            ("fp32 accum flat", row("fp32 accum flat", DSVariant(
                "grad_accum_dtype fp32, timers off, flat fp32 accumulation, no all-reduce at world size 1, foreach clip",
                _merge(fp32_accum, {"timers": fast["timers"]}), flat_accum=True, world1_skip_allreduce=True,
                foreach_clip=True), 15)),
            ("best", lambda: row("best", best_combined(), 25, profile="profile_round7_best.txt")()),
            ("no clipping", lambda: row("no clipping", replace(best_combined(), name=best_combined().name +
                                        ", no gradient clipping (diagnostic)", clip=0.0), 15)()),
            ("as trained", lambda: row("as trained", best_combined(), 60, packed=True, mtp=True,
                                       model=replace(v, name="ours as trained (packed rows, MTP 0.3)"))()),
            ("combo off", lambda: row("combo off", best_combined(), 60,
                                      model=replace(v, name="ours, combo kernels off", compile_options=()))()),
            ("index", lambda: row("index", best_combined(), 40, model=replace(v, name="ours, MoE index dispatch",
                                                                            moe_dispatch="index"))()),
        ]  # fmt: skip
        for tag, run in steps:
            run()
            if tag == "default" and got.get("default") is None and left() >= 60:
                # the new defaults together (gather + combo kernels) failed: the rest against gather alone
                print(
                    "[round7] the default step failed with combo kernels; every row again without them",
                    flush=True,
                )
                v = replace(v, compile_options=())
                run()
        ref = got.get("default")
        for r in got.values():
            if r and ref:
                ratio = (
                    "other work (MFU compares)"
                    if r["packed"]
                    else f"{r['tok_s'] / ref['tok_s']:.3f}x the default"
                )
                print(
                    f"[round7] {r['name']}: {ratio}, MFU {r['mfu'] * 100:.1f}%, peak {r['peak_gib']:.1f} GiB, loss "
                    f"{r['loss_first_step']:.5f} -> {r['loss']:.5f} after {r['steps'] - 1} updates (default "
                    f"{ref['loss']:.5f}), {r['optimizer']}",
                    flush=True,
                )

    # -- round 8: the model's glue ---------------------------------------------------------------------------------
    def round8(self) -> None:
        """The glue kernels of the headline step (docs/TRAIN_SPEED.md, "Prepared for round 8"): the step with the
        entry point's DeepSpeed config and the model's defaults (profiled with every kernel and the ops' shapes:
        ``profile_round8_default.txt``; inductor's generated code of the compiled regions: ``inductor_code.tar.gz``),
        then the opt-in changes all together (profiled: ``profile_round8_all.txt``), each on its own (the router's
        top-k as fused argmax rounds; the fused head + loss in one block per micro-batch; the small parameters'
        gradients accumulated over the micro-batches by foreach adds, model/grad_accum.py: valid here, ZeRO-1
        without overlap_comm; the final norm compiled, with the MTP layer's norms; the gather dispatch's expert ids
        sorted as uint8), the default again (the call's own noise), and all together as trained (packed rows, MTP).
        A bf16 agreement check of each change against the default comes first (eager, 2 rows). Rows run in that
        order while ``--time-limit`` leaves their time."""
        cfg, key = self.r7_cfg, self.r7_key
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        mb, gas = self.args.micro_batch, self.args.gas
        d = DSVariant(
            "the entry point's DeepSpeed config",
            {"timers": {"throughput": {"enabled": False}}, "bf16": {"check_grad_overflow": False}},
        )
        v = Variant("ours", compile=self.r7_compile)
        changes: dict[str, dict[str, Any]] = {  # by the estimated gain (docs/TRAIN_SPEED.md), largest first
            "head + loss in one block": {"ce_chunk": 1 << 30},
            "foreach gradient accumulation": {"foreach_accum": True},
            "router top-k as argmax rounds": {"router_topk": "argmax"},
            "uint8 sort keys": {"narrow_sort_keys": True},
            "final norm compiled": {"compile_norms": True},
        }
        together: dict[str, Any] = {k: val for c in changes.values() for k, val in c.items()}
        every = replace(v, name="ours, all round-8 changes", **together)
        self._round8_check(cfg, key, {t: replace(v, name=t, **c) for t, c in changes.items()})
        got: dict[str, dict[str, Any] | None] = {}

        def row(tag: str, model: Variant, need: float, batch: int = mb, steps: int = gas, **kw: Any) -> None:
            if left() < need:
                print(
                    f"[round8] {tag}: skipped ({left():.0f} s of --time-limit left, needs ~{need:.0f})",
                    flush=True,
                )
                return
            got[tag] = self.ds_step("round8 step", cfg, key, model, d, batch=batch, gas=steps, **kw)

        code = Path(self.args.out) / "inductor_code.tar.gz"
        row("default", replace(v, name="ours (defaults)"), 40, profile="profile_round8_default.txt",
            profile_full=True)  # fmt: skip
        _dump_inductor_code(code)  # now (a call cut short keeps it) and again at the end, with every graph
        row("all", every, 35, profile="profile_round8_all.txt", profile_full=True)
        # the micro-batch a 141 GB GPU allows (twice the headline's rows), and a pre-training accumulation (the
        # seed's batches are 16M-64M tokens: thousands of micro-batches per optimizer step on one GPU)
        row("all, 2x rows", replace(every, name=f"ours, all round-8 changes, {2 * mb} rows per micro-batch"), 40,
            batch=2 * mb)  # fmt: skip
        row("all, 2x rows, 4x micro-batches", replace(
            every, name=f"ours, all round-8 changes, {2 * mb} rows x {4 * gas} micro-batches"), 70, batch=2 * mb,
            steps=4 * gas)  # fmt: skip
        row("default, 2x rows", replace(v, name=f"ours (defaults), {2 * mb} rows per micro-batch"), 35,
            batch=2 * mb)  # fmt: skip
        for tag, c in changes.items():
            row(tag, replace(v, name=f"ours, {tag}", **c), 30)
        # one block of 32K x 64K logits passes 2^31 elements: inductor then indexes in int64; two blocks do not
        row("head + loss in two blocks", replace(v, name="ours, head + loss in two blocks",
                                                 ce_chunk=mb * SEQ_LEN // 2), 20)  # fmt: skip
        row("default again", replace(v, name="ours (defaults, again)"), 15)
        row("all as trained", replace(every, name="ours, all round-8 changes, as trained (packed rows, MTP 0.3)"),
            50, packed=True, mtp=True)  # fmt: skip
        _dump_inductor_code(code)
        if left() >= 60:  # HF at the larger micro-batch (its best configuration may be that one too)
            experts = getattr(self, "best_hf", None) or self.args.hf_experts.split(",")[0]
            sdpa = getattr(self, "best_hf_sdpa", None) or self.args.hf_sdpa.split(",")[0]
            for rows_ in (mb, 2 * mb):
                if left() < 30:
                    break
                with hf_sdpa(sdpa):
                    self.full_step(
                        "round8 HF step", f"{hf_name(experts, sdpa)}, {rows_} rows x {gas}", cfg,
                        lambda: self.hf(cfg, key, experts), rows_, packed=False, mtp=False, ours=False, gas=gas,
                    )  # fmt: skip
        refs = [r for r in (got.get("default"), got.get("default again")) if r]
        if not refs:
            return
        ref_tok = statistics.mean(r["tok_s"] for r in refs)
        for r in got.values():
            if r:
                ratio = (
                    "other work (MFU compares)" if r["packed"] else f"{r['tok_s'] / ref_tok:.3f}x the default"
                )
                print(
                    f"[round8] {r['name']}: {ratio} (mean of {len(refs)} default rows), MFU {r['mfu'] * 100:.1f}%, "
                    f"{r['ms']:.1f} ms/step, peak {r['peak_gib']:.1f} GiB, loss {r['loss_first_step']:.5f} -> "
                    f"{r['loss']:.5f} after {r['steps'] - 1} updates",
                    flush=True,
                )

    # -- round 9: the micro-batch and accumulation with every round-8 change ------------------------------------------
    def round9(self) -> None:
        """The round-8 changes together (docs/TRAIN_SPEED.md) at each ``--batch-grid`` entry ``ROWSxMICROBATCHES``
        (rows per micro-batch x micro-batches per optimizer step), the entry point's DeepSpeed config, whole rows;
        the defaults at the headline's ``--micro-batch`` x ``--gas`` first as the call's reference. Entries run in
        the order given while ``--time-limit`` leaves about a minute."""
        cfg, key = self.r7_cfg, self.r7_key
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        d = DSVariant(
            "the entry point's DeepSpeed config",
            {"timers": {"throughput": {"enabled": False}}, "bf16": {"check_grad_overflow": False}},
        )
        v = Variant("ours", compile=self.r7_compile)
        every = replace(v, ce_chunk=1 << 30, foreach_accum=True, router_topk="argmax", narrow_sort_keys=True,
                        compile_norms=True)  # fmt: skip
        mb, gas = self.args.micro_batch, self.args.gas
        ref = self.ds_step("round9 step", cfg, key, replace(v, name=f"ours (defaults), {mb} x {gas}"), d,
                           batch=mb, gas=gas)  # fmt: skip
        for entry in self.args.batch_grid.split(","):
            rows, steps = (int(x) for x in entry.lower().split("x"))
            if left() < 40 + 4 * rows * steps / 32:
                print(f"[round9] {entry}: skipped ({left():.0f} s of --time-limit left)", flush=True)
                continue
            r = self.ds_step("round9 step", cfg, key,
                             replace(every, name=f"ours, all round-8 changes, {rows} x {steps}"), d, batch=rows,
                             gas=steps)  # fmt: skip
            if r and ref:
                print(f"[round9] {r['name']}: {r['tok_s'] / ref['tok_s']:.3f}x the defaults at {mb} x {gas}, MFU "
                      f"{r['mfu'] * 100:.1f}% (PaLM {r.get('mfu_palm', 0) * 100:.1f}%), {r['ms']:.1f} ms/step, "
                      f"peak {r['peak_gib']:.1f} GiB", flush=True)  # fmt: skip

    # -- round 10: the glue the round-8 profile showed (docs/TRAIN_SPEED.md, "Prepared for round 10") -----------------
    def round10(self) -> None:
        """The round-10 changes against the defaults with every round-8 change on (pinned here, whatever the model's
        defaults are when this runs), the entry point's DeepSpeed config, whole rows, at each ``--r10-grid`` entry
        ``ROWSxMICROBATCHES`` (default 8x4, the headline's batch, and 16x16): the default, all changes together with
        the Triton kernels and with PyTorch only (both profiled at the first entry: ``profile_round10_triton.txt``,
        ``profile_round10_torch.txt``), each change alone (by expected gain: SwiGLU's backward as one Triton kernel,
        QK-norm + RoPE as one Triton kernel each way, SwiGLU's cat-free backward, DeepSpeed's gradient norm as one
        fp32 foreach pass, RoPE without cat), the default again at the first entry (the call's noise). The totals
        run at every entry before the single changes, so that the time limit drops single changes first. A bf16 agreement check of the model changes against the default
        comes first (eager, 2 rows); inductor's generated code of every graph ends in ``inductor_code.tar.gz``. Rows
        run in that order while ``--time-limit`` leaves their estimated time; each is printed as ``x the default``
        (the mean of that entry's default rows)."""
        cfg, key = self.r7_cfg, self.r7_key
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        entry = {"timers": {"throughput": {"enabled": False}}, "bf16": {"check_grad_overflow": False}}
        d = DSVariant("the entry point's DeepSpeed config", entry)
        d_norm = DSVariant(
            "the entry point's DeepSpeed config, fp32 foreach gradient norm", entry, foreach_norm=True
        )
        # the round-8 changes (the CUDA defaults from round 9 on), pinned; on CPU the MoE takes the gather path too,
        # so that the rehearsal runs the routed experts' fused SwiGLU (CUDA's default is gather already)
        base = Variant("ours", compile=self.r7_compile, ce_chunk=1 << 30, foreach_accum=True, router_topk="argmax",
                       narrow_sort_keys=True, compile_norms=True, moe_dispatch="gather",
                       fused_swiglu=False)  # fmt: skip
        changes: list[tuple[str, dict[str, Any], DSVariant]] = [  # by the estimated gain, largest first
            ("SwiGLU backward as one Triton kernel", {"fused_swiglu": "triton"}, d),
            ("QK-norm + RoPE as one Triton kernel each way", {"fused_rope": "triton"}, d),
            ("SwiGLU backward without cat", {"fused_swiglu": True}, d),
            ("DeepSpeed gradient norm in one fp32 foreach pass", {}, d_norm),
            ("RoPE without cat, v contiguous in the region", {"fused_rope": True}, d),
        ]
        every = replace(base, fused_swiglu=True, fused_rope=True)  # PyTorch only
        every_triton = replace(base, fused_swiglu="triton", fused_rope="triton")
        # torch's CUDA wheels bring triton, its CPU wheels do not
        triton_ok = importlib.util.find_spec("triton") is not None
        checked = {tag: replace(base, name=tag, **c) for tag, c, _ in changes if c}
        uses_triton = lambda c: "triton" in (c.get("fused_swiglu"), c.get("fused_rope"))  # noqa: E731
        if not triton_ok:
            checked = {t: v for t, v in checked.items() if not uses_triton(asdict(v))}
        self._round8_check(cfg, key, checked, ref=base, section="round10")
        got: list[tuple[str, dict[str, Any]]] = []  # (grid entry, row)

        def row(
            rows: int, steps: int, tag: str, model: Variant, dsv: DSVariant, need: float, **kw: Any
        ) -> None:
            at = f"{rows} x {steps}"
            if left() < need:
                print(f"[round10] {tag}, {at}: skipped ({left():.0f} s of --time-limit left, needs ~{need:.0f})",
                      flush=True)  # fmt: skip
                return
            if rows * steps >= 128:  # a step of 0.5M tokens and more (~1.7 s at 16 x 8): fewer steps suffice
                kw = {"warmup": 1, "iters": 3, **kw}
            r = self.ds_step("round10 step", cfg, key, replace(model, name=f"{model.name}, {at}"), dsv,
                             batch=rows, gas=steps, **kw)  # fmt: skip
            if r:
                r["grid"], r["change"] = at, tag
                got.append((at, r))

        grid = [tuple(int(x) for x in e.lower().split("x")) for e in self.args.r10_grid.split(",")]
        # seconds a row needs (build, compile, 2 + 5 steps; 1 + 3 from 0.5M tokens a step): ~25 at 8 x 4, ~50 at 16 x 16
        need = lambda rows, steps: 20 + rows * steps / 8  # noqa: E731
        for n, (rows, steps) in enumerate(grid):  # first the totals at every entry ...
            prof = lambda name, first=n == 0: {"profile": name, "profile_full": True} if first else {}  # noqa: E731
            t = need(rows, steps)
            row(rows, steps, "default", replace(base, name="ours (defaults: round-8 changes)"), d, t + 5)
            if triton_ok:
                row(rows, steps, "all, Triton", replace(every_triton, name="ours, all round-10 changes (Triton "
                    "kernels)"), d_norm, t + 10, **prof("profile_round10_triton.txt"))  # fmt: skip
            row(rows, steps, "all, PyTorch", replace(every, name="ours, all round-10 changes (PyTorch only)"), d_norm,
                t + 10, **prof("profile_round10_torch.txt"))  # fmt: skip
        for n, (rows, steps) in enumerate(grid):  # ... then each change alone
            for tag, c, dsv in changes:
                if uses_triton(c) and not triton_ok:
                    print(f"[round10] {tag}: skipped (no triton module here)", flush=True)
                    continue
                row(rows, steps, tag, replace(base, name=f"ours, {tag}", **c), dsv, need(rows, steps))
            if n == 0:
                row(rows, steps, "default again", replace(base, name="ours (defaults, again)"), d,
                    need(rows, steps) - 5)  # fmt: skip
        _dump_inductor_code(Path(self.args.out) / "inductor_code.tar.gz")
        for at, r in got:
            refs = [x for a, x in got if a == at and x["change"].startswith("default")]
            if not refs:
                continue
            ratio = r["tok_s"] / statistics.mean(x["tok_s"] for x in refs)
            print(f"[round10] {r['name']}: {ratio:.3f}x the default at {at} (mean of {len(refs)}), MFU "
                  f"{r['mfu'] * 100:.1f}% (PaLM {r.get('mfu_palm', 0) * 100:.1f}%), {r['ms']:.1f} ms/step, peak "
                  f"{r['peak_gib']:.1f} GiB, loss {r['loss_first_step']:.5f} -> {r['loss']:.5f} after "
                  f"{r['steps'] - 1} updates", flush=True)  # fmt: skip

    # -- round 11: the headline with the round-11 defaults, the round-10 default and HF in the same call ---------------
    def round11(self) -> None:
        """The headline step as the model and the training entry point now run it (round 11: SwiGLU's backward as one
        Triton kernel on CUDA where triton imports, DeepSpeed's ZeRO-1 gradient norm as one fp32 foreach pass; every
        earlier default) at each ``--r11-grid`` entry ``ROWSxMICROBATCHES`` (default 8x4, 16x16, 32x16), the
        round-10 default (the SwiGLU chunk path, DeepSpeed's own norm) at ``--r11-ref`` (default 16x16) as the
        call's reference, and HF ``Glm4MoeForCausalLM`` (sdpa, ``--r11-hf-experts`` experts: grouped_mm, its
        fastest in every earlier call) at the same entry, so that both ratios come from this one call. The entry
        point's DeepSpeed config, whole rows, no MTP (HF's work). Steps: ``--r7-warmup`` + ``--r7-iters`` below the
        reference's size (8 x 4: 2 + 5), 1 warm-up and 3 timed at it (16 x 16), 1 + 2 above (32 x 16); HF 1 + 2. Then,
        while ``--time-limit`` leaves their time, the round-10 default at the first entry and the new defaults at the
        reference again (the call's noise). Ends with a table (``x`` the round-10 default at the reference, ``x HF``)."""
        from model.kernels.swiglu import resolve_swiglu

        cfg, key = self.r7_cfg, self.r7_key
        left = lambda: self.args.time_limit - (time.perf_counter() - START)  # noqa: E731
        entry = {"timers": {"throughput": {"enabled": False}}, "bf16": {"check_grad_overflow": False}}
        d_new = DSVariant(
            "the entry point's DeepSpeed config, fp32 foreach gradient norm", entry, foreach_norm=True
        )
        d_old = DSVariant("the entry point's DeepSpeed config", entry)
        new = Variant("ours (round-11 defaults)", compile=self.r7_compile)
        old = replace(
            new, name="ours (round-10 defaults: SwiGLU chunk path, DeepSpeed's norm)", fused_swiglu=False
        )
        swiglu_here = resolve_swiglu(None, self.dev)
        triton_ok = importlib.util.find_spec("triton") is not None
        info = {"section": "round11 info", "name": "defaults here", "swiglu_default": str(swiglu_here),
                "triton_installed": triton_ok, "device": str(self.dev)}  # fmt: skip
        self.rows.append(info)
        print(f"[round11] SwiGLU's default on {self.dev.type}: {swiglu_here!r} (triton installed: {triton_ok})",
              flush=True)  # fmt: skip
        if self.dev.type == "cuda" and swiglu_here != "triton":
            print("[round11] WARNING: the Triton SwiGLU backward is not the default here: the new-default rows run "
                  "the chunk path", flush=True)  # fmt: skip
        parse = lambda e: tuple(int(x) for x in e.lower().split("x"))  # noqa: E731
        grid = [parse(e) for e in self.args.r11_grid.split(",")]
        ref_at = parse(self.args.r11_ref)
        got: list[dict[str, Any]] = []

        def steps_of(rows: int, gas: int) -> dict[str, int]:
            """Below the reference's micro-batches x rows (the 8 x 4 headline): --r7-warmup + --r7-iters (2 + 5);
            at it (16 x 16, 3.5 s a step): 1 + 3; above (32 x 16, 7 s a step): 1 + 2. The same rule on CPU."""
            size, ref_size = rows * gas, ref_at[0] * ref_at[1]
            if size < ref_size:
                return {}
            return {"warmup": 1, "iters": 3 if size == ref_size else 2}

        def need(rows: int, gas: int) -> float:
            return (
                25 + rows * gas / 6
            )  # seconds: build and compile, then the steps (~3.5 s a step at 16 x 16)

        def ours(tag: str, v: Variant, d: DSVariant, rows: int, gas: int, factor: float = 1.0) -> None:
            at = f"{rows} x {gas}"
            if left() < need(rows, gas) * factor:
                print(f"[round11] {tag}, {at}: skipped ({left():.0f} s of --time-limit left, needs "
                      f"~{need(rows, gas) * factor:.0f})", flush=True)  # fmt: skip
                return
            r = self.ds_step("round11 step", cfg, key, replace(v, name=f"{v.name}, {at}"), d, batch=rows,
                             gas=gas, **steps_of(rows, gas))  # fmt: skip
            if r:
                r["grid"], r["change"] = at, tag
                got.append(r)

        def hf(rows: int, gas: int) -> None:
            at, experts = f"{rows} x {gas}", self.args.r11_hf_experts
            if left() < 10 + rows * gas / 2.5:  # HF: ~8.5 s a step at 16 x 16, three steps
                print(f"[round11] HF, {at}: skipped ({left():.0f} s of --time-limit left)", flush=True)
                return
            r = self.full_step(
                "round11 step", f"{hf_name(experts, 'default')}, {at}", cfg, lambda: self.hf(cfg, key, experts),
                rows, packed=False, mtp=False, ours=False, gas=gas, bf16={},
                warmup=1, iters=2,
            )  # fmt: skip
            if r:
                r["grid"], r["change"] = at, "HF"
                got.append(r)

        ours("new defaults", new, d_new, *ref_at)  # the reference entry first, both ways
        ours("round-10 defaults", old, d_old, *ref_at)
        for rows, gas in grid:
            if (rows, gas) != ref_at:
                ours("new defaults", new, d_new, rows, gas)
        hf(*ref_at)
        # extras, while the time limit leaves them: the old default at the first entry, the new ones again (noise)
        if grid[0] != ref_at:
            ours("round-10 defaults", old, d_old, *grid[0], factor=1.5)
        again = replace(new, name="ours (round-11 defaults, again)")
        ours("new defaults again", again, d_new, *ref_at, factor=1.5)
        _round11_ratios(got, f"{ref_at[0]} x {ref_at[1]}")
        (Path(self.args.out) / "train_bench.json").write_text(json.dumps(self.rows, indent=1, default=str))
        for r in got:
            print(f"[round11] {r['name']}: {r.get('x_ref', float('nan')):.3f}x the round-10 default at "
                  f"{ref_at[0]} x {ref_at[1]}, {r.get('x_hf', float('nan')):.2f}x HF, MFU {r['mfu'] * 100:.1f}% (PaLM "
                  f"{r.get('mfu_palm', 0) * 100:.1f}%), {r['ms']:.1f} ms/step, peak {r['peak_gib']:.1f} GiB"
                  + (f", loss {r['loss_first_step']:.5f} -> {r['loss']:.5f} after {r['steps'] - 1} updates"
                     if "loss" in r else ""), flush=True)  # fmt: skip
        print(round11_table(got, f"{ref_at[0]} x {ref_at[1]}", swiglu_here), flush=True)

    def _round8_check(
        self, cfg: ModelConfig, key: str, paths: dict[str, Variant], ref: Variant | None = None,
        section: str = "round8",
    ) -> None:  # fmt: skip
        """bf16 agreement of each round-8 change with the default (``ref``, else the model's defaults; eager, 2
        whole rows of ``SEQ_LEN``, MTP on): the loss, the relative difference of a few gradients (layer 1's
        attention, experts, router; the head), and whether the routers picked the same experts (equal load
        counts)."""
        ids, _ = self.inputs(cfg, 2, False)
        names = ("model.layers.1.self_attn.q_proj.weight", "model.layers.1.mlp.experts.gate_up_proj",
                 "model.layers.1.mlp.gate.weight", "lm_head.weight")  # fmt: skip

        def run(v: Variant) -> tuple[float, dict[str, torch.Tensor], list[torch.Tensor]]:
            _free()
            model = self.ours(cfg, key, replace(v, compile=False))
            model.zero_grad(set_to_none=True)
            loss = model(ids, labels=ids, mtp_weight=0.3, return_logits=False).loss
            loss.backward()
            params = dict(model.named_parameters())
            return (
                float(loss),
                {n: params[n].grad.float().clone() for n in names if n in params},
                [r.load.clone() for r in model.routers()],
            )

        try:
            ref_loss, ref_grads, ref_loads = run(ref or Variant("ours"))
        except Exception:  # noqa: BLE001
            print(f"[{section}] check: the default path FAILED:\n{traceback.format_exc()}", flush=True)
            return
        for tag, v in paths.items():
            try:
                loss, grads, loads = run(v)
                rel = {n: float((grads[n] - g).norm() / g.norm()) for n, g in ref_grads.items()}
                same = all(torch.equal(a, b) for a, b in zip(loads, ref_loads, strict=True))
                row = {"section": f"{section} check", "name": tag, "loss": loss, "loss_default": ref_loss,
                       "loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss), "grad_rel_diff": rel,
                       "same_expert_loads": same}  # fmt: skip
            except Exception:  # noqa: BLE001 - reported; the timed row will show the failure too
                row = {"section": f"{section} check", "name": tag, "error": traceback.format_exc()[-2000:]}
            self.rows.append(row)
            print(f"[{section}] check {row}", flush=True)
        (Path(self.args.out) / "train_bench.json").write_text(json.dumps(self.rows, indent=1, default=str))

    def _round6_check(self, cfg: ModelConfig, key: str, paths: dict[str, Variant]) -> None:
        """bf16 agreement of each new path with the default one, eager, 2 packed rows of 4096: the loss (lm + MTP)
        and the relative difference of a few gradients (attention projections of layer 1, its experts, the shared
        expert). Near-tied expert picks may flip in bf16, so small differences are rounding, large ones a bug; the
        masked SDPA path (another correct attention kernel) shows the size of bf16 rounding."""
        ids, doc_lens = self.inputs(cfg, 2, True)
        names = ("model.layers.1.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                 "model.layers.1.self_attn.v_proj.weight", "model.layers.1.mlp.experts.gate_up_proj",
                 "model.layers.1.mlp.shared_experts.down_proj.weight")  # fmt: skip

        def run(v: Variant) -> tuple[float, dict[str, torch.Tensor]]:
            _free()
            model = self.ours(cfg, key, replace(v, compile=False))
            model.zero_grad(set_to_none=True)
            loss = model(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, return_logits=False).loss
            loss.backward()
            params = dict(model.named_parameters())
            return float(loss), {n: params[n].grad.float().clone() for n in names}

        try:
            ref_loss, ref_grads = run(Variant("ours", moe_dispatch="index"))
        except Exception:  # noqa: BLE001
            print(f"[round6] check: the default path FAILED:\n{traceback.format_exc()}", flush=True)
            return
        for tag, v in paths.items():
            try:
                loss, grads = run(v)
                rel = {
                    n.split("layers.1.")[1]: float((grads[n] - g).norm() / g.norm())
                    for n, g in ref_grads.items()
                }
                row = {"section": "round6 check", "name": tag, "loss": loss, "loss_default": ref_loss,
                       "loss_rel_diff": abs(loss - ref_loss) / abs(ref_loss), "grad_rel_diff": rel}  # fmt: skip
            except Exception:  # noqa: BLE001 - a path that fails here is reported and still timed (it will fail)
                row = {"section": "round6 check", "name": tag, "error": traceback.format_exc()[-2000:]}
            self.rows.append(row)
            print(f"[round6] check {row}", flush=True)
        (Path(self.args.out) / "train_bench.json").write_text(json.dumps(self.rows, indent=1))

    def _fa3(self, cfg: ModelConfig, key: str) -> None:
        """Forward + backward with torch's FlashAttention-3 implementation activated, when this torch has it."""
        try:
            from torch.nn.attention import activate_flash_attention_impl, restore_flash_attention_impl

            activate_flash_attention_impl("FA3")
        except Exception as exc:  # noqa: BLE001 - not in this build: say so, keep the other rows
            print(f"[speed] FlashAttention-3 unavailable ({type(exc).__name__}: {exc})", flush=True)
            return
        try:
            self.fwd_bwd(
                "speed fwd+bwd", cfg, key, Variant("ours fwd+bwd, mb 8, FlashAttention-3", micro_batch=8)
            )
        finally:
            restore_flash_attention_impl()

    def profile(self) -> None:
        from torch.profiler import ProfilerActivity, profile

        cfg = model_config("small")
        for v in (
            Variant("eager (grouped GEMM, varlen, fused loss)", compile=False, packed=True),
            Variant("compiled", packed=True),
        ):
            _free()
            model = self.ours(cfg, "small", v)
            ids, doc_lens = self.inputs(cfg, v.micro_batch, v.packed)

            def step(
                model: GLMForCausalLM = model, ids: torch.Tensor = ids, doc_lens: Any = doc_lens
            ) -> None:
                model.zero_grad(set_to_none=True)
                model(ids, doc_lens=doc_lens, labels=ids, return_logits=False).loss.backward()

            for _ in range(3):
                step()
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                t0 = time.perf_counter()
                for _ in range(3):
                    step()
                torch.cuda.synchronize()
                wall = (time.perf_counter() - t0) / 3
            events = prof.key_averages()
            table = events.table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=90)
            out = Path(self.args.out) / f"profile_{'compiled' if v.compile else 'eager'}.txt"
            out.write_text(table)
            kinds: dict[str, float] = {}
            total = 0.0
            for e in events:  # kernels only (an op's row repeats its kernels' time)
                if e.device_type != torch.autograd.DeviceType.CUDA:
                    continue
                t = getattr(e, "self_device_time_total", None)
                if t is None:
                    t = getattr(e, "self_cuda_time_total", 0.0)
                kinds[_kernel_kind(e.key)] = kinds.get(_kernel_kind(e.key), 0.0) + t
                total += t
            print(
                f"\n[profile] {v.name}: kernels {total / 3 / 1e3:.1f} ms per step of {wall * 1e3:.1f} ms wall "
                f"(profiler on; GPU idle {max(0.0, 1 - total / 3 / 1e6 / wall) * 100:.0f}%), by kind:"
            )
            for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1]):
                print(f"  {kind:40s} {t / 3 / 1e3:8.2f} ms  {t / total * 100:5.1f}%")
            self.rows.append(
                {"section": "profile", "name": v.name, "kernel_ms": total / 3 / 1e3, "wall_ms": wall * 1e3,
                 "kinds_ms": {k: t / 3 / 1e3 for k, t in kinds.items()}}
            )  # fmt: skip
            print(table[:6000])
            model = step = None


def write_random_shard(folder: Path, rows: int, seq_len: int, vocab: int, seed: int) -> Path:
    """A packed_tokens shard (docs/PACKED_TOKENS.md) of seeded random tokens, its rows packed with documents of
    :func:`packed_doc_lens` (no padding): what the entry point reads, without a tokenizer or a corpus."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (rows, seq_len), generator=gen, dtype=torch.int32)
    doc_lens = packed_doc_lens(rows, seq_len, seed)
    table = pa.table(
        {
            "input_ids": pa.array(ids.tolist(), type=pa.list_(pa.int32())),
            "doc_lens": pa.array(doc_lens, type=pa.list_(pa.int32())),
            "n_pad": pa.array([0] * rows, type=pa.int32()),
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-00000.parquet"
    pq.write_table(table, path)
    return path


def ranks(
    work: Path, log_path: Path, *, flavour: str = "small", seq_len: int = SEQ_LEN, global_batch: int = 32,
    micro_batch: int = 8, steps: int = 4, device: str = "cuda", world: int = 2, timeout: float = 240.0,
) -> list[dict[str, Any]]:  # fmt: skip
    """The real entry point (``python -m model.train.main spec.json``) on 1 rank and, through the DeepSpeed launcher,
    on ``world`` ranks, for AdamW at ZeRO 1 and Muon at ZeRO 0, on the same shard and global batch: per-step losses
    (which must agree) and tokens/s per GPU. The two one-rank runs go side by side (one GPU each on CUDA)."""
    import subprocess

    from model.config import model_config as _cfg
    from model.train.launch import launch_command

    cfg = _cfg(flavour)
    shard = write_random_shard(work / "shards", global_batch * (steps + 1), seq_len, cfg.vocab_size, 3)
    bf16 = device == "cuda"
    runs = {}
    for optim, zero in (("adamw", 1), ("muon", 0)):
        for n in (1, world):
            name = f"{optim}_zero{zero}_{n}rank"
            spec = {
                "model": {"flavour": flavour},
                "data": {"shards": [str(shard.parent)], "seed": 0},
                "batch": {"global_batch": global_batch, "micro_batch": micro_batch},
                "optim": {"name": optim, "lr": 2.5e-4},
                "schedule": {"warmup_steps": 0},
                "steps": 100,
                "stop_after": steps,  # leave before the end: no checkpoint of 0.8B parameters to write
                "zero_stage": zero,
                "precision": "bf16" if bf16 else "fp32",
                "checkpoint": {"dir": str(work / name / "ckpt")},
                "metrics": str(work / name / "metrics.parquet"),
                "seed": 0,
            }
            (work / name).mkdir(parents=True, exist_ok=True)
            (work / name / "spec.json").write_text(json.dumps(spec))
            runs[name] = (n, work / name)
    rank_vars = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")
    env = {k: v for k, v in os.environ.items() if k not in rank_vars}  # each run sets up its own ranks
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    env.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
    env.setdefault("NVSHMEM_DISABLE_NVLS", "1")
    if device == "cpu":
        env.update(DS_ACCELERATOR="cpu", CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")

    def start(name: str) -> subprocess.Popen:
        n, folder = runs[name]
        spec_path = str(folder / "spec.json")
        run_env = dict(env)
        if n == 1:  # one rank: the entry point alone (no launcher), on its own GPU
            argv = [sys.executable, "-m", "model.train.main", spec_path]
            if device == "cuda":
                run_env["CUDA_VISIBLE_DEVICES"] = "0" if name.startswith("adamw") else "1"
        else:
            plan = launch_command(spec_path, n, device=device, env=run_env)  # type: ignore[arg-type]
            argv, run_env = plan.argv, plan.env
        log = open(folder / "log.txt", "w")  # noqa: SIM115 - closed after the process ends
        return subprocess.Popen(argv, env=run_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    phases = [
        ["adamw_zero1_1rank", "muon_zero0_1rank"],
        [f"adamw_zero1_{world}rank"],
        [f"muon_zero0_{world}rank"],
    ]
    results: list[dict[str, Any]] = []
    with open(log_path, "w") as log:
        for phase in phases:
            t0 = time.perf_counter()
            procs = {name: start(name) for name in phase}
            for name, proc in procs.items():
                try:
                    rc = proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = "timeout"
                folder = runs[name][1]
                text = (folder / "log.txt").read_text(errors="replace")
                log.write(f"===== {name}: rc {rc}, {time.perf_counter() - t0:.0f} s\n{text[-6000:]}\n")
                log.flush()
                rows = []
                jsonl = folder / "metrics.jsonl"
                if jsonl.exists():
                    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
                n = runs[name][0]
                timed = [r["tok_s"] for r in rows[2:]] or [
                    r["tok_s"] for r in rows
                ]  # step 1-2 hold compilation
                results.append(
                    {"section": "ranks", "name": name, "rc": rc, "world": n, "losses": [r["loss"] for r in rows],
                     "grad_norms": [r["grad_norm"] for r in rows],
                     "tok_s_per_gpu": statistics.mean(timed) / n if timed else None}
                )  # fmt: skip
                print(f"[ranks] {name}: rc {rc}, losses {results[-1]['losses']}, tok/s per GPU "
                      f"{results[-1]['tok_s_per_gpu']}", flush=True)  # fmt: skip
    by = {r["name"]: r for r in results}
    for optim, zero in (("adamw", 1), ("muon", 0)):
        one, many = by.get(f"{optim}_zero{zero}_1rank"), by.get(f"{optim}_zero{zero}_{world}rank")
        if one and many and one["losses"] and len(one["losses"]) == len(many["losses"]):
            rel = [abs(a - b) / abs(a) for a, b in zip(one["losses"], many["losses"], strict=True)]
            print(
                f"[ranks] {optim} ZeRO {zero}: 1 vs {world} ranks, loss rel. diff per step {rel}", flush=True
            )
            results.append({"section": "ranks", "name": f"{optim} agreement", "loss_rel_diff": rel})
    return results


def _profile_one(step: Callable[[], None], path: Path, name: str, full: bool = False) -> dict[str, Any]:
    """One more call of ``step`` under ``torch.profiler``: the host-side ops by their own CPU time and the kernels by
    GPU time go to ``path``; kernel time against wall time (the difference: the GPU idle), the kernels by kind and
    the host's waits for the GPU (synchronize calls) are printed and returned. ``full`` (round 8) also records the
    ops' input shapes and appends every kernel with its whole name (calls, total, mean) and the ops grouped by input
    shape, so that each kernel can be traced to the tensors it works on."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    _sync()
    with profile(activities=activities, record_shapes=full) as prof:
        t0 = time.perf_counter()
        step()
        _sync()
        wall = time.perf_counter() - t0
    events = prof.key_averages()

    def is_kernel(e: Any) -> bool:
        # device events, less the GPU spans of annotated regions (e.g. "Optimizer.step#AdamW.step", which spans the
        # fused AdamW kernel and was counted a second time under "other" up to round 7: 6.9 ms per step)
        return e.device_type == torch.autograd.DeviceType.CUDA and not getattr(e, "is_user_annotation", False)

    kernels = sum(getattr(e, "self_device_time_total", 0.0) for e in events if is_kernel(e))
    cpu = events.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=80)
    gpu = events.table(sort_by="self_cuda_time_total", row_limit=60, max_name_column_width=80) if cuda else ""
    kinds: dict[str, float] = {}
    for e in events:  # kernels only, summed by kind
        if is_kernel(e):
            kind = _kernel_kind(e.key)
            kinds[kind] = kinds.get(kind, 0.0) + getattr(e, "self_device_time_total", 0.0)
    by_kind = "\n".join(
        f"  {k:48s} {t / 1e3:8.1f} ms  {t / max(kernels, 1e-9) * 100:5.1f}%"
        for k, t in sorted(kinds.items(), key=lambda kv: -kv[1])
    )
    waits = {  # the host waiting for the GPU: calls and their CPU ms
        e.key: (e.count, e.self_cpu_time_total / 1e3)
        for e in events
        if e.key in ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize")
    }
    idle = wall * 1e3 - kernels / 1e3
    head = (
        f"{name}\nwall {wall * 1e3:.1f} ms, kernels {kernels / 1e3:.1f} ms, GPU idle (wall - kernels) {idle:.1f} ms "
        f"({idle / max(wall * 1e3, 1e-9) * 100:.1f}% of the wall; profiler on)\nhost waits for the GPU: "
        + (", ".join(f"{k} {n} calls {ms:.1f} ms" for k, (n, ms) in waits.items()) or "none")
    )
    extra = ""
    if full:
        rows = sorted(
            (e for e in events if is_kernel(e)), key=lambda e: -getattr(e, "self_device_time_total", 0.0)
        )
        listing = "\n".join(
            f"{getattr(e, 'self_device_time_total', 0.0) / 1e3:9.3f} ms {e.count:6d} calls "
            f"{getattr(e, 'self_device_time_total', 0.0) / max(e.count, 1):9.1f} us  [{_kernel_kind(e.key)}]  {e.key}"
            for e in rows
        )
        shapes = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=120,
            max_name_column_width=60, max_shapes_column_width=160,
        )  # fmt: skip
        extra = (
            f"\n\nevery kernel (GPU ms per step, calls, mean, kind, whole name):\n{listing}\n\n"
            f"kernels by the compiled graph that launched them:\n{_kernels_by_graph(prof)}\n\n"
            f"ops by input shape:\n{shapes}\n"
        )
        _write_trace(prof, path.with_name(path.stem + ".trace.json.gz"))
    path.write_text(f"{head}\n\nkernels by kind:\n{by_kind}\n\n{cpu}\n\n{gpu}\n{extra}")
    print(f"[profile step] kernels by kind:\n{by_kind}", flush=True)
    print(f"[profile step] {head}", flush=True)
    print(cpu[:4000], flush=True)
    return {
        "wall_ms": wall * 1e3, "kernel_ms": kernels / 1e3, "idle_ms": idle,
        "kinds_ms": {k: t / 1e3 for k, t in kinds.items()}, "host_waits": waits,
    }  # fmt: skip


def _kernels_by_graph(prof: Any) -> str:
    """The kernels each compiled graph launched (``## Call CompiledFxGraph <key>`` ranges of the profile, summed
    over the step by kernel name, in launch order of first appearance), so that a kernel name that several graphs
    share (inductor numbers each graph's kernels from 0) is attributed to its graph; inductor's code of that graph
    (``inductor_code.tar.gz``) then names the ops inside."""
    try:
        graphs: dict[str, dict[str, list[float]]] = {}

        def device_kernels(ev: Any) -> list[tuple[str, float]]:
            """The kernels launched inside ``ev``: the profiler hangs each on its launching CPU op."""
            found = [(k.name, float(k.duration)) for k in getattr(ev, "kernels", []) or []]
            for child in getattr(ev, "cpu_children", []) or []:
                found.extend(device_kernels(child))
            return found

        for ev in prof.events():
            if ev.name.startswith("## Call CompiledFxGraph"):
                per = graphs.setdefault(ev.name.split(" ")[3][:12], {})
                for kname, us in device_kernels(ev):
                    acc = per.setdefault(kname, [0, 0.0])
                    acc[0] += 1
                    acc[1] += us
        lines = []
        for graph, per in graphs.items():
            total = sum(us for _, us in per.values())
            lines.append(f"graph {graph}: {total / 1e3:.2f} ms")
            lines += [f"  {us / 1e3:8.3f} ms {n:5d} calls  {k}" for k, (n, us) in per.items()]
        return "\n".join(lines) or "(no compiled graph in this step)"
    except Exception:  # noqa: BLE001 - a diagnostic only: say why and keep the rest of the profile
        return f"(not available: {traceback.format_exc(limit=2)})"


def _write_trace(prof: Any, path: Path) -> None:
    """The profiler's Chrome trace of the step, gzipped (for a look at the order of kernels and their gaps)."""
    import gzip
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "trace.json"
            prof.export_chrome_trace(str(raw))
            path.write_bytes(gzip.compress(raw.read_bytes(), 6))
        print(f"[profile step] trace -> {path} ({path.stat().st_size / 1e6:.1f} MB)", flush=True)
    except Exception as exc:  # noqa: BLE001 - a diagnostic only
        print(f"[profile step] no trace ({type(exc).__name__}: {exc})", flush=True)


def _dump_inductor_code(path: Path, limit: int = 15 << 20) -> None:
    """The generated code of this process's compiled graphs (inductor's output modules in its cache folder: the
    ``call`` function with the source ops of each kernel, the Triton kernels' code) as one gzipped tar of at most
    ``limit`` bytes, so that unnamed kernels in a profile (combo kernels: ``triton_poi_fused_3``) can be traced to
    the model code they come from. Nothing when nothing was compiled (the CPU rehearsal runs eager)."""
    import io
    import tarfile

    try:
        from torch._inductor.runtime.runtime_utils import cache_dir

        root = Path(cache_dir())
    except Exception:  # noqa: BLE001 - another torch layout: the documented default
        root = Path(
            os.environ.get("TORCHINDUCTOR_CACHE_DIR", f"/tmp/torchinductor_{os.environ.get('USER', 'root')}")
        )
    mods = []
    for f in root.rglob("*.py") if root.is_dir() else []:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if "def call(" in text and f.stat().st_mtime >= time.time() - (time.perf_counter() - START) - 5:
            mods.append((f, text))
    if not mods:
        print(f"[round8] no inductor output code under {root} (nothing compiled in this call)", flush=True)
        return
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f, text in sorted(mods, key=lambda m: m[0].stat().st_mtime):
            data = text.encode()
            info = tarfile.TarInfo(f"inductor_code/{f.parent.name}_{f.name}")
            info.size, info.mtime = len(data), int(f.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
            if buf.tell() > limit:
                break
    path.write_bytes(
        buf.getvalue()
    )  # stops adding modules past ``limit`` (the last one's few KB may pass it)
    print(
        f"[round8] {len(mods)} inductor output modules -> {path} ({path.stat().st_size / 1e6:.1f} MB)",
        flush=True,
    )


def _kernel_kind(name: str) -> str:
    """A coarse kind for a profiler event name (kernels and the few aten ops that show up as their own rows)."""
    n = name.lower()
    if "triton" in n:
        return (
            "fused loss blocks (triton)"
            if "logsumexp" in n
            else "fused norms / RoPE / SwiGLU / MoE glue (triton)"
        )
    rules = [
        ("flash", "attention (flash)"),
        ("fmha", "attention (flash)"),
        ("attention", "attention (other)"),
        ("grouped", "grouped GEMM (experts)"),
        ("cutlass", "grouped GEMM (experts)"),  # torch's sm90 grouped GEMM; dense GEMMs are cuBLAS (nvjet)
        ("nvjet", "GEMM (dense: projections, head, shared expert)"),
        ("gemm", "GEMM (dense: projections, head, shared expert)"),
        ("sm90_xmma", "GEMM (dense: projections, head, shared expert)"),
        ("topk", "router top-k"),
        ("sort", "sort / permutation"),
        ("index", "gather / scatter / index"),
        ("scatter", "gather / scatter / index"),
        ("gather", "gather / scatter / index"),
        ("copy", "copies / casts"),
        ("memcpy", "copies / casts"),
        ("memset", "memset"),
        ("reduce", "reductions (eager)"),
        ("softmax", "reductions (eager)"),
        ("elementwise", "elementwise (eager)"),
        ("vectorized", "elementwise (eager)"),
    ]
    for key, kind in rules:
        if key in n:
            return kind
    return "other"


def gpu(args: argparse.Namespace) -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import transformers

    try:
        import deepspeed  # noqa: F401

        ds = deepspeed.__version__
    except Exception as exc:  # noqa: BLE001 - the headline then runs on plain torch, and says so
        ds = f"unavailable ({type(exc).__name__}: {exc})"
        args.deepspeed = False
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, deepspeed {ds}, "
        f"{torch.cuda.get_device_name()}; seq_len {SEQ_LEN}, bf16; MFU against {PEAK_BF16 / 1e12:.0f} TFLOP/s",
        flush=True,
    )
    sections = args.sections.split(",")
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    sec = _sync_time(lambda: torch.mm(a, b), 3, 20)
    print(
        f"bf16 8192^3 matmul: {2 * 8192**3 / sec / 1e12:.0f} TFLOP/s (the card's practical ceiling)",
        flush=True,
    )
    a = b = None
    if "ranks" in sections:  # subprocesses on both GPUs, before this process holds any model
        bench_rows = ranks(
            Path(args.work),
            out / "ranks.log",
            world=min(2, torch.cuda.device_count()),
            timeout=args.ranks_timeout,
        )
        (out / "ranks.json").write_text(json.dumps(bench_rows, indent=1))
    if args.deepspeed:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(
            RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
        import deepspeed

        deepspeed.init_distributed(dist_backend="nccl", verbose=False)
    import torch._dynamo.config as dynamo_config

    dynamo_config.cache_size_limit = 64
    bench = Bench(args)
    bench.r7_cfg, bench.r7_key, bench.r7_compile = model_config("small"), "small", True
    t0 = time.perf_counter()
    try:
        if "headline" in sections:
            bench.headline("small", model_config("small"))
        if "attention" in sections:
            bench.attention()
        if "speed" in sections:
            bench.speed()
        if "round3" in sections:
            bench.round3()
        if "round4" in sections:
            bench.round4()
        if "round5" in sections:
            bench.round5()
        if "round6" in sections:
            bench.round6()
        if "round7" in sections:
            bench.round7()
        if "round11" in sections:
            bench.round11()
        if "round10" in sections:
            bench.round10()
        if "round9" in sections:
            bench.round9()
        if "round8" in sections:
            bench.round8()
        if "ablation" in sections:
            bench.ablation()
        if "profile" in sections:
            bench.profile()
        if "dense" in sections and args.time_limit - (time.perf_counter() - START) < 120:
            print("[dense] skipped (less than 120 s of --time-limit left)", flush=True)
        elif "dense" in sections:
            dense = model_config("small", first_k_dense_replace=12, num_nextn_predict_layers=0)
            bench.headline("dense", dense)
    finally:
        (out / "train_bench.json").write_text(json.dumps(bench.rows, indent=1))
        summary(bench.rows)
        print(f"total {time.perf_counter() - t0:.0f} s")


def _round11_ratios(rows: list[dict[str, Any]], ref_at: str) -> None:
    """Set each round-11 row's ``x_ref`` (tok/s against the round-10 default at ``ref_at``) and ``x_hf`` (against
    HF at ``ref_at``), where those rows exist."""
    ref = next((r for r in rows if r["change"] == "round-10 defaults" and r["grid"] == ref_at), None)
    hf = next((r for r in rows if r["change"] == "HF"), None)
    for r in rows:
        if ref:
            r["x_ref"] = r["tok_s"] / ref["tok_s"]
        if hf:
            r["x_hf"] = r["tok_s"] / hf["tok_s"]


def round11_table(rows: list[dict[str, Any]], ref_at: str, swiglu: object) -> str:
    """The round-11 rows as a Markdown table (the shape of docs/TRAIN_SPEED.md's tables)."""
    lines = [
        f"\n## Round 11: the headline step with the round-11 defaults (SwiGLU default here: {swiglu!r}; DeepSpeed's "
        f"gradient norm as one fp32 foreach pass), the round-10 default and HF at {ref_at}, one call",
        "| | rows x micro-batches | tok/s | MFU | MFU, PaLM | ms/step | peak GiB | loss first -> last (updates) | "
        f"x round-10 default {ref_at} | x HF {ref_at} |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        loss = f"{r['loss_first_step']:.4f} -> {r['loss']:.4f} ({r['steps'] - 1})" if "loss" in r else "-"
        x_ref = f"{r['x_ref']:.3f}x" if "x_ref" in r else "-"
        x_hf = f"{r['x_hf']:.2f}x" if "x_hf" in r else "-"
        palm = f"{r['mfu_palm'] * 100:.1f}%" if "mfu_palm" in r else "-"
        lines.append(
            f"| {r['change']} | {r['grid']} | {r['tok_s']:,.0f} | {r['mfu'] * 100:.1f}% | {palm} | {r['ms']:.1f} | "
            f"{r['peak_gib']:.1f} | {loss} | {x_ref} | {x_hf} |"
        )
    return "\n".join(lines)


def headline_table(flavour_key: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The headline's rows as a Markdown table: forward + backward and the full step, ours against the best HF
    variant of the same kind (the model's defaults; the full step under the entry point's DeepSpeed config)."""
    hf = {
        kind: max((r for r in rows if r["name"].startswith("HF") and ("step" in r) == kind), key=lambda r: r["tok_s"],
                  default=None)
        for kind in (False, True)
    }  # fmt: skip
    how = next((r["step"] for r in rows if "step" in r), "")
    lines = [
        f"\n## Headline ({flavour_key}, {SEQ_LEN}-token rows, micro-batch {args.micro_batch}, full step "
        f"{args.gas} micro-batches; {how}; the model's defaults)",
        "MFU: ours (half the causal attention matrix, the figure the target is judged by); PaLM: the whole attention "
        "matrix (PaLM's MFU definition, as torchtitan and Megatron report it)",
        "| | tok/s | MFU | MFU, PaLM convention (whole attention matrix) | ms | peak GiB | x HF |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kind = "full step" if "step" in r else "fwd+bwd"
        label = r["name"] if kind in r["name"] else f"{r['name']}, {kind}"
        ref = hf["step" in r]
        if r["name"].startswith("HF") or ref is None:
            ratio = ""
        elif r.get("packed") or r.get("mtp") or r.get("variant", {}).get("mtp"):
            ratio = "other work"
        else:
            ratio = f"{r['tok_s'] / ref['tok_s']:.2f}x"
        palm = f"{r['mfu_palm'] * 100:.1f}%" if "mfu_palm" in r else "-"
        lines.append(
            f"| {label} | {r['tok_s']:,.0f} | {r['mfu'] * 100:.1f}% | {palm} | {r['ms']:.1f} | "
            f"{r['peak_gib']:.1f} | {ratio} |"
        )
    return "\n".join(lines)


def summary(rows: list[dict[str, Any]]) -> None:
    print(
        "\n## Summary (tok/s, MFU (ours: half the causal attention matrix; the target's figure), MFU by PaLM's "
        "convention (whole attention matrix), peak GiB above the weights already held)"
    )
    section = None
    for r in rows:
        if "tok_s" not in r:
            continue
        if r["section"] != section:
            section = r["section"]
            print(f"{section}:")
        palm = f"{r['mfu_palm'] * 100:6.1f}%" if "mfu_palm" in r else "      -"
        print(f"  {r['name']:46s} {r['tok_s']:10.0f} {r['mfu'] * 100:6.1f}% {palm} {r['peak_gib']:7.1f}")
    for section in {r["section"] for r in rows}:
        part = [r for r in rows if r["section"] == section]
        hf = [r for r in part if r["name"].startswith("HF")]
        ours = [r for r in part if r["name"].startswith("ours")]
        if hf and ours:
            best = max(hf, key=lambda r: r["tok_s"])
            for r in ours:
                print(f"{section}: {r['name']} / {best['name']}: {r['tok_s'] / best['tok_s']:.2f}x")
    abl = [r for r in rows if r["section"] == "ablation"]
    for prev, cur in zip(abl, abl[1:], strict=False):
        print(f"ablation: {cur['name']}: {cur['tok_s'] / prev['tok_s']:.2f}x over the step before")


def cpu(args: argparse.Namespace) -> None:
    from benchmarks.model_cpu import whole_model

    torch.set_num_threads(args.threads)
    cfg = model_config("debug")
    b, s = 8, 256
    times = whole_model(cfg, b, s, args.rounds)
    tps = {name: b * s / min(ts) for name, ts in times.items()}
    best = max((v, k) for k, v in tps.items() if k.startswith("HF"))
    print(f"debug, batch {b} x {s}, forward + backward, tokens per CPU-second ({args.threads} thread(s), best of "
          f"{args.rounds}; median in brackets):")  # fmt: skip
    for name, ts in times.items():
        print(f"  {name:16s} {tps[name]:9.0f} ({b * s / statistics.median(ts):9.0f})")
    print(f"ours / best HF ({best[1]}): {tps['ours'] / best[0]:.2f}x")


def round7_cpu(args: argparse.Namespace, section: str = "round7") -> None:
    """A CPU rehearsal of ``--sections round7`` or ``round8`` (``section``; its plumbing, not its speed): the
    ``debug`` flavour, eager, bf16, rows of ``--r7-seq`` tokens, DeepSpeed on its CPU accelerator over gloo, every
    row as on the GPU."""
    global SEQ_LEN
    SEQ_LEN = args.r7_seq
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    torch.set_num_threads(args.threads)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    bench.r7_cfg, bench.r7_key, bench.r7_compile = model_config("debug"), "debug", False
    t0 = time.perf_counter()
    try:
        getattr(bench, section)()
    finally:
        (Path(args.out) / "train_bench.json").write_text(json.dumps(bench.rows, indent=1, default=str))
        summary(bench.rows)
        print(f"total {time.perf_counter() - t0:.0f} s")


def headline_cpu(args: argparse.Namespace) -> None:
    """A CPU rehearsal of ``--sections headline`` (its plumbing and table, not its speed): the ``debug`` flavour,
    eager, bf16, rows of ``--r7-seq`` tokens, HF with torch's SDPA order, DeepSpeed (the entry point's config) on its
    CPU accelerator over gloo."""
    global SEQ_LEN
    SEQ_LEN = args.r7_seq
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    torch.set_num_threads(args.threads)
    if args.deepspeed:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(
            RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    t0 = time.perf_counter()
    try:
        bench.headline("debug", model_config("debug"))
    finally:
        (Path(args.out) / "train_bench.json").write_text(json.dumps(bench.rows, indent=1, default=str))
        summary(bench.rows)
        print(f"total {time.perf_counter() - t0:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/train_bench"))
    parser.add_argument(
        "--sections",
        default=None,
        help="GPU default: headline,dense,ablation,profile; CPU default: debug against HF (forward + backward); on "
        "CPU, headline, round7, round8, round9, round10 or round11 rehearse those sections on the debug flavour",
    )
    parser.add_argument("--micro-batch", type=int, default=8, help="rows of 4K per micro-batch (headline)")
    parser.add_argument("--gas", type=int, default=4, help="micro-batches per optimizer step (headline)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--no-deepspeed", dest="deepspeed", action="store_false")
    parser.add_argument(
        "--ds-bf16",
        default="{}",
        help='more keys of DeepSpeed\'s bf16 section (JSON), e.g. {"immediate_grad_update": true}',
    )
    parser.add_argument(
        "--hf-experts", default="eager,batched_mm,grouped_mm", help="HF expert implementations timed"
    )
    parser.add_argument(
        "--hf-sdpa",
        default="default,cudnn",
        help="SDPA backend orders timed for HF: default (torch's), cudnn (cuDNN first)",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=1e9,
        help="seconds from the start after which speed steps are skipped",
    )
    parser.add_argument(
        "--ranks-timeout", type=float, default=240.0, help="seconds per phase of the ranks section"
    )
    parser.add_argument("--work", default="/tmp/train_bench_work", help="scratch folder (ranks section)")
    parser.add_argument("--rounds", type=int, default=5, help="CPU: timed rounds")
    parser.add_argument(
        "--r7-warmup", type=int, default=2, help="round7 / round8: optimizer steps before timing"
    )
    parser.add_argument(
        "--batch-grid",
        default="16x4,32x4,32x8,24x4",
        help="round9: ROWSxMICROBATCHES entries (rows per micro-batch x micro-batches per optimizer step)",
    )
    parser.add_argument(
        "--r10-grid", default=None,
        help="round10: ROWSxMICROBATCHES entries (default 8x4,16x16 on CUDA; the CPU rehearsal 2x2,4x4)",
    )  # fmt: skip
    parser.add_argument(
        "--r11-grid", default=None,
        help="round11: ROWSxMICROBATCHES entries of the new defaults (default 8x4,16x16,32x16 on CUDA; the CPU "
        "rehearsal 2x2,4x4,4x8)",
    )  # fmt: skip
    parser.add_argument(
        "--r11-ref", default=None,
        help="round11: the entry of the round-10 default and HF (default 16x16 on CUDA; the CPU rehearsal 4x4)",
    )  # fmt: skip
    parser.add_argument(
        "--r11-hf-experts",
        default="grouped_mm",
        help="round11: HF's expert implementation (its fastest so far)",
    )
    parser.add_argument("--r7-iters", type=int, default=5, help="round7 / round8: timed optimizer steps")
    parser.add_argument(
        "--r7-seq", type=int, default=64, help="round7 / headline on CPU (rehearsals): tokens per row"
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU: torch threads")
    args = parser.parse_args()
    args.r10_grid = args.r10_grid or ("8x4,16x16" if args.device == "cuda" else "2x2,4x4")
    args.r11_grid = args.r11_grid or ("8x4,16x16,32x16" if args.device == "cuda" else "2x2,4x4,4x8")
    args.r11_ref = args.r11_ref or ("16x16" if args.device == "cuda" else "4x4")
    if args.device == "cuda":
        args.sections = args.sections or "headline,dense,ablation,profile"
        gpu(args)
    elif "round7" in (args.sections or "").split(","):
        round7_cpu(args)
    elif "round8" in (args.sections or "").split(","):
        round7_cpu(args, "round8")
    elif "round9" in (args.sections or "").split(","):
        round7_cpu(args, "round9")
    elif "round10" in (args.sections or "").split(","):
        round7_cpu(args, "round10")
    elif "round11" in (args.sections or "").split(","):
        round7_cpu(args, "round11")
    elif "headline" in (args.sections or "").split(","):
        headline_cpu(args)
    else:
        cpu(args)


if __name__ == "__main__":
    main()
