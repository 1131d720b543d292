"""The two-stage curriculum on synthetic pass counts: pool split, seeded draws, the switch on a scripted reward
stream (threshold and plateau), no hard pool, resume from state, and the reports.

``FakePolicy`` stands in for the policy: it answers ``measure(indices, k)`` from a table of per-problem success
shares (correct = round(share * k)), and ``trained`` swaps in the shares of a policy after stage 1."""

from __future__ import annotations

import json

import pytest

from model.rl.curriculum import Curriculum, CurriculumConfig, CurriculumError, split_pools

# index: share of correct samples (k_small = 4, k_large = 16)
SHARES = {0: 0.5, 1: 0.25, 2: 0.75, 3: 1.0, 4: 0.0625, 5: 0.125, 6: 0.0, 7: 0.0, 8: 0.5, 9: 0.25}
# 0, 1, 8, 9: moderate (rate in [0.25, 0.5]); 2, 3: easy; 4, 5: 0 of 4 but > 0 of 16 more: hard; 6, 7: unsolved
AFTER = {**SHARES, 4: 0.5, 6: 0.125}  # after stage 1: 4 became moderate, 6 became hard


class FakePolicy:
    def __init__(self) -> None:
        self.calls: list[tuple[list[int], int]] = []
        self.trained = False

    def __call__(self, indices: list[int], k: int) -> list[int]:
        self.calls.append((list(indices), k))
        shares = AFTER if self.trained else SHARES
        return [round(shares[i] * k) for i in indices]


def _problems() -> list[dict]:
    return [
        {"id": f"p{i}", "source": "reasoning_gym:basic_arithmetic", "domain": "arithmetic"} for i in SHARES
    ]


CFG = CurriculumConfig(k_small=4, k_large=16, moderate_min=0.25, moderate_max=0.5, window=3, threshold=0.7)


def test_split_pools_from_counts() -> None:
    pools = split_pools({0: 2, 1: 1, 2: 3, 3: 0, 4: 0}, {3: 1, 4: 0}, CFG)
    assert pools == {"moderate": [0, 1], "hard": [3], "easy": [2], "unsolved": [4]}
    with pytest.raises(ValueError, match="k_large .* must be larger"):
        CurriculumConfig(k_small=8, k_large=8)


def test_stage_one_draws_moderate_problems_deterministically() -> None:
    policy = FakePolicy()
    cur = Curriculum(_problems(), CFG, policy, seed=7)
    first = cur.draw(6)
    # measured once: k_small for all, then the 12 extra samples only for the problems with none correct
    assert policy.calls == [(list(range(10)), 4), ([4, 5, 6, 7], 12)]
    assert set(first) <= {0, 1, 8, 9} and sorted(first[:4]) == [0, 1, 8, 9]  # an epoch covers the pool
    assert cur.report()["pools_at_start"] == {"moderate": 4, "hard": 2, "easy": 2, "unsolved": 2}
    again = Curriculum(_problems(), CFG, FakePolicy(), seed=7)
    assert again.draw(6) == first
    other = [Curriculum(_problems(), CFG, FakePolicy(), seed=s).draw(8) for s in range(1, 6)]
    assert any(o != first + cur.draw(2) for o in other)


def test_switch_when_stage_one_reward_saturates() -> None:
    policy = FakePolicy()
    cur = Curriculum(_problems(), CFG, policy, seed=0)
    cur.draw(4)
    stream = [0.2, 0.4, 0.6, 0.8, 0.9, 0.9]  # window means: 0.4, 0.6, 0.767 (step 5) -> switch at step 5
    events = []
    for step, reward in enumerate(stream, start=1):
        if step == 5:
            policy.trained = True  # the policy that stage 1 trained
        events += cur.observe(step, reward)
        if events:
            break
    assert cur.switch_step == 5 and cur.stage == 2
    assert events[0]["event"] == "switch" and "0.7667" in events[0]["reason"]
    # re-measured: only the stage-1 hard and unsolved candidates (4, 5, 6, 7) with the trained policy
    assert policy.calls[-2:] == [([4, 5, 6, 7], 4), ([5, 6, 7], 12)]
    assert cur.pools["hard"] == [5, 6] and cur.pools["unsolved"] == [7]
    assert cur.pools["moderate"] == [0, 1, 4, 8, 9]  # problem 4 is now moderate
    assert set(cur.draw(10)) == {5, 6}
    report = cur.report()
    assert report["switch_step"] == 5 and report["pools_at_switch"] == {
        "hard": 2, "unsolved": 1, "now_moderate": 1, "now_easy": 0}  # fmt: skip
    assert [e["event"] for e in report["events"]] == ["start", "switch"]
    assert cur.observe(7, 0.1) == []  # stage 2 has no further switch


