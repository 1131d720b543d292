"""Two-stage difficulty curriculum (GLM-4.5 report §3.2): moderate problems first, then the hard pool once the
stage-1 reward saturates. It keeps GRPO groups from being all-0 or all-1.

Pools, from per-problem pass counts measured with the current policy (``measure``)::

    rate = correct / k_small
    moderate     moderate_min <= rate <= moderate_max and rate > 0
    easy         rate > moderate_max                        (left out: groups would be all-1)
    hard         rate == 0 at k_small, > 0 at k_large       (pass@k_small = 0, pass@k_large > 0)
                 and 0 < rate < moderate_min                (only when moderate_min > 1 / k_small)
    unsolved     0 correct in k_large samples               (left out: groups would be all-0)

Only problems with no correct sample at ``k_small`` get the further ``k_large - k_small`` samples.

Saturation (the switch): after at least ``min_steps`` stage-1 steps, the mean step reward over the last
``window`` steps is at least ``threshold``, or (``min_gain`` set) it rose by less than ``min_gain`` over the
window before (a plateau). At the switch the problems that had no correct sample at ``k_small`` are measured
again with the now-trained policy (``remeasure_on_switch``): the hard pool is taken from that, and those it now
solves more often join the moderate or easy pool. An empty hard pool keeps stage 1 (the event says so) and the
test repeats after another full window.

Interface (it is a ``model.rl.collect.ProblemSampler``; no Prefect)::

    cur = Curriculum(problems, CurriculumConfig(...), measure, seed)
    # measure(indices, k) -> correct counts: k samples per problem with the current policy, scored
    cur.draw(n) -> list[int]            # problem indices; measures the pools on first use
    cur.observe(step, mean_reward)      # after each step; returns the events it caused (the switch)
    cur.state_dict() / load_state_dict(state)   # pools, order, rewards: resume without measuring again
    cur.report() -> dict                # stage, switch_step, pool sizes at start and at the switch, events
    cur.pass_rate_rows() -> list[dict]  # data_pipes.reasoning.pass_rates tables per pool

Draws are a seeded permutation of the active pool per epoch, so the same seed and measurements give the same
problem order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_pipes.reasoning import pass_rates

Measure = Callable[[list[int], int], list[int]]
POOLS = ("moderate", "hard", "easy", "unsolved")
_NOT_SHOWN = ("answered", "teacher_errors", "records")


class CurriculumError(ValueError):
    """The problems give no pool to train on; says how many fell where and what to change."""


class CurriculumConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    k_small: int = Field(8, ge=1, description="samples per problem for the moderate / hard split")
    k_large: int = Field(64, ge=2, description="samples for the hard pool test (pass@k_large > 0)")
    moderate_min: float = Field(
        0.05, ge=0, le=1, description="lowest per-sample pass rate of a moderate problem"
    )
    moderate_max: float = Field(
        0.6, ge=0, le=1, description="highest per-sample pass rate of a moderate problem"
    )
    window: int = Field(10, ge=1, description="steps over which the stage-1 reward is averaged")
    threshold: float = Field(0.8, description="saturated when the window's mean reward reaches this")
    min_gain: float | None = Field(
        None,
        ge=0,
        description="also saturated when the window mean rose by less than this over the window before",
    )
    min_steps: int | None = Field(
        None, ge=1, description="no switch before this many stage-1 steps (default window)"
    )
    remeasure_on_switch: bool = Field(
        True, description="re-measure the hard candidates with the current policy"
    )

    @model_validator(mode="after")
    def _check(self) -> CurriculumConfig:
        if self.k_large <= self.k_small:
            raise ValueError(f"k_large ({self.k_large}) must be larger than k_small ({self.k_small})")
        if self.moderate_min > self.moderate_max:
            raise ValueError(
                f"moderate_min ({self.moderate_min}) is above moderate_max ({self.moderate_max})"
            )
        return self


def split_pools(
    small: Mapping[int, int], large: Mapping[int, int], cfg: CurriculumConfig
) -> dict[str, list[int]]:
    """Pools of problem indices from correct counts: ``small[i]`` of ``k_small`` samples, and for the problems
    with none, ``large[i]`` more of ``k_large - k_small``. Sorted by index."""
    pools: dict[str, list[int]] = {p: [] for p in POOLS}
    for i in sorted(small):
        rate = small[i] / cfg.k_small
        if rate > 0:
            pool = "easy" if rate > cfg.moderate_max else "moderate" if rate >= cfg.moderate_min else "hard"
        else:
            pool = "hard" if large.get(i, 0) > 0 else "unsolved"
        pools[pool].append(i)
    return pools


class Curriculum:
    def __init__(
        self,
        problems: Sequence[Mapping[str, Any]],
        config: CurriculumConfig | Mapping[str, Any] | None,
        measure: Measure,
        seed: int = 0,
    ) -> None:
        if not isinstance(config, CurriculumConfig):
            config = CurriculumConfig(**dict(config or {}))
        self.problems, self.cfg, self.measure, self.seed = problems, config, measure, seed
        self.stage, self.epoch, self.cursor = 1, 0, 0
        self.pools: dict[str, list[int]] | None = None
        self.start_sizes: dict[str, int] = {}
        self.switch_sizes: dict[str, int] = {}
        # "start" / "switch": the pools of the problems measured then, correct counts at k_small ("small") and
        # in the further samples ("large")
        self.measured: dict[str, dict[str, Any]] = {}
        self.rewards: list[float] = []  # stage-1 step rewards
        self.switch_step: int | None = None
        self.events: list[dict[str, Any]] = []

    # ---- pools ----------------------------------------------------------------------------------------------
    def _measure(self, indices: list[int], when: str) -> dict[str, list[int]]:
        small = dict(zip(indices, self.measure(list(indices), self.cfg.k_small), strict=True))
        zeros = [i for i in indices if small[i] == 0]
        large = (
            dict(zip(zeros, self.measure(zeros, self.cfg.k_large - self.cfg.k_small), strict=True))
            if zeros
            else {}
        )
        pools = split_pools(small, large, self.cfg)
        self.measured[when] = {"pools": pools, "small": small, "large": large}
        return pools

    def _start(self) -> None:
        self.pools = self._measure(list(range(len(self.problems))), "start")
        self.start_sizes = {p: len(v) for p, v in self.pools.items()}
        if not self.pools["moderate"]:
            raise CurriculumError(
                f"curriculum: no moderate problem among {len(self.problems)} (per-sample pass rate in "
                f"[{self.cfg.moderate_min}, {self.cfg.moderate_max}] at k={self.cfg.k_small}): {self.start_sizes}; "
                "feed easier (or harder) problems, or widen moderate_min / moderate_max"
            )
        self.events.append({"step": 0, "event": "start", "stage": 1, "pools": dict(self.start_sizes)})

    @property
    def active(self) -> list[int]:
        assert self.pools is not None
        return self.pools["moderate" if self.stage == 1 else "hard"]

    def draw(self, n: int) -> list[int]:
        if self.pools is None:
            self._start()
        pool, out = self.active, []
        order = self._order(pool)
        while len(out) < n:
            if self.cursor >= len(pool):
                self.epoch, self.cursor = self.epoch + 1, 0
                order = self._order(pool)
            take = min(n - len(out), len(pool) - self.cursor)
            out += order[self.cursor : self.cursor + take]
            self.cursor += take
        return out

    def _order(self, pool: list[int]) -> list[int]:
        perm = np.random.default_rng([self.seed, self.stage, self.epoch]).permutation(len(pool))
        return [pool[int(i)] for i in perm]

    # ---- the switch -----------------------------------------------------------------------------------------
    def saturated(self) -> str | None:
        """Why the stage-1 reward counts as saturated now, or None."""
        c, r = self.cfg, self.rewards
        if len(r) < max(c.window, c.min_steps or c.window):
            return None
        last = float(np.mean(r[-c.window :]))
        if last >= c.threshold:
            return f"mean reward {last:.4f} over the last {c.window} steps >= threshold {c.threshold}"
        if c.min_gain is not None and len(r) >= 2 * c.window:
            before = float(np.mean(r[-2 * c.window : -c.window]))
            if last - before < c.min_gain:
                return (
                    f"mean reward rose {last - before:+.4f} (< min_gain {c.min_gain}) over {c.window} steps"
                )
        return None

    def observe(self, step: int, mean_reward: float) -> list[dict[str, Any]]:
        """Record the step's mean reward; switch to the hard pool when stage 1 saturates. Returns new events."""
        if self.stage != 1 or self.pools is None:
            return []
        self.rewards.append(float(mean_reward))
        why = self.saturated()
        if why is None:
            return []
        candidates = sorted(self.pools["hard"] + self.pools["unsolved"])
        moved: dict[str, int] = {}
        if self.cfg.remeasure_on_switch and candidates:
            fresh = self._measure(candidates, "switch")
            moved = {"moderate": len(fresh["moderate"]), "easy": len(fresh["easy"])}
            # candidates the trained policy now solves more often join the moderate and easy pools
            self.pools = {
                "moderate": sorted(self.pools["moderate"] + fresh["moderate"]),
                "easy": sorted(self.pools["easy"] + fresh["easy"]),
                "hard": fresh["hard"],
                "unsolved": fresh["unsolved"],
            }
        hard, unsolved = self.pools["hard"], self.pools["unsolved"]
        if not hard:
            event = {"step": step, "event": "no_hard_pool", "stage": 1, "reason": why, "pools": dict(self.sizes()),
                     "detail": "no problem has pass@k_small = 0 and pass@k_large > 0; stage 1 continues"}  # fmt: skip
            self.events.append(event)
            self.rewards.clear()  # look again after another full window
            return [event]
        self.switch_sizes = {
            "hard": len(hard),
            "unsolved": len(unsolved),
            **{f"now_{k}": v for k, v in moved.items()},
        }
        self.stage, self.epoch, self.cursor, self.switch_step = 2, 0, 0, step
        event = {"step": step, "event": "switch", "stage": 2, "reason": why, "pools": dict(self.switch_sizes)}
        self.events.append(event)
        return [event]

    def sizes(self) -> dict[str, int]:
        return {p: len(v) for p, v in (self.pools or {}).items()}

    # ---- resume and reports ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage, "epoch": self.epoch, "cursor": self.cursor, "pools": self.pools,
            "start_sizes": self.start_sizes, "switch_sizes": self.switch_sizes, "rewards": list(self.rewards),
            "switch_step": self.switch_step, "events": list(self.events),
            "measured": {
                when: {"pools": m["pools"], **{k: {str(i): c for i, c in m[k].items()} for k in ("small", "large")}}
                for when, m in self.measured.items()
            },
        }  # fmt: skip

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stage, self.epoch, self.cursor = int(state["stage"]), int(state["epoch"]), int(state["cursor"])
        self.pools = {k: [int(i) for i in v] for k, v in state["pools"].items()} if state["pools"] else None
        self.start_sizes, self.switch_sizes = dict(state["start_sizes"]), dict(state["switch_sizes"])
        self.rewards = [float(r) for r in state["rewards"]]
        self.switch_step = state["switch_step"]
        self.events = [dict(e) for e in state["events"]]
        self.measured = {
            when: {
                "pools": {k: [int(i) for i in v] for k, v in m["pools"].items()},
                **{k: {int(i): int(c) for i, c in m[k].items()} for k in ("small", "large")},
            }
            for when, m in state.get("measured", {}).items()
        }

    def report(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "switch_step": self.switch_step,
            "k_small": self.cfg.k_small,
            "k_large": self.cfg.k_large,
            "pools_at_start": dict(self.start_sizes),
            "pools_at_switch": dict(self.switch_sizes),
            "events": list(self.events),
        }

    def pass_rate_rows(self) -> list[dict[str, Any]]:
        """Each measurement (``measured``: ``start``, and ``switch``: the last re-measure of the hard candidates) as
        ``pass_rates.table`` rows, the pool in the ``difficulty`` column; samples are k_small, or k_large for
        the problems that got the further samples."""
        rows = []
        for when, m in self.measured.items():
            small, large = m["small"], m["large"]
            stats: dict[str, dict[str, int]] = {}
            for pool, indices in m["pools"].items():
                for i in indices:
                    p = self.problems[i]
                    correct = small[i] + large.get(i, 0)
                    samples = self.cfg.k_large if i in large else self.cfg.k_small
                    pass_rates.add(stats, str(p.get("source") or ""), str(p.get("domain") or ""), pool,
                                   problems=1, samples=samples, correct=correct, solved=int(correct > 0))  # fmt: skip
            for row in pass_rates.table(stats):  # the generation-only columns say nothing here
                rows.append({"measured": when, **{k: v for k, v in row.items() if k not in _NOT_SHOWN}})
        return rows
