"""`ProceduralTeacher`: worked solutions computed from a reasoning-gym entry, so the default pipeline runs
offline with no model. It writes a ``<think>`` trace of the steps and a final ``Answer:`` line. Generators
without a solver get an error response (``teacher_no_solver``), counted like any other teacher failure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from data_pipes.reasoning.teachers import solve_misc
from data_pipes.reasoning.teachers.base import GenRequest, GenResponse, OnResult, generate_each
from data_pipes.reasoning.teachers.solve_arith import fmt, solve_expression, solve_linear

Solver = Callable[[dict[str, Any]], tuple[list[str], str]]


def _expression(entry: dict[str, Any]) -> tuple[list[str], str]:
    steps, value = solve_expression(entry["metadata"]["expression"])
    return steps, fmt(value)


def _equation(entry: dict[str, Any]) -> tuple[list[str], str]:
    meta = entry["metadata"]
    steps, value = solve_linear(meta["equation"], meta["variable"])
    return steps, fmt(value)


SOLVERS: dict[str, Solver] = {
    "basic_arithmetic": _expression,
    "chain_sum": _expression,
    "simple_equations": _equation,
    "gcd": solve_misc.solve_gcd,
    "lcm": solve_misc.solve_lcm,
    "count_bits": solve_misc.solve_count_bits,
    "prime_factorization": solve_misc.solve_prime_factorization,
    "leg_counting": solve_misc.solve_leg_counting,
    "spell_backward": solve_misc.solve_spell_backward,
    "letter_counting": solve_misc.solve_letter_counting,
}


def solve(problem: dict[str, str]) -> tuple[list[str], str]:
    """Steps and answer for a problem row; KeyError when no solver covers its generator."""
    meta = json.loads(problem.get("meta") or "{}")
    name = meta.get("generator")
    if name not in SOLVERS:
        raise KeyError(
            f"teacher_no_solver: no procedural solver for {name or problem.get('source')!r}; "
            f"solvers: {', '.join(sorted(SOLVERS))}"
        )
    return SOLVERS[name](meta["entry"])


def _answer(req: GenRequest) -> GenResponse:
    steps, answer = solve(req.problem)
    text = "<think>\n" + "\n".join(steps) + "\n</think>\n\nAnswer: " + answer
    return GenResponse(req.key, text, "stop", {"completion_chars": len(text)}, None, 1)


def _solver_error(req: GenRequest, exc: Exception) -> GenResponse:
    """Unsupported generators and malformed entries are counted, not raised."""
    error = str(exc).strip("'\"") if isinstance(exc, KeyError) else f"teacher_solver_error: {exc!r}"
    return GenResponse(req.key, "", "error", {}, error, 1)


class ProceduralTeacher:
    name = "procedural"

    def generate(
        self, requests: Sequence[GenRequest], on_result: OnResult | None = None
    ) -> list[GenResponse]:
        return generate_each(requests, _answer, _solver_error, on_result)

    def close(self) -> None:
        pass