def test_plateau_switch_and_no_hard_pool() -> None:
    plateau = CFG.model_copy(update={"threshold": 2.0, "min_gain": 0.05})
    cur = Curriculum(_problems(), plateau, FakePolicy(), seed=0)
    cur.draw(1)
    # gains of the last window over the one before: +0.10 (step 6), +0.08, +0.053, then +0.02 at step 9
    stream = [0.30, 0.32, 0.34, 0.40, 0.42, 0.44, 0.44, 0.44]
    assert [cur.observe(s, r) for s, r in enumerate(stream, 1)] == [[]] * 8
    (event,) = cur.observe(9, 0.44)
    assert (
        event["event"] == "switch" and "+0.0200 (< min_gain 0.05)" in event["reason"] and cur.switch_step == 9
    )

    no_hard = {i: s for i, s in SHARES.items() if i not in (4, 5)}
    problems = [{"id": f"p{i}"} for i in no_hard]
    shares = list(no_hard.values())
    cur = Curriculum(problems, CFG, lambda idx, k: [round(shares[i] * k) for i in idx], seed=0)
    cur.draw(1)
    events = [e for s, r in enumerate([0.9, 0.9, 0.9], 1) for e in cur.observe(s, r)]
    assert [e["event"] for e in events] == ["no_hard_pool"] and cur.stage == 1 and cur.switch_step is None
    assert cur.observe(4, 0.9) == []  # the window starts again after the failed switch


def test_resume_from_state_without_measuring_again() -> None:
    policy = FakePolicy()
    cur = Curriculum(_problems(), CFG, policy, seed=3)
    cur.draw(5)
    for step, reward in enumerate([0.8, 0.8], 1):
        cur.observe(step, reward)
    state = json.loads(json.dumps(cur.state_dict()))  # it travels as JSON (rollout metadata)
    fresh_policy = FakePolicy()
    resumed = Curriculum(_problems(), CFG, fresh_policy, seed=3)
    resumed.load_state_dict(state)
    assert resumed.draw(7) == cur.draw(7)
    assert resumed.observe(3, 0.8)[0]["event"] == cur.observe(3, 0.8)[0]["event"] == "switch"
    assert resumed.draw(3) == cur.draw(3)
    assert fresh_policy.calls == policy.calls[2:]  # only the switch's re-measure, no start measurement


def test_no_moderate_problem_is_a_clear_error_and_pass_rate_rows() -> None:
    cur = Curriculum(_problems(), CFG, lambda idx, k: [k] * len(idx), seed=0)
    with pytest.raises(
        CurriculumError, match=r"no moderate problem among 10 .*'easy': 10.*widen moderate_min"
    ):
        cur.draw(1)
    cur = Curriculum(_problems(), CFG, FakePolicy(), seed=0)
    cur.draw(1)
    rows = {r["difficulty"]: r for r in cur.pass_rate_rows()}
    assert {r["measured"] for r in rows.values()} == {"start"}
    assert rows["moderate"]["problems"] == 4 and rows["moderate"]["correct"] == 2 + 1 + 2 + 1
    assert rows["hard"]["samples"] == 2 * 16 and rows["hard"]["correct"] == 1 + 2
    assert rows["unsolved"]["pass_at_k"] == 0.0
    for step in (1, 2, 3):
        cur.observe(step, 0.9)  # saturated: the switch re-measures problems 4 to 7
    switch = [r for r in cur.pass_rate_rows() if r["measured"] == "switch"]
    assert sum(r["problems"] for r in switch) == 4
    assert sum(r["problems"] for r in cur.pass_rate_rows() if r["measured"] == "start") == 10
