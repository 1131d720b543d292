"""Training throughput of model/ (the GLM-4.5-style MoE) against transformers' ``Glm4MoeForCausalLM`` of the same
shape: tokens/s, MFU and peak memory on a GPU, and tokens/s on CPU.

GPU (``--device cuda``; the figures in docs/TRAIN_SPEED.md come from one run on an H200):

* **headline**: the ``small`` flavour, 4K rows, bf16, one full training step (forward, backward, AdamW step) under
  DeepSpeed ZeRO-1 (bf16 with fp32 master weights, micro-batch x gradient accumulation), ours against HF with its
  fastest settings (SDPA attention; each of its expert implementations is timed first and the fastest kept). Both
  do the same work: every token a target, no MTP, one document per row (HF's SDPA path has no document masking).
  Ours is also timed as it trains (MTP loss on, packed rows with several documents each).
* **dense**: the same for a dense ``small`` (every layer a 3072-wide SwiGLU FFN, no MTP).
* **ablation**: forward + backward alone (no optimizer), packed rows, starting from the plain version (per-expert
  GEMM loop, one SDPA call with a block-diagonal mask, logits materialised for the loss, eager) and adding one
  step at a time: grouped GEMM experts, varlen (flash) attention, the fused head + loss, ``torch.compile`` of the
  layers, a larger micro-batch.
* **profile**: ``torch.profiler`` of a few steps of the eager and the compiled model, GPU time by kernel kind.

MFU: model FLOPs (model/config.py ``flops_per_token``: 6 x active matmul parameters, head included (twice with
MTP), plus causal attention; for packed rows the attention term is summed per document) over time, against the
H100/H200 SXM datasheet dense bf16 rate (989 TFLOP/s). Timing: CUDA-synchronised wall time over ``--iters`` steps
after ``--warmup`` steps (compilation happens in the warm-up).

CPU (``--device cpu``): the ``debug`` flavour, forward + backward tokens per CPU-second, ours against HF's expert
implementations (benchmarks/model_cpu.py does the timing; one thread).

Run: ``python benchmarks/train.py --device cuda [--out DIR]`` (about 6 minutes on an H200, DeepSpeed optional: without
it the headline runs on plain torch AdamW and says so); ``python benchmarks/train.py --device cpu``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.config import ModelConfig, flops_per_token, model_config, to_hf  # noqa: E402
from model.glm import GLMForCausalLM  # noqa: E402

PEAK_BF16 = 989e12  # H100 / H200 SXM dense bf16, datasheet
SEQ_LEN = 4096


@dataclass(frozen=True)
class Variant:
    """One configuration of our model's training step."""

    name: str
    expert_impl: str = "grouped_mm"
    attn_impl: str = "auto"  # auto = varlen (flash) on CUDA in bf16
    compile: bool = True
    fused_ce: bool = True
    micro_batch: int = 4
    packed: bool = False
    mtp: bool = False


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


def step_flops(cfg: ModelConfig, batch: int, doc_lens: list[list[int]] | None, mtp: bool) -> float:
    """Model FLOPs of one forward + backward over [batch, SEQ_LEN] (see the module docstring)."""
    with_mtp = mtp and cfg.num_nextn_predict_layers > 0
    if doc_lens is None:
        return flops_per_token(cfg, SEQ_LEN, with_mtp=with_mtp) * batch * SEQ_LEN
    matmul = flops_per_token(cfg, 0, with_mtp=with_mtp) * batch * SEQ_LEN  # seq_len 0: no attention term
    layers = cfg.num_hidden_layers + (1 if with_mtp else 0)
    attn = 6 * layers * cfg.num_attention_heads * cfg.head_dim * sum(n * n for row in doc_lens for n in row)
    return matmul + attn


