"""Training schedules as pure functions of the step or of tokens seen: learning rate (linear warm-up, cosine decay
from peak to floor), batch size in tokens (linear warm-up, GLM-4.5's 16M -> 64M scaled down by a factor) and any
piecewise-constant value (the balance-bias rate ``u`` and the MTP weight ``lambda`` of the report: 1e-3 then 0,
0.3 then 0.1). Pure functions of their inputs, so a resumed run gets the same values at the same step.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LRSchedule(BaseModel):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, cosine to ``floor`` at ``total_steps``, then flat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    peak: float = Field(default=2.5e-4, gt=0)
    floor: float = Field(default=2.5e-5, ge=0)
    warmup_steps: int = Field(default=0, ge=0)
    total_steps: int = Field(gt=0)

    @model_validator(mode="after")
    def _check(self) -> LRSchedule:
        if self.floor > self.peak:
            raise ValueError(f"lr floor {self.floor} is above the peak {self.peak}; lower the floor")
        if self.warmup_steps > self.total_steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} exceeds total_steps {self.total_steps}")
        return self


def lr_at(step: int, s: LRSchedule) -> float:
    """Learning rate for optimizer step ``step`` (0-based)."""
    if step < s.warmup_steps:
        return s.peak * (step + 1) / s.warmup_steps
    decay_steps = max(s.total_steps - s.warmup_steps, 1)
    progress = min((step - s.warmup_steps) / decay_steps, 1.0)
    return s.floor + 0.5 * (s.peak - s.floor) * (1 + math.cos(math.pi * progress))


def batch_tokens_at(tokens_seen: int, *, start: int, end: int, warmup_tokens: int, multiple: int = 1) -> int:
    """Global batch size in tokens after ``tokens_seen`` training tokens: linear from ``start`` to ``end`` over
    ``warmup_tokens``, rounded down to a multiple of ``multiple`` (e.g. seq_len * data-parallel ranks), never below
    one ``multiple``."""
    if warmup_tokens <= 0 or tokens_seen >= warmup_tokens:
        size = end
    else:
        size = start + (end - start) * tokens_seen / warmup_tokens
    return max(multiple, int(size) // multiple * multiple)


def piecewise(step: int, values: list[float], boundaries: list[int]) -> float:
    """``values[i]`` for ``boundaries[i-1] <= step < boundaries[i]`` (len(values) == len(boundaries) + 1)."""
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"piecewise schedule: {len(values)} values need {len(values) - 1} boundaries, got {boundaries}"
        )
    for value, bound in zip(values, boundaries, strict=False):
        if step < bound:
            return value
    return values[-1]
