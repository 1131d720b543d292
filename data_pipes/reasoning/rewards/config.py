"""Which reward scores a problem, and the typed ``rewards:`` section a stage's params embed.

A problem row says which reward applies: its ``reward`` column when the table has one, else ``meta.reward``;
else the stage's ``by_source`` (the longest prefix of the row's ``source``); else the default of its task
source (``DEFAULT_BY_SOURCE``); else the first rule of ``CONTENT_RULES`` its fields satisfy (tests, or domain ``code``: ``code``;
a reasoning-gym entry: ``reasoning_gym``; gold tool calls: ``function_call``; choices: ``multiple_choice``;
instruction checks: ``instruction``; anything else: ``math``). ``RewardsConfig.reward`` forces one reward for
every row.

Weights: the row's task reward counts ``task_weight`` times, and each entry of ``weights`` adds that reward
times its weight (penalties are in [-1, 0], so ``{"format": 0.5, "repetition": 0.5}`` subtracts up to 1).
``options`` holds each reward's settings, validated against its ``Options`` model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from data_pipes.reasoning.rewards.base import (
    Problem,
    UnknownRewardError,
    problem_meta,
    reward_class,
    reward_names,
)

DEFAULT_BY_SOURCE: dict[str, str] = {
    "reasoning_gym:": "reasoning_gym",
    "human_eval": "code",
}


def _has_tests(p: Problem) -> bool:
    return bool(str(p.get("tests") or "").strip()) or p.get("domain") == "code"


def _has_gym_entry(p: Problem) -> bool:
    meta = problem_meta(p)
    return bool(meta.get("generator")) and isinstance(meta.get("entry"), dict)


CONTENT_RULES: tuple[tuple[str, Callable[[Problem], bool]], ...] = (
    ("code", _has_tests),
    ("reasoning_gym", _has_gym_entry),
    ("function_call", lambda p: "tool_calls" in problem_meta(p) or p.get("domain") == "function_call"),
    ("multiple_choice", lambda p: "choices" in problem_meta(p) or p.get("domain") == "multiple_choice"),
    ("instruction", lambda p: "instructions" in problem_meta(p)),
    ("math", lambda p: True),
)


class RewardsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reward: str | None = Field(None, description="one reward for every problem (default: chosen per row)")
    by_source: dict[str, str] = Field(
        default_factory=dict, description="source prefix -> reward, before the built-in defaults"
    )
    task_weight: float = Field(1.0, description="weight of the row's own reward")
    weights: dict[str, float] = Field(
        default_factory=dict, description="extra rewards added with a weight, e.g. {format: 0.5}"
    )
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-reward settings, e.g. {code: {timeout_s: 5}}"
    )

    @field_validator("reward")
    @classmethod
    def _known_reward(cls, name: str | None) -> str | None:
        if name is not None:
            _check_name(name)
        return name

    @field_validator("by_source")
    @classmethod
    def _known_source_rewards(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value.values():
            _check_name(name)
        return value

    @field_validator("weights", "options")
    @classmethod
    def _known_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            _check_name(name)
        return value

    @model_validator(mode="after")
    def _options_valid(self) -> RewardsConfig:
        used = {
            *self.options,
            *self.weights,
            *self.by_source.values(),
            *([self.reward] if self.reward else []),
        }
        for name in sorted(used):
            try:
                reward_class(name).Options(**self.options.get(name, {}))
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
                )
                raise ValueError(f"options.{name}: {problems}") from None
        return self

    def reward_name(self, problem: Problem) -> str:
        """The name of the reward that scores ``problem`` (see the module docstring for the order)."""
        if self.reward:
            return self.reward
        named = str(problem.get("reward") or "").strip() or str(problem_meta(problem).get("reward") or "")
        if named:
            return named
        source = str(problem.get("source") or "")
        table = {**DEFAULT_BY_SOURCE, **self.by_source}
        for prefix in sorted(table, key=len, reverse=True):
            if source.startswith(prefix):
                return table[prefix]
        return next(name for name, rule in CONTENT_RULES if rule(problem))


def known_rewards() -> list[str]:
    return reward_names()


def _check_name(name: str) -> None:
    """A ValueError (what pydantic reports with its path) naming the registered rewards."""
    try:
        reward_class(name)
    except UnknownRewardError as exc:
        raise ValueError(str(exc)) from None
