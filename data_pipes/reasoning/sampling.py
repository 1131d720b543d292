"""Drawing samples: k per prompt, then more for hard prompts (GLM-4.5), with every result cached and verified.

Round one draws ``samples`` per prompt. A prompt whose share of correct samples is below ``hard_below`` then
gets ``hard_extra`` more draws (sample indices continue), since hard prompts are where extra samples find the
rare correct trace. Decisions depend only on cached results, so a resumed shard makes the same ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from data_pipes.reasoning.gen_cache import GenCache
from data_pipes.reasoning.teachers.base import GenRequest, GenResponse, build_messages
from data_pipes.reasoning.verify import verify_response


@dataclass(frozen=True)
class SamplingPlan:
    samples: int
    hard_extra: int = 0
    hard_below: float = 0.5
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int = 0
    sandbox_timeout_s: float = 10.0
    sandbox_memory_mb: int = 1024


def sample_seed(seed: int, pid: str, idx: int) -> int:
    return int(hashlib.sha256(f"{seed}:{pid}:{idx}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF


def _draw(
    problems: list[dict[str, str]], ranges: dict[str, range], plan: SamplingPlan, teacher, cache: GenCache
) -> int:
    """Request the samples in ``ranges`` that the cache lacks; returns how many were requested."""
    by_id = {p["id"]: p for p in problems}
    todo = [
        GenRequest(
            (pid, i),
            build_messages(by_id[pid]["prompt"]),
            plan.temperature,
            plan.max_tokens,
            sample_seed(plan.seed, pid, i),
            by_id[pid],
        )
        for pid, rng in ranges.items()
        for i in rng
        if (pid, i) not in cache.responses
    ]
    if todo:
        teacher.generate(todo, on_result=cache.add)
    return len(todo)


def _verify(
    problems: list[dict[str, str]], keys: list[tuple[str, int]], plan: SamplingPlan, cache: GenCache
) -> None:
    by_id = {p["id"]: p for p in problems}
    for key in keys:
        resp = cache.responses.get(key)
        if key in cache.verdicts or resp is None or resp.error is not None or resp.finish_reason == "length":
            continue
        v = verify_response(by_id[key[0]], resp.text, plan.sandbox_timeout_s, plan.sandbox_memory_mb)
        cache.add_verdict(key, {"ok": v.ok, "method": v.method, "detail": v.detail})


def _pass_rate(pid: str, n: int, cache: GenCache) -> float:
    ok = sum(bool(cache.verdicts.get((pid, i), {}).get("ok")) for i in range(n))
    return ok / n if n else 0.0


def collect(
    problems: list[dict[str, str]], plan: SamplingPlan, teacher, cache: GenCache
) -> tuple[dict[str, list[tuple[int, GenResponse, dict | None]]], int]:
    """All samples per problem as ``(index, response, verdict)``, and the number of requests made now."""
    first = {p["id"]: range(plan.samples) for p in problems}
    requested = _draw(problems, first, plan, teacher, cache)
    _verify(problems, [(pid, i) for pid, r in first.items() for i in r], plan, cache)
    counts = {p["id"]: plan.samples for p in problems}
    if plan.hard_extra:
        hard = {
            pid: range(plan.samples, plan.samples + plan.hard_extra)
            for pid in first
            if _pass_rate(pid, plan.samples, cache) < plan.hard_below
        }
        requested += _draw(problems, hard, plan, teacher, cache)
        _verify(problems, [(pid, i) for pid, r in hard.items() for i in r], plan, cache)
        for pid in hard:
            counts[pid] += plan.hard_extra
    out = {}
    for p in problems:
        pid = p["id"]
        out[pid] = [
            (
                i,
                cache.responses.get((pid, i))
                or GenResponse((pid, i), "", "error", {}, "teacher_no_response"),
                cache.verdicts.get((pid, i)),
            )
            for i in range(counts[pid])
        ]
    return out, requested
