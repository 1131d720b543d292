"""``math``: the final answer against the gold answer with math-verify (``verify.verify_math``).

The final answer is the last ``Answer:`` line after the ``</think>``, else the last ``\\boxed{}``, else the
last line (``answers.final_answer``). A gold answer math-verify cannot parse falls back to a normalised string
comparison (as SFT verification does, so RL and SFT agree on what is correct).
"""

from __future__ import annotations

from data_pipes.reasoning.answers import final_answer
from data_pipes.reasoning.rewards.base import Problem, Reward, RewardResult, register
from data_pipes.reasoning.verify import MAX_ANSWER_CHARS, verify_math


@register
class MathReward(Reward):
    name = "math"
    description = "final answer equals the gold answer (math-verify), 1 or 0"

    def check(self, problem: Problem) -> str | None:
        return None if str(problem.get("answer") or "").strip() else "reward_math_no_answer"

    def score(self, problem: Problem, completion: str) -> RewardResult:
        answer = final_answer(completion)
        if answer is None:
            return RewardResult(0.0, False, "no final answer after the trace")
        verdict = verify_math(str(problem.get("answer") or ""), answer[:MAX_ANSWER_CHARS])
        return RewardResult(float(verdict.ok), verdict.ok, f"{verdict.method}: {verdict.detail}")
