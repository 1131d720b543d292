"""The reward protocol and its one registry: a class per reward, registered by name.

A reward reads a problem row (the ``problems`` table, docs/REASONING.md) and one completion and returns a
:class:`RewardResult`::

    value   float   what the policy is trained on (1/0 for most; a share of checks, a judge's score, or a
                    penalty in [-1, 0])
    passed  bool    whether the completion counts as correct (pass rates, the curriculum, validation)
    detail  str     one line saying why (the parsed answer, the sandbox status, the failing check)
    error   str     set when scoring itself failed (a verifier or judge that raised): value 0, not passed

``Reward.check(problem)`` says why a problem cannot be scored by this reward (``reward_<name>_...``: the kind
quarantines it before any rollout), or None. ``score_batch`` scores many at once; the default loops over
``score``, the sandbox and the judge override it to run in parallel.

New rewards subclass :class:`Reward`, set ``name`` (and ``Options``, a pydantic model of their settings) and
are decorated with :func:`register`; nothing else changes (no if/elif dispatch anywhere).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

Problem = Mapping[str, Any]


@dataclass(frozen=True)
class RewardResult:
    value: float
    passed: bool
    detail: str = ""
    error: str | None = None
    components: Mapping[str, float] = field(default_factory=dict)  # per reward, when several are weighted


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reward:
    """Base class: subclasses implement ``score`` (and ``check`` when a problem needs a field)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, options: BaseModel | Mapping[str, Any] | None = None) -> None:
        if options is None or isinstance(options, Mapping):
            options = self.Options(**dict(options or {}))
        self.options = options

    def check(self, problem: Problem) -> str | None:
        """Why ``problem`` cannot be scored by this reward (a quarantine reason), or None."""
        return None

    def score(self, problem: Problem, completion: str) -> RewardResult:
        raise NotImplementedError

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        return [self.score(p, c) for p, c in zip(problems, completions, strict=True)]

    def close(self) -> None:
        """Release what the reward holds (thread pools, HTTP clients)."""


REWARDS: dict[str, type[Reward]] = {}


def register(cls: type[Reward]) -> type[Reward]:
    if cls.name in REWARDS and REWARDS[cls.name] is not cls:
        raise ValueError(f"reward {cls.name!r} registered twice ({REWARDS[cls.name]} and {cls})")
    REWARDS[cls.name] = cls
    return cls


class UnknownRewardError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def reward_class(name: str) -> type[Reward]:
    """The registered class of ``name``; an unknown name lists the valid ones."""
    _load_builtin()
    if name not in REWARDS:
        close = difflib.get_close_matches(name, REWARDS, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UnknownRewardError(f"unknown reward {name!r}; {hint}registered: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]


def reward_names() -> list[str]:
    _load_builtin()
    return sorted(REWARDS)


def problem_meta(problem: Problem) -> dict[str, Any]:
    """The row's ``meta`` as a dict (it is stored as JSON text); {} when absent or not an object."""
    meta = problem.get("meta")
    if isinstance(meta, Mapping):
        return dict(meta)
    try:
        data = json.loads(meta or "{}")
    except (TypeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_builtin() -> None:
    # importing the package registers the built-in rewards (each module decorates its class)
    import data_pipes.reasoning.rewards  # noqa: F401
