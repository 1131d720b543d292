"""Dynamic temperature: a raise accepted by the validation guard, one rejected, no proposal while the reward
moves, the cap, every decision logged with its reason, and resume from state.

``fake_validation`` stands in for the policy's validation pass (sampling the held-out problems at a
temperature and scoring them): a fixed pass rate per temperature, recorded per call."""

from __future__ import annotations

import json

import pytest

from model.rl.temperature import TemperatureConfig, TemperatureController

PASS_RATE = {1.0: 0.50, 1.1: 0.495, 1.2: 0.45, 1.3: 0.44}  # 1.0 -> 1.1 drops 0.005; 1.1 -> 1.2 drops 0.045


def fake_validation(calls: list[float]):
    def validate(temperature: float) -> float:
        calls.append(temperature)
        return PASS_RATE[round(temperature, 3)]

    return validate


CFG = TemperatureConfig(window=4, flat_tol=0.02, step=0.1, max_temperature=1.3, max_drop=0.01)


def test_flat_reward_raise_kept_then_rejected_with_reasons() -> None:
    calls: list[float] = []
    ctl = TemperatureController(CFG, fake_validation(calls), start=1.0)
    rising = [0.1, 0.2, 0.3, 0.4]  # half-window means 0.15 -> 0.35: not flat
    assert [ctl.observe(s, r) for s, r in enumerate(rising, 1)] == [None] * 4 and calls == []
    # step 6: window 0.3 0.4 | 0.41 0.40 (0.35 -> 0.405) is not flat; step 7: 0.4 0.41 | 0.40 0.41 is
    flat = [0.41, 0.40, 0.41]
    events = [e for s, r in enumerate(flat, 5) if (e := ctl.observe(s, r))]
    (raised,) = events
    assert raised["event"] == "raise" and raised["step"] == 7 and ctl.temperature == 1.1
    assert calls == [1.0, 1.1]
    assert (
        "reward flat over 4 steps" in raised["reason"] and "0.5000 at 1 -> 0.4950 at 1.1" in raised["reason"]
    )
    assert (raised["val_pass_rate"], raised["val_pass_rate_candidate"]) == (0.50, 0.495)
    # a new window starts after the decision: three more flat steps are not enough, the fourth is
    more = [ctl.observe(s, 0.41) for s in range(8, 12)]
    assert more[:3] == [None] * 3
    rejected = more[3]
    assert rejected["event"] == "reject" and rejected["candidate"] == 1.2 and ctl.temperature == 1.1
    assert "drops more than 0.01: kept 1.1" in rejected["reason"] and calls[-2:] == [1.1, 1.2]
    assert [e["event"] for e in ctl.events] == ["start", "raise", "reject"]
    assert all(e["reason"] for e in ctl.events)


def test_cap_at_max_temperature_and_resume() -> None:
    calls: list[float] = []
    lenient = CFG.model_copy(update={"max_drop": 0.1})
    ctl = TemperatureController(lenient, fake_validation(calls), start=1.2)
    for s in range(1, 5):
        ctl.observe(s, 0.5)
    assert ctl.temperature == 1.3 and ctl.events[-1]["event"] == "raise"
    state = json.loads(json.dumps(ctl.state_dict()))
    for s in range(5, 13):
        ctl.observe(s, 0.5)
    assert [e["event"] for e in ctl.events] == ["start", "raise", "at_max"]  # one at_max, no more proposals
    assert len(calls) == 2

    resumed = TemperatureController(lenient, fake_validation([]), start=1.2)
    resumed.load_state_dict(state)
    for s in range(5, 13):
        resumed.observe(s, 0.5)
    assert resumed.events == ctl.events and resumed.temperature == 1.3
    blind = TemperatureController(CFG, lambda t: None, start=1.0)
    events = [e for s in range(1, 5) if (e := blind.observe(s, 0.5))]
    assert [e["event"] for e in events] == ["reject"] and "no validation pass rate" in events[0]["reason"]
    assert blind.temperature == 1.0
    with pytest.raises(ValueError, match="above max_temperature"):
        TemperatureController(CFG, fake_validation([]), start=2.0)
