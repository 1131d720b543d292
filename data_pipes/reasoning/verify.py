"""Checking a response against its problem: tests in the sandbox, reasoning-gym's own verifier, or
math-verify.

* ``tests`` set: the response's code block runs against them (``sandbox.run_code_tests``);
* a reasoning-gym problem: the generator's ``score_answer`` on the final answer (1.0 counts as correct);
* otherwise: ``math_verify.parse`` of the gold answer and of the final answer, then ``math_verify.verify``; a
  gold answer math-verify cannot parse falls back to a normalised string comparison.

math-verify bounds its work with ``signal.alarm``, which only works on the main thread; on a worker thread it
runs without that timeout and we bound the input instead (the final answer, at most ``MAX_ANSWER_CHARS``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from data_pipes.reasoning.answers import extract_code, final_answer
from data_pipes.reasoning.gym_problems import score_gym

MAX_ANSWER_CHARS = 1000
GYM_PASS = 1.0 - 1e-9


@dataclass(frozen=True)
class Verdict:
    ok: bool
    method: str  # sandbox | reasoning_gym | math_verify | exact
    detail: str


def _norm(text: str) -> str:
    return " ".join(text.strip().strip("$").strip(".").lower().split())


def verify_math(gold: str, answer: str) -> Verdict:
    from math_verify import parse, verify

    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold_parsed = parse(gold, parsing_timeout=timeout) if gold.strip() else []
    if not gold_parsed:
        return Verdict(_norm(gold) == _norm(answer), "exact", f"gold={gold[:80]!r} answer={answer[:80]!r}")
    pred = parse(answer, parsing_timeout=timeout)
    ok = bool(pred) and verify(gold_parsed, pred, timeout_seconds=timeout)
    return Verdict(
        ok or _norm(gold) == _norm(answer), "math_verify", f"gold={gold[:80]!r} answer={answer[:80]!r}"
    )


def verify_response(
    problem: dict[str, str], text: str, timeout_s: float = 10.0, memory_mb: int = 1024
) -> Verdict:
    """Whether ``text`` solves ``problem`` (a problem-table row). Never raises on bad responses."""
    if problem.get("tests", "").strip():
        from data_pipes.reasoning.sandbox import run_code_tests

        code = extract_code(text)
        if code is None:
            return Verdict(False, "sandbox", "no ```python block in the response")
        passed, detail = run_code_tests(
            code, problem["tests"], problem.get("entry_point", ""), timeout_s, memory_mb
        )
        return Verdict(passed, "sandbox", detail)
    answer = final_answer(text)
    if answer is None:
        return Verdict(False, "none", "no final answer after the trace")
    answer = answer[:MAX_ANSWER_CHARS]
    meta = json.loads(problem.get("meta") or "{}")
    if meta.get("generator") and isinstance(meta.get("entry"), dict):
        try:
            score = score_gym(meta["generator"], answer, meta["entry"], meta.get("config") or {})
        except Exception as exc:  # a verifier crash on odd input is a wrong answer, not a failed node
            return Verdict(False, "reasoning_gym", f"verifier error: {exc!r}"[:200])
        return Verdict(score >= GYM_PASS, "reasoning_gym", f"score={score:.3f} answer={answer[:80]!r}")
    try:
        return verify_math(problem.get("answer", ""), answer)
    except Exception as exc:
        return Verdict(False, "math_verify", f"verifier error: {exc!r}"[:200])
