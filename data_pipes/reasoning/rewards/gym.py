"""``reasoning_gym``: the generator's own ``score_answer`` on the final answer.

The problem row's ``meta`` carries the generator name, its config and the whole entry (``gym_problems``), which
is all the scorer needs. ``value`` is reasoning-gym's score (some generators give partial credit in [0, 1]);
``passed`` means a full score.
"""

from __future__ import annotations

from data_pipes.reasoning.answers import final_answer
from data_pipes.reasoning.gym_problems import score_gym
from data_pipes.reasoning.rewards.base import Problem, Reward, RewardResult, problem_meta, register
from data_pipes.reasoning.verify import GYM_PASS, MAX_ANSWER_CHARS


@register
class GymReward(Reward):
    name = "reasoning_gym"
    description = "reasoning-gym's score_answer for the problem's generator (partial credit kept)"

    def check(self, problem: Problem) -> str | None:
        meta = problem_meta(problem)
        if not meta.get("generator") or not isinstance(meta.get("entry"), dict):
            return "reward_reasoning_gym_no_entry"
        return None

    def score(self, problem: Problem, completion: str) -> RewardResult:
        meta = problem_meta(problem)
        answer = final_answer(completion)
        if answer is None:
            return RewardResult(0.0, False, "no final answer after the trace")
        answer = answer[:MAX_ANSWER_CHARS]
        score = score_gym(meta["generator"], answer, meta["entry"], meta.get("config") or {})
        score = min(1.0, max(0.0, score))
        return RewardResult(score, score >= GYM_PASS, f"score={score:.3f} answer={answer[:80]!r}")
