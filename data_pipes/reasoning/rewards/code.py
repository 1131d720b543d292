"""``code``: the completion's Python block run against the problem's tests in the sandbox.

``sandbox.run_code_tests`` runs each program in a fresh bubblewrap sandbox (namespaces, rlimits, a wall
timeout); a timeout, a crash, a forbidden action (a sandbox escape attempt) or a failed assertion is reward 0
with the sandbox's reason in ``detail``, never an exception. ``score_batch`` runs ``workers`` sandboxes at once
(threads: each waits on its own subprocess).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from pydantic import BaseModel, ConfigDict, Field

from data_pipes.reasoning.answers import extract_code
from data_pipes.reasoning.rewards.base import Problem, Reward, RewardResult, register


class CodeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(10.0, gt=0, description="wall-clock limit per program")
    memory_mb: int = Field(1024, ge=64, description="address-space limit per program")
    workers: int = Field(2, ge=1, description="sandboxes run at once by score_batch")


@register
class CodeReward(Reward):
    name = "code"
    description = "the response's ```python block passes the problem's tests in the sandbox, 1 or 0"
    Options = CodeOptions
    options: CodeOptions

    def check(self, problem: Problem) -> str | None:
        return None if str(problem.get("tests") or "").strip() else "reward_code_no_tests"

    def score(self, problem: Problem, completion: str) -> RewardResult:
        from data_pipes.reasoning.sandbox import run_code_tests

        code = extract_code(completion)
        if code is None:
            return RewardResult(0.0, False, "no ```python block in the response")
        passed, detail = run_code_tests(
            code,
            str(problem.get("tests") or ""),
            str(problem.get("entry_point") or ""),
            self.options.timeout_s,
            self.options.memory_mb,
        )
        return RewardResult(float(passed), passed, detail)

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        if len(problems) <= 1 or self.options.workers == 1:
            return super().score_batch(problems, completions)
        with ThreadPoolExecutor(max_workers=self.options.workers) as pool:
            return list(pool.map(self.score, problems, completions))
