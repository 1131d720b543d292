"""Dynamic sampling temperature (GLM-4.5 report §3.2): raise the rollout temperature when the reward plateaus,
but keep a higher temperature only if validation says the policy still samples well at it.

Rule, checked after every step with that step's mean reward:

1. **flat**: over the last ``window`` steps since the last decision, the mean reward of the second half differs
   from the mean of the first half by less than ``flat_tol`` (a plateau; a rising or falling reward is not flat);
2. **propose** ``min(max_temperature, T + step)``;
3. **guard**: ``validate(T)`` and ``validate(T_new)`` give the validation pass rate at each temperature (the
   caller samples the held-out problems with the current policy); the raise is **kept** only if the pass rate
   drops by at most ``max_drop`` (absolute: 0.01 is one percentage point), else it is **rejected** and T stays
   (also when ``validate`` returns None: without a validation set no raise is kept);
4. either way a new window starts (a plateau must last another ``window`` steps before the next proposal).

Every decision is an event with its reason and the validation figures (``events``: the kind writes them to its
reports); at ``max_temperature`` no more proposals are made (one ``at_max`` event says so).

Interface (no Prefect)::

    ctl = TemperatureController(TemperatureConfig(...), validate, start=1.0)   # validate(T) -> pass rate
    ctl.temperature                       # what the next step samples at
    ctl.observe(step, mean_reward)        # the event it caused (raise / reject / at_max) or None
    ctl.events                            # every decision, with reasons
    ctl.state_dict() / load_state_dict()  # resume
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Validate = Callable[[float], float | None]  # temperature -> validation pass rate (None: no set)


class TemperatureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window: int = Field(10, ge=2, description="steps of reward looked at before deciding")
    flat_tol: float = Field(0.01, ge=0, description="flat when the two half-window means differ by less")
    step: float = Field(0.1, gt=0, description="how much one raise adds")
    max_temperature: float = Field(1.5, gt=0, description="never raised above this")
    max_drop: float = Field(0.01, ge=0, le=1, description="largest accepted fall of the validation pass rate")


class TemperatureController:
    def __init__(
        self, config: TemperatureConfig | Mapping[str, Any] | None, validate: Validate, start: float
    ) -> None:
        if not isinstance(config, TemperatureConfig):
            config = TemperatureConfig(**dict(config or {}))
        if start > config.max_temperature:
            raise ValueError(
                f"the starting temperature {start} is above max_temperature {config.max_temperature}; "
                "raise max_temperature or lower the rollout temperature"
            )
        self.cfg, self.validate = config, validate
        self.temperature = float(start)
        self.rewards: list[float] = []  # since the last decision
        self.events: list[dict[str, Any]] = [
            {"step": 0, "event": "start", "temperature": self.temperature, "reason": "rollout temperature"}
        ]

    def flat(self) -> str | None:
        """Why the reward of the current window counts as flat, or None."""
        if len(self.rewards) < self.cfg.window:
            return None
        recent = self.rewards[-self.cfg.window :]
        half = len(recent) // 2
        first, second = sum(recent[:half]) / half, sum(recent[half:]) / (len(recent) - half)
        if abs(second - first) >= self.cfg.flat_tol:
            return None
        return (
            f"reward flat over {self.cfg.window} steps: half-window means {first:.4f} -> {second:.4f} "
            f"(|change| < flat_tol {self.cfg.flat_tol})"
        )

    def observe(self, step: int, mean_reward: float) -> dict[str, Any] | None:
        self.rewards.append(float(mean_reward))
        why = self.flat()
        if why is None:
            return None
        self.rewards = []
        old = self.temperature
        if old >= self.cfg.max_temperature:
            if self.events[-1]["event"] == "at_max":
                return None
            return self._log(
                step, "at_max", old, f"{why}; already at max_temperature {self.cfg.max_temperature}"
            )
        new = round(min(self.cfg.max_temperature, old + self.cfg.step), 6)
        base_rate, cand_rate = self.validate(old), self.validate(new)
        if base_rate is None or cand_rate is None:  # nothing to guard with: a raise is never kept unchecked
            reason = f"{why}; no validation pass rate (no validation problems), so {new:g} is not kept"
            return self._log(step, "reject", old, reason, candidate=new)
        base, cand = float(base_rate), float(cand_rate)
        figures = {"val_pass_rate": base, "val_pass_rate_candidate": cand}
        if cand >= base - self.cfg.max_drop:
            self.temperature = new
            reason = f"{why}; validation pass rate {base:.4f} at {old:g} -> {cand:.4f} at {new:g} (drop <= {self.cfg.max_drop})"
            return self._log(step, "raise", old, reason, new=new, **figures)
        reason = f"{why}; validation pass rate {base:.4f} at {old:g} -> {cand:.4f} at {new:g} drops more than {self.cfg.max_drop}: kept {old:g}"
        return self._log(step, "reject", old, reason, candidate=new, **figures)

    def _log(self, step: int, event: str, old: float, reason: str, **extra: Any) -> dict[str, Any]:
        entry = {
            "step": step,
            "event": event,
            "old": old,
            "temperature": self.temperature,
            "reason": reason,
            **extra,
        }
        self.events.append(entry)
        return entry

    def state_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "rewards": list(self.rewards), "events": list(self.events)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.temperature = float(state["temperature"])
        self.rewards = [float(r) for r in state["rewards"]]
        self.events = [dict(e) for e in state["events"]]