def _sync_time(fn: Callable[[], None], warmup: int, iters: int) -> float:
    """Seconds per call of ``fn``, CUDA-synchronised, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def _free() -> None:
    gc.collect()
    torch.cuda.empty_cache()


class Bench:
    """Shared state of one GPU run: the small weights (built once), the results table."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self._weights: dict[str, dict[str, torch.Tensor]] = {}

    # -- models -----------------------------------------------------------------------------------------------
    def weights(self, cfg: ModelConfig, key: str) -> dict[str, torch.Tensor]:
        """Seeded bf16 weights of ``cfg`` on the GPU (built once per key; every variant loads the same)."""
        if key not in self._weights:
            model = GLMForCausalLM(cfg, seed=0)
            self._weights[key] = {k: v.to("cuda", torch.bfloat16) for k, v in model.state_dict().items()}
        return self._weights[key]

    def ours(self, cfg: ModelConfig, key: str, v: Variant) -> GLMForCausalLM:
        with torch.device("cuda"):
            model = GLMForCausalLM(cfg, expert_impl=v.expert_impl, attn_impl=v.attn_impl, seed=None)  # type: ignore[arg-type]
        model.load_state_dict(self.weights(cfg, key))
        model.to(torch.bfloat16)
        for router in model.routers():
            router.float()
        model.compile_layers(v.compile)
        return model.train()

    def hf(self, cfg: ModelConfig, key: str, experts: str) -> torch.nn.Module:
        from transformers import Glm4MoeForCausalLM

        hf_cfg = to_hf(cfg.model_copy(update={"num_nextn_predict_layers": 0}))
        hf_cfg._attn_implementation = "sdpa"
        if cfg.first_k_dense_replace < cfg.num_hidden_layers:
            hf_cfg._experts_implementation = experts
        with torch.device("cuda"):
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
        self, section: str, name: str, seconds: float, tokens: int, flops: float, peak: float, **extra: Any
    ) -> dict[str, Any]:
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
        self.rows.append(row)
        print(
            f"[{section}] {name:44s} {row['tok_s']:10.0f} tok/s  MFU {row['mfu'] * 100:5.1f}%  "
            f"{row['ms']:8.1f} ms/step  peak {peak:6.1f} GiB",
            flush=True,
        )
        return row

    def inputs(
        self, cfg: ModelConfig, batch: int, packed: bool
    ) -> tuple[torch.Tensor, list[list[int]] | None]:
        ids = torch.randint(0, cfg.vocab_size, (batch, SEQ_LEN), generator=torch.Generator().manual_seed(1))
        return ids.cuda(), packed_doc_lens(batch, SEQ_LEN, 2) if packed else None

    def fwd_bwd(self, section: str, cfg: ModelConfig, key: str, v: Variant) -> dict[str, Any] | None:
        """Forward + backward of our model (no optimizer)."""
        try:
            _free()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
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
            peak = (torch.cuda.max_memory_allocated() - base) / 2**30
            flops = step_flops(cfg, v.micro_batch, doc_lens, v.mtp)
            model = None  # drop it before the next variant
            return self.record(section, v.name, sec, v.micro_batch * SEQ_LEN, flops, peak, variant=asdict(v))
        except Exception:  # noqa: BLE001 - one failed variant must not lose the others' figures
            print(f"[{section}] {v.name} FAILED:\n{traceback.format_exc()}", flush=True)
            return None

    def hf_fwd_bwd(self, section: str, cfg: ModelConfig, key: str, experts: str, batch: int) -> dict | None:
        try:
            _free()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            model = self.hf(cfg, key, experts)
            ids, _ = self.inputs(cfg, batch, False)

            def step() -> None:
                model.zero_grad(set_to_none=True)
                model(input_ids=ids, labels=ids).loss.backward()

            sec = _sync_time(step, self.args.warmup, self.args.iters)
            peak = (torch.cuda.max_memory_allocated() - base) / 2**30
            model = None
            flops = step_flops(cfg, batch, None, False)
            return self.record(section, f"HF sdpa, experts={experts}", sec, batch * SEQ_LEN, flops, peak)
        except Exception:  # noqa: BLE001
            print(f"[{section}] HF experts={experts} FAILED:\n{traceback.format_exc()}", flush=True)
            return None

    def full_step(
        self, section: str, name: str, cfg: ModelConfig, build: Callable[[], torch.nn.Module], batch: int,
        packed: bool, mtp: bool, ours: bool,
    ) -> dict | None:  # fmt: skip
        """A full training step: ``--gas`` micro-batches of ``batch`` rows, backward, AdamW, under DeepSpeed ZeRO-1
        (bf16, fp32 master weights) when it imports, else torch AdamW on bf16 parameters."""
        try:
            _free()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            model = build()
            ids, doc_lens = self.inputs(cfg, batch, packed)
            gas = self.args.gas
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=True)
            if self.args.deepspeed:
                import deepspeed

                config = {
                    "train_batch_size": batch * gas,
                    "train_micro_batch_size_per_gpu": batch,
                    "gradient_accumulation_steps": gas,
                    "zero_optimization": {"stage": 1},
                    "bf16": {"enabled": True},
                    "gradient_clipping": 1.0,
                    "steps_per_print": 1 << 30,
                    "zero_allow_untested_optimizer": True,
                }
                engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)

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

            sec = _sync_time(step, max(1, self.args.warmup // 2), max(2, self.args.iters // 3))
            peak = (torch.cuda.max_memory_allocated() - base) / 2**30
            flops = step_flops(cfg, batch, doc_lens, mtp) * gas
            engine = model = opt = None  # noqa: F841 - drop the references before the next variant
            how = "DeepSpeed ZeRO-1" if self.args.deepspeed else "torch AdamW (no DeepSpeed)"
            return self.record(section, name, sec, batch * SEQ_LEN * gas, flops, peak, step=how)
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
        section = f"{flavour_key} step"
        moe = cfg.first_k_dense_replace < cfg.num_hidden_layers
        best = (None, 0.0)
        for experts in ("eager", "batched_mm", "grouped_mm") if moe else ("eager",):
            row = self.hf_fwd_bwd(
                f"{flavour_key} HF fwd+bwd", cfg, flavour_key, experts, self.args.micro_batch
            )
            if row and row["tok_s"] > best[1]:
                best = (experts, row["tok_s"])
        ours_mb = Variant("ours fwd+bwd", micro_batch=self.args.micro_batch)
        self.fwd_bwd(f"{flavour_key} HF fwd+bwd", cfg, flavour_key, ours_mb)
        mb = self.args.micro_batch
        if best[0] is not None:
            self.full_step(
                section, f"HF sdpa, experts={best[0]}", cfg, lambda: self.hf(cfg, flavour_key, best[0]), mb,
                packed=False, mtp=False, ours=False,
            )  # fmt: skip
        v = Variant("ours")
        self.full_step(
            section, "ours (same work as HF)", cfg, lambda: self.ours(cfg, flavour_key, v), mb,
            packed=False, mtp=False, ours=True,
        )  # fmt: skip
        if moe:
            self.full_step(
                section, "ours as trained (packed rows, MTP)", cfg, lambda: self.ours(cfg, flavour_key, v), mb,
                packed=True, mtp=True, ours=True,
            )  # fmt: skip

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
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    sec = _sync_time(lambda: torch.mm(a, b), 3, 20)
    print(
        f"bf16 8192^3 matmul: {2 * 8192**3 / sec / 1e12:.0f} TFLOP/s (the card's practical ceiling)",
        flush=True,
    )
    a = b = None
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
    sections = args.sections.split(",")
    t0 = time.perf_counter()
    try:
        if "headline" in sections:
            bench.headline("small", model_config("small"))
        if "ablation" in sections:
            bench.ablation()
        if "profile" in sections:
            bench.profile()
        if "dense" in sections:
            dense = model_config("small", first_k_dense_replace=12, num_nextn_predict_layers=0)
            bench.headline("dense", dense)
    finally:
        (out / "train_bench.json").write_text(json.dumps(bench.rows, indent=1))
        summary(bench.rows)
        print(f"total {time.perf_counter() - t0:.0f} s")


def summary(rows: list[dict[str, Any]]) -> None:
    print("\n## Summary (tok/s, MFU, peak GiB above the weights already held)")
    section = None
    for r in rows:
        if "tok_s" not in r:
            continue
        if r["section"] != section:
            section = r["section"]
            print(f"{section}:")
        print(f"  {r['name']:46s} {r['tok_s']:10.0f} {r['mfu'] * 100:6.1f}% {r['peak_gib']:7.1f}")
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/train_bench"))
    parser.add_argument("--sections", default="headline,dense,ablation,profile")
    parser.add_argument("--micro-batch", type=int, default=8, help="rows of 4K per micro-batch (headline)")
    parser.add_argument("--gas", type=int, default=4, help="micro-batches per optimizer step (headline)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--no-deepspeed", dest="deepspeed", action="store_false")
    parser.add_argument("--rounds", type=int, default=5, help="CPU: timed rounds")
    parser.add_argument("--threads", type=int, default=1, help="CPU: torch threads")
    args = parser.parse_args()
    if args.device == "cuda":
        gpu(args)
    else:
        cpu(args)


if __name__ == "__main__":
    main()
