"""Rejection sampling: which drawn samples become records, and why the others are dropped.

Per prompt, in sample order, the first failing check names the reason: ``sft_teacher_error`` (timeout,
garbage, no solver), ``sft_truncated`` (finish_reason ``length``), ``sft_too_short``, ``sft_duplicate`` (same
normalised text as an earlier sample of the prompt), ``sft_incorrect``, then ``sft_over_k`` beyond
``keep_per_prompt`` correct samples. The GLM-4.5 length filter (``sft_bottom_length``) is applied afterwards,
across all prompts, from each prompt's mean kept response length (``length_cutoff``).
"""

from __future__ import annotations

from dataclasses import dataclass

from data_pipes.reasoning.teachers.base import GenResponse


@dataclass
class Judged:
    index: int
    response: GenResponse
    verdict: dict | None
    reason: str | None  # None: kept (so far)


def judge(samples: list[tuple[int, GenResponse, dict | None]], keep: int, min_chars: int) -> list[Judged]:
    seen: set[str] = set()
    kept = 0
    out = []
    for idx, resp, verdict in samples:
        norm = " ".join(resp.text.split())
        if resp.error is not None or resp.finish_reason == "error":
            reason = "sft_teacher_error"
        elif resp.finish_reason == "length":
            reason = "sft_truncated"
        elif len(resp.text.strip()) < min_chars:
            reason = "sft_too_short"
        elif norm in seen:
            reason = "sft_duplicate"
        elif not (verdict or {}).get("ok"):
            reason = "sft_incorrect"
        elif kept >= keep:
            reason = "sft_over_k"
        else:
            reason = None
            kept += 1
        if resp.error is None and resp.text:
            seen.add(norm)
        out.append(Judged(idx, resp, verdict, reason))
    return out


def mean_kept_length(judged: list[Judged]) -> float | None:
    lengths = [len(j.response.text) for j in judged if j.reason is None]
    return sum(lengths) / len(lengths) if lengths else None


def length_cutoff(prompt_lengths: list[tuple[float, str]], frac: float) -> tuple[float, str] | None:
    """The (mean length, problem id) below which a prompt is in the bottom ``frac`` (ties broken by id, so the
    cut is exact and independent of sharding). None when nothing is cut."""
    if frac <= 0 or not prompt_lengths:
        return None
    ranked = sorted(prompt_lengths)
    n_cut = int(len(ranked) * frac)
    return ranked[n_cut] if n_cut < len(ranked) else (float("inf"), "")


def in_bottom(length: float, pid: str, cutoff: tuple[float, str] | None) -> bool:
    return cutoff is not None and (length, pid) < tuple(cutoff)
