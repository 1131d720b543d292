"""The reward registry: one class per reward, registered by name (docs: each module's docstring).

Rewards (``reward_names()``): ``math`` (math-verify), ``reasoning_gym`` (the generator's own scorer), ``code``
(tests in the sandbox), ``function_call`` (step-wise exact match of GLM XML tool calls), ``multiple_choice``,
``instruction`` (deterministic checks), ``judge`` (an LLM judge over HTTP), and the penalties
``language_mixing``, ``repetition`` and ``format``.

Interface (importable without Prefect)::

    from data_pipes.reasoning.rewards import RewardsConfig, Scorer
    scorer = Scorer(RewardsConfig(weights={"format": 0.5}, options={"code": {"timeout_s": 5}}))
    scorer.check(problem) -> str | None                      # quarantine reason, or None
    scorer.score_batch(problems, completions) -> list[RewardResult(value, passed, detail, error, components)]
    scorer.stats() -> list[dict]                             # per reward: scored, passed, errors, mean value

A single reward: ``reward_class("math")().score(problem, completion)``. ``problem`` is a problem-table row
(a mapping; ``meta`` as JSON text or a dict).
"""

from data_pipes.reasoning.rewards import (  # noqa: F401 - each module registers its reward
    choice,
    code,
    function_call,
    gym,
    instruction,
    judge,
    math_answer,
    penalties,
)
from data_pipes.reasoning.rewards.base import (
    REWARDS,
    Problem,
    Reward,
    RewardResult,
    UnknownRewardError,
    problem_meta,
    register,
    reward_class,
    reward_names,
)
from data_pipes.reasoning.rewards.config import RewardsConfig
from data_pipes.reasoning.rewards.scorer import Scorer

__all__ = [
    "REWARDS",
    "Problem",
    "Reward",
    "RewardResult",
    "RewardsConfig",
    "Scorer",
    "UnknownRewardError",
    "problem_meta",
    "register",
    "reward_class",
    "reward_names",
]
