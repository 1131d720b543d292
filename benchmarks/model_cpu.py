"""CPU training throughput of model/ against transformers' own Glm4MoeForCausalLM of the same shape.

Figures (one thread by default: the benchmark machine is shared; ``--threads`` changes it):

* expert kernels: forward + backward of ``model.moe.GroupedExperts`` alone on the routed tokens of one batch, for
  each implementation (``loop``: one GEMM pair per expert; ``bmm``: padded batched matmul; ``grouped_mm``: torch's
  grouped GEMM), at the debug, tiny and small expert shapes.
* whole model: tokens/s of forward + backward (LM loss on every token, no MTP, no packing, so both sides do the same
  work) of ``GLMForCausalLM`` against ``Glm4MoeForCausalLM`` holding the same weights, with SDPA attention and each
  of transformers' expert implementations (eager, batched_mm, grouped_mm); the ratio is against the fastest. Target
  >= 1x. ``ours`` is the training call (``return_logits=False``: head fused with the loss, model/loss.py);
  ``ours +logits`` materialises the logits as HF does. Also ours with packed rows (4 documents per row,
  block-diagonal mask) and with the MTP loss on.

Timing: process CPU time (with one thread it is the compute time, and it stays put when other jobs share the
cores, which wall time does not); the variants run interleaved, ``--rounds`` times after a warm-up; the best round
counts, the median is printed in brackets. Tokens/s are tokens per CPU-second.

Run: python benchmarks/model_cpu.py [--flavours debug tiny] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model.config import ModelConfig, model_config, to_hf  # noqa: E402
from model.glm import GLMForCausalLM  # noqa: E402
from model.moe import GroupedExperts  # noqa: E402

SHAPES = {"debug": (8, 256), "tiny": (4, 512), "small": (1, 1024)}  # batch, seq_len per flavour


def _time_rounds(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Process CPU seconds of each call, ``rounds`` interleaved rounds after one warm-up call each."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            times[name].append(time.process_time() - t0)
    return times


def expert_kernels(flavour: str, rounds: int) -> dict[str, list[float]]:
    cfg = model_config(flavour)
    b, s = SHAPES[flavour]
    t = b * s
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(t, cfg.hidden_size, generator=gen, requires_grad=True)
    idx = torch.rand(t, cfg.n_routed_experts, generator=gen).topk(cfg.num_experts_per_tok).indices
    w = torch.rand(t, cfg.num_experts_per_tok, generator=gen)
    fns = {}
    for impl in ("loop", "bmm", "grouped_mm"):
        ex = GroupedExperts(cfg, impl)
        torch.nn.init.normal_(ex.gate_up_proj, std=0.02, generator=torch.Generator().manual_seed(1))
        torch.nn.init.normal_(ex.down_proj, std=0.02, generator=torch.Generator().manual_seed(2))

        def run(ex: GroupedExperts = ex) -> None:
            ex.zero_grad(set_to_none=True)
            ex(x, idx, w).pow(2).mean().backward()

        fns[impl] = run
    return _time_rounds(fns, rounds)


def _hf_model(model: GLMForCausalLM, experts: str) -> torch.nn.Module:
    from transformers import Glm4MoeForCausalLM

    cfg = model.config
    hf_cfg = to_hf(cfg)
    hf_cfg._attn_implementation = "sdpa"
    hf_cfg._experts_implementation = experts
    hf = Glm4MoeForCausalLM(hf_cfg)
    mtp = f"model.layers.{cfg.num_hidden_layers}."
    hf.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(mtp)}, strict=True)
    return hf.train()


def whole_model(cfg: ModelConfig, batch: int, seq_len: int, rounds: int) -> dict[str, list[float]]:
    ids = torch.randint(0, cfg.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(0))
    ours = GLMForCausalLM(cfg).train()
    doc_lens = [[seq_len // 4] * 4 for _ in range(batch)]
    fns: dict[str, Callable[[], None]] = {}

    def run_ours(**kw: object) -> None:
        ours.zero_grad(set_to_none=True)
        ours(ids, labels=ids, **kw).loss.backward()

    fns["ours"] = lambda: run_ours(return_logits=False)  # training mode: head fused with the loss
    fns["ours +logits"] = run_ours  # logits materialised, loss from them (HF's way)
    fns["ours packed"] = lambda: run_ours(doc_lens=doc_lens, return_logits=False)
    fns["ours +MTP"] = lambda: run_ours(mtp_weight=0.3, return_logits=False)
    for experts in ("eager", "batched_mm", "grouped_mm"):
        hf = _hf_model(ours, experts)

        def run_hf(hf: torch.nn.Module = hf) -> None:
            hf.zero_grad(set_to_none=True)
            hf(ids, labels=ids).loss.backward()

        fns[f"HF {experts}"] = run_hf
    return _time_rounds(fns, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flavours", nargs="+", default=["debug", "tiny"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), process CPU time, best of {args.rounds} rounds "
        "(median in brackets)"
    )

    print("\n## Expert kernels, forward + backward (CPU ms)")
    for flavour in ("debug", "tiny", "small"):
        cfg = model_config(flavour)
        b, s = SHAPES[flavour]
        times = expert_kernels(flavour, args.rounds)
        shape = f"E={cfg.n_routed_experts} k={cfg.num_experts_per_tok} H={cfg.hidden_size} I={cfg.moe_intermediate_size}"
        cells = ", ".join(
            f"{name} {min(ts) * 1e3:.1f} ({statistics.median(ts) * 1e3:.1f})" for name, ts in times.items()
        )
        print(f"{flavour:6s} T={b * s:5d} {shape}: {cells}")

    print("\n## Whole model, forward + backward, tokens per CPU-second")
    for flavour in args.flavours:
        cfg = model_config(flavour)
        b, s = SHAPES[flavour]
        times = whole_model(cfg, b, s, args.rounds)
        tps = {name: b * s / min(ts) for name, ts in times.items()}
        best_hf = max((v, k) for k, v in tps.items() if k.startswith("HF"))
        print(f"{flavour} (batch {b} x {s}):")
        for name, ts in times.items():
            print(f"  {name:16s} {tps[name]:9.0f} tok/s ({b * s / statistics.median(ts):9.0f})")
        print(f"  ours / best HF ({best_hf[1]}): {tps['ours'] / best_hf[0]:.2f}x")


if __name__ == "__main__":
    main()
