"""`Scorer`: the one object an RL stage holds to score completions: it picks each row's reward, adds the
weighted extras, batches per reward, and turns a reward that raises into that reward's counted error (value 0)
instead of a failed stage. A weighted reward a row cannot be scored by (``code`` on a row without tests: its
``check`` gives a reason) is not run on that row: the row's ``components`` leave it out, its note says "not
applicable (<reason>)", and ``not_applicable`` counts it per reward with the last reason.

    scorer = Scorer(RewardsConfig(weights={"format": 0.5}))
    reason = scorer.check(problem)            # None, or why the row cannot be scored (quarantine it)
    results = scorer.score_batch(problems, completions)   # one RewardResult per completion
    scorer.stats()                            # per reward: scored, passed, errors, mean value (for reports)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from data_pipes.reasoning.rewards.base import (
    Problem,
    Reward,
    RewardResult,
    UnknownRewardError,
    reward_class,
)
from data_pipes.reasoning.rewards.config import RewardsConfig


class Scorer:
    def __init__(self, config: RewardsConfig | Mapping[str, Any] | None = None) -> None:
        if not isinstance(config, RewardsConfig):
            config = RewardsConfig(**dict(config or {}))
        self.config = config
        self._rewards: dict[str, Reward] = {}
        self.scored: Counter[str] = Counter()
        self.passed: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.value_sum: Counter[str] = Counter()
        self.last_errors: dict[str, str] = {}
        self.not_applicable: Counter[str] = Counter()
        self.not_applicable_reasons: dict[str, str] = {}

    def reward(self, name: str) -> Reward:
        if name not in self._rewards:
            self._rewards[name] = reward_class(name)(self.config.options.get(name))
        return self._rewards[name]

    def reward_name(self, problem: Problem) -> str:
        return self.config.reward_name(problem)

    def check(self, problem: Problem) -> str | None:
        """Why ``problem`` cannot be scored (``reward_unknown``, ``reward_<name>_...``), or None."""
        try:
            return self.reward(self.reward_name(problem)).check(problem)
        except UnknownRewardError:
            return "reward_unknown"

    def weighted_check(self, name: str, problem: Problem) -> str | None:
        """Why weighted reward ``name`` does not apply to ``problem`` (its ``check`` reason), or None."""
        try:
            return self.reward(name).check(problem)
        except Exception:  # noqa: BLE001 - bad options: scoring reports it as that reward's error
            return None

    def score(self, problem: Problem, completion: str) -> RewardResult:
        return self.score_batch([problem], [completion])[0]

    def score_batch(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[RewardResult]:
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} completions")
        task_names = [self.reward_name(p) for p in problems]
        task = self._by_reward(task_names, problems, completions)
        extras: dict[str, list[RewardResult | str]] = {}
        for name in self.config.weights:
            reasons = [self.weighted_check(name, p) for p in problems]
            rows = [i for i, r in enumerate(reasons) if r is None]
            scored = self._by_reward(
                [name] * len(rows), [problems[i] for i in rows], [completions[i] for i in rows]
            )
            merged: list[RewardResult | str] = [r or "" for r in reasons]
            for i, res in zip(rows, scored, strict=True):
                merged[i] = res
            for r in reasons:
                if r is not None:
                    self.not_applicable[name] += 1
                    self.not_applicable_reasons[name] = r
            extras[name] = merged
        out = []
        for i, name in enumerate(task_names):
            base = task[i]
            value = self.config.task_weight * base.value
            components = {name: base.value}
            notes, errors = [base.detail], [f"{name}: {base.error}"] if base.error else []
            for extra, results in extras.items():
                r = results[i]
                if isinstance(r, str):  # the row lacks what this reward reads: no component, a reason
                    notes.append(f"{extra}: not applicable ({r})")
                    continue
                value += self.config.weights[extra] * r.value
                components[extra] = r.value
                if not r.passed:
                    notes.append(f"{extra}: {r.detail}")
                if r.error:
                    errors.append(f"{extra}: {r.error}")
            out.append(
                RewardResult(
                    value, base.passed, " | ".join(notes)[:500], "; ".join(errors) or None, components
                )
            )
        return out

    def _by_reward(
        self, names: Sequence[str], problems: Sequence[Problem], completions: Sequence[str]
    ) -> list[RewardResult]:
        """Each row scored by its named reward, one batch per reward, errors isolated to their rows."""
        groups: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(names):
            groups[name].append(i)
        out: list[RewardResult | None] = [None] * len(names)
        for name, rows in groups.items():
            results = self._safe_batch(name, [problems[i] for i in rows], [completions[i] for i in rows])
            for i, r in zip(rows, results, strict=True):
                out[i] = r
                self.scored[name] += 1
                self.passed[name] += int(r.passed)
                self.value_sum[name] += r.value
                if r.error:
                    self.errors[name] += 1
                    self.last_errors[name] = r.error
        return [r for r in out if r is not None]

    def _safe_batch(self, name: str, problems: list[Problem], completions: list[str]) -> list[RewardResult]:
        try:
            reward = self.reward(name)
        except Exception as exc:  # an unknown name in a row, or bad options: every row of it is an error
            return [_error(exc)] * len(problems)
        try:
            return reward.score_batch(problems, completions)
        except Exception:  # noqa: BLE001 - find the rows that raise, score the others
            out = []
            for p, c in zip(problems, completions, strict=True):
                try:
                    out.append(reward.score(p, c))
                except Exception as exc:  # noqa: BLE001 - a raising reward is that reward's error, value 0
                    out.append(_error(exc))
            return out

    def stats(self) -> list[dict[str, Any]]:
        """One row per reward used: scored, passed, errors (rewards that raised), mean value, last error."""
        return [
            {
                "reward": name,
                "scored": self.scored[name],
                "passed": self.passed[name],
                "errors": self.errors[name],
                "mean_value": round(self.value_sum[name] / self.scored[name], 6)
                if self.scored[name]
                else None,
                "last_error": self.last_errors.get(name, ""),
                "not_applicable": self.not_applicable[name],
                "not_applicable_reason": self.not_applicable_reasons.get(name, ""),
            }
            for name in sorted(set(self.scored) | set(self.not_applicable))
        ]

    def close(self) -> None:
        for reward in self._rewards.values():
            reward.close()


def _error(exc: Exception) -> RewardResult:
    return RewardResult(0.0, False, "reward error", error=f"{type(exc).__name__}: {exc}"[:300])
