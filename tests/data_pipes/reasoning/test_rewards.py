"""The reward registry: each reward on right and wrong answers (real reasoning-gym rows, real math-verify, a
real sandbox run), the per-row choice of reward, weights, and a raising reward counted as its error."""

from __future__ import annotations

import json

import pytest

from data_pipes.reasoning.gym_problems import gym_rows
from data_pipes.reasoning.problem_table import problem_row
from data_pipes.reasoning.rewards import (
    REWARDS,
    Reward,
    RewardResult,
    RewardsConfig,
    Scorer,
    reward_class,
    reward_names,
)
from data_pipes.reasoning.rewards.function_call import step_rewards
from data_pipes.reasoning.tool_calls import ToolCall, format_tool_call


def _score(name: str, problem: dict, completion: str, **options) -> RewardResult:
    return reward_class(name)(options).score(problem, completion)


def test_math_reward_uses_math_verify() -> None:
    row = problem_row(
        id="m1",
        prompt="Half of one?",
        answer="\\frac{1}{2}",
        source="jsonl:x",
        domain="math",
        difficulty="easy",
    )
    assert Scorer().reward_name(row) == "math"
    assert _score("math", row, "<think>1 divided by 2</think>\nAnswer: 0.5").passed
    assert _score("math", row, "Answer: $\\frac{2}{4}$").value == 1.0
    wrong = _score("math", row, "<think>hmm</think>\nAnswer: 0.75")
    assert (wrong.value, wrong.passed) == (0.0, False) and "0.75" in wrong.detail
    assert not _score("math", row, "<think>never closed").passed
    assert Scorer().check({**row, "answer": ""}) == "reward_math_no_answer"


def test_reasoning_gym_reward_uses_the_generators_scorer() -> None:
    row = gym_rows("basic_arithmetic", seed=3, size=2, start=0, stop=1, config={}, difficulty="easy")[0]
    assert Scorer().reward_name(row) == "reasoning_gym"
    right = _score("reasoning_gym", row, f"<think>work</think>\nAnswer: {row['answer']}")
    assert (right.value, right.passed) == (1.0, True)
    wrong = _score("reasoning_gym", row, "<think>work</think>\nAnswer: 987654321")
    assert wrong.value < 1.0 and not wrong.passed
    assert Scorer().reward_name({**row, "source": "jsonl:x", "meta": "{}"}) == "math"  # no entry: a math row
    assert reward_class("reasoning_gym")().check({**row, "meta": "{}"}) == "reward_reasoning_gym_no_entry"


def test_code_reward_runs_the_tests_in_the_sandbox() -> None:
    row = problem_row(
        id="c1",
        prompt="Write add(a, b).",
        source="jsonl:c",
        domain="code",
        difficulty="easy",
        tests="def check(candidate):\n    assert candidate(2, 3) == 5\n",
        entry_point="add",
    )
    good = "<think>easy</think>\n```python\ndef add(a, b):\n    return a + b\n```"
    bad = "```python\ndef add(a, b):\n    return a - b\n```"
    loop = "```python\ndef add(a, b):\n    while True:\n        pass\n```"
    # adversarial: each is a 0 with the sandbox's reason, never a crash and never a pass
    attacks = {
        "read a host file": "import os\ndef add(a, b):\n    return len(open('/etc/shadow').read())",
        "exit 0 before the tests": "import os\nos._exit(0)\ndef add(a, b):\n    return a + b",
        "spawn a shell": "import subprocess\nsubprocess.run(['sh', '-c', 'echo hi'])\ndef add(a, b):\n    return a + b",
        "eat memory": "x = bytearray(4 << 30)\ndef add(a, b):\n    return a + b",
        "patch the checker": "import builtins\nbuiltins.AssertionError = Exception\ndef add(a, b):\n    return 0",
    }
    scorer = Scorer({"options": {"code": {"timeout_s": 3, "memory_mb": 256, "workers": 2}}})
    assert scorer.reward_name(row) == "code"
    texts = [good, bad, loop, "no code"] + [f"```python\n{code}\n```" for code in attacks.values()]
    results = scorer.score_batch([row] * len(texts), texts)
    assert [r.value for r in results] == [1.0] + [0.0] * (len(texts) - 1)
    assert results[0].detail == "passed"
    assert "AssertionError" in results[1].detail
    assert "timeout" in results[2].detail
    assert results[3].detail.startswith("no ```python")
    details = dict(zip(attacks, [r.detail for r in results[4:]], strict=True))
    assert details["read a host file"].startswith(("forbidden", "error")), details
    assert "exited 0 before its tests had run" in details["exit 0 before the tests"]
    assert details["spawn a shell"].startswith("forbidden"), details
    assert details["eat memory"].startswith("memory"), details
    assert "AssertionError" in details["patch the checker"]
    assert all(r.error is None for r in results)  # sandbox failures are 0 rewards with a reason, not errors
    assert scorer.check({**row, "tests": ""}) == "reward_code_no_tests"  # quarantined by the kind


def test_function_call_reward_is_a_stepwise_exact_match() -> None:
    tools = [
        {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            },
        }
    ]
    gold = format_tool_call("get_weather", {"city": "Paris", "days": 3})
    row = problem_row(
        id="f1",
        prompt="Weather in Paris for 3 days?",
        answer=gold,
        source="jsonl:f",
        domain="function_call",
        difficulty="d",
        meta={"tools": tools},
    )
    assert Scorer().reward_name(row) == "function_call"
    assert _score("function_call", row, f"<think>call it</think>\n{gold}").passed
    cases = {
        "name": format_tool_call("get_forecast", {"city": "Paris", "days": 3}),
        "params": format_tool_call("get_weather", {"city": "Paris", "days": 4}),
        "type": format_tool_call("get_weather", {"city": "Paris", "days": "3"}).replace(
            "<arg_value>3<", '<arg_value>"3"<'
        ),
        "format": gold.replace("</arg_key>", "", 1),
        "extra text": gold + "\nDone!",
        "two calls": gold + gold,
    }
    for what, text in cases.items():
        r = _score("function_call", row, text)
        assert (r.value, r.passed) == (0.0, False), what
    assert "format" in _score("function_call", row, cases["format"]).detail
    assert _score("function_call", row, cases["extra text"], strict_format=False).passed
    steps = [[ToolCall("get_weather", {"city": "Paris", "days": 3})], [ToolCall("done", {})]]
    schemas = {"get_weather": tools[0]}
    assert step_rewards(steps, [gold, format_tool_call("done", {})], schemas) == [1.0, 1.0]
    assert step_rewards(steps, [gold], schemas) == [1.0, 0.0]
    assert (
        reward_class("function_call")().check({**row, "answer": "no calls"}) == "reward_function_call_no_gold"
    )


def test_multiple_choice_reward() -> None:
    row = problem_row(
        id="s1",
        prompt="Which gas do plants absorb? A) O2 B) CO2 C) N2",
        answer="B",
        source="jsonl:sci",
        domain="science",
        difficulty="d",
        meta={"choices": ["O2", "CO2", "N2"]},
    )
    assert Scorer().reward_name(row) == "multiple_choice"
    for text in (
        "Answer: B",
        "Answer: (B)",
        "<think>photosynthesis</think>\nThe answer is B.",
        "\\boxed{B}",
        "Answer: B) CO2",
        "Answer: CO2",
    ):
        assert _score("multiple_choice", row, text).passed, text
    for text in ("Answer: A", "Answer: A or B", "Answer: oxygen"):
        assert not _score("multiple_choice", row, text).passed, text
    assert not _score("multiple_choice", {**row, "answer": "A"}, "Answer: A or B").passed  # hedged
    text_gold = {**row, "answer": "CO2"}
    assert _score("multiple_choice", text_gold, "Answer: B").passed
    assert reward_class("multiple_choice")().check({**row, "answer": "photosynthesis"}) == (
        "reward_multiple_choice_bad_gold"
    )


def test_instruction_reward_checks_length_format_keywords_language() -> None:
    checks = [
        {"check": "max_words", "value": 12},
        {"check": "keywords", "words": ["Paris"]},
        {"check": "no_commas"},
        {"check": "language", "code": "en"},
    ]
    row = problem_row(
        id="i1",
        prompt="Name the capital of France in one short English sentence.",
        source="jsonl:if",
        domain="chat",
        difficulty="d",
        meta={"instructions": checks},
    )
    assert Scorer().reward_name(row) == "instruction"
    good = _score("instruction", row, "<think>easy</think>\nThe capital of France is Paris.")
    assert (good.value, good.passed) == (1.0, True)
    half = _score("instruction", row, "La capitale de la France, bien sûr, est Paris.")
    assert half.value == 0.5 and not half.passed and "no_commas" in half.detail and "language" in half.detail
    js = {**row, "meta": json.dumps({"instructions": [{"check": "json"}, {"check": "bullets", "count": 0}]})}
    assert _score("instruction", js, '```json\n{"city": "Paris"}\n```').passed
    assert not _score("instruction", js, "{city: Paris}").passed
    assert reward_class("instruction")().check({**row, "meta": "{}"}) == "reward_instruction_no_checks"


def test_judge_reward_over_http(tmp_path) -> None:
    """The judge protocol against a real local HTTP server that grades like a stub (no LLM can run here): it
    gives 9/10 to responses naming Paris and 2/10 to others, and garbage for one marker."""
    from tests.data_pipes.reasoning._openai_server import FakeOpenAI

    class Grader(FakeOpenAI):
        def reply(self, body: dict) -> tuple[int, bytes]:
            user = body["messages"][-1]["content"]
            with self.lock:
                self.requests.append(body)
            response = user.split("Response:\n", 1)[1]
            text = "Vague.\nScore: 2" if "Paris" not in response else "Correct and complete.\nScore: 9"
            if "NOSCORE" in response:
                text = "I refuse to grade."
            data = {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
            return 200, json.dumps(data).encode()

    row = problem_row(
        id="j1",
        prompt="Capital of France?",
        answer="Paris",
        source="jsonl:j",
        domain="chat",
        difficulty="d",
        meta={"rubric": "Names the right city."},
    )
    with Grader() as server:
        scorer = Scorer(
            {"reward": "judge", "options": {"judge": {"base_url": server.base_url, "model": "g"}}}
        )
        results = scorer.score_batch([row] * 3, ["It is Paris.", "It is Lyon.", "NOSCORE"])
        assert "Names the right city." in server.requests[0]["messages"][-1]["content"]
    assert [(r.value, r.passed) for r in results] == [(0.9, True), (0.2, False), (0.0, False)]
    assert results[2].error and "Score" in results[2].error
    assert scorer.stats()[0]["errors"] == 1


def test_penalties() -> None:
    row = problem_row(id="p", prompt="p", answer="1", source="s", domain="math", difficulty="d")
    english = "<think>First add the two numbers, then check the sum twice.</think>\nAnswer: 4"
    for name in ("language_mixing", "repetition", "format"):
        r = _score(name, row, english)
        assert (r.value, r.passed) == (0.0, True), name
    mixed = "<think>First add the numbers 然后我们检查结果是否正确 and then check.</think>\nAnswer: 4"
    assert _score("language_mixing", row, mixed).value == -1.0
    assert _score("language_mixing", row, "Answer: $\\alpha + \\beta$ where α is small").value == 0.0
    loop = "<think>" + "I will add the numbers and then I will check the sum. " * 12 + "</think>\nAnswer: 4"
    assert _score("repetition", row, loop).value == -1.0
    for broken in (
        "Answer: 4</think>",
        "<think>a</think><think>b</think>\nAnswer: 4",
        "<think>a</think>\n",
        "<think>a</think>\n```python\nx = 1\n",
        "x <think>a</think> 4",
        "<tool_call>f\n<arg_key>a</arg_key>\n</tool_call>",
    ):
        assert _score("format", row, broken).value == -1.0, broken
    assert (
        _score("format", row, "Answer: 4").passed
        and not _score("format", row, "Answer: 4", require_think=True).passed
    )


def test_weights_row_column_and_raising_reward_counted_as_error() -> None:
    @_temporary_reward
    class Explodes(Reward):
        name = "test_explodes"

        def score(self, problem, completion):  # noqa: ANN001, ANN201 - the Reward signature
            if "boom" in completion:
                raise RuntimeError("verifier crashed")
            return RewardResult(1.0, True, "fine")

    math_row = problem_row(id="m", prompt="1+1?", answer="2", source="jsonl:x", domain="math", difficulty="d")
    scorer = Scorer(RewardsConfig(weights={"format": 0.5, "repetition": 0.5}))
    clean, broken = scorer.score_batch(
        [math_row, math_row], ["<think>1+1</think>\nAnswer: 2", "Answer: 2</think>"]
    )
    assert clean.value == 1.0 and clean.components == {"math": 1.0, "format": 0.0, "repetition": 0.0}
    assert broken.value == 0.5 and broken.passed and "format:" in broken.detail
    tagged = {**math_row, "reward": "test_explodes"}
    results = scorer.score_batch([tagged, tagged, math_row], ["ok", "boom", "Answer: 3"])
    assert [r.value for r in results] == [1.0, 0.0, 0.0]
    assert results[1].error and "verifier crashed" in results[1].error and results[2].error is None
    stats = {s["reward"]: s for s in scorer.stats()}
    assert stats["test_explodes"]["errors"] == 1 and stats["test_explodes"]["scored"] == 2
    assert stats["math"]["errors"] == 0
    unknown = {**math_row, "reward": "nope"}
    assert scorer.check(unknown) == "reward_unknown"
    assert scorer.score(unknown, "Answer: 2").error.startswith("nope: UnknownRewardError")
    assert Scorer({"by_source": {"jsonl:x": "multiple_choice"}}).reward_name(math_row) == "multiple_choice"


def test_a_weighted_reward_the_row_cannot_use_is_not_applicable_with_its_reason() -> None:
    """``code`` weighted on a math row without tests is not run there: no component, a note, a counted reason."""
    math_row = problem_row(id="m", prompt="1+1?", answer="2", source="jsonl:x", domain="math", difficulty="d")
    scorer = Scorer(RewardsConfig(weights={"code": 0.5, "repetition": 0.5}))
    (res,) = scorer.score_batch([math_row], ["Answer: 2"])
    assert res.value == 1.0 and res.components == {"math": 1.0, "repetition": 0.0} and res.error is None
    assert "code: not applicable (reward_code_no_tests)" in res.detail
    stats = {s["reward"]: s for s in scorer.stats()}
    assert stats["code"]["not_applicable"] == 1 and stats["code"]["scored"] == 0
    assert stats["code"]["not_applicable_reason"] == "reward_code_no_tests"
    assert stats["math"]["not_applicable"] == 0


def test_config_errors_name_the_reward_and_the_fix() -> None:
    with pytest.raises(ValueError, match="did you mean format"):
        RewardsConfig(weights={"formt": 1.0})
    with pytest.raises(ValueError, match="options.judge: base_url: Field required"):
        RewardsConfig(weights={"judge": 1.0})
    with pytest.raises(ValueError, match="options.code: timeout: Extra inputs"):
        RewardsConfig(options={"code": {"timeout": 3}})
    assert {
        "math",
        "reasoning_gym",
        "code",
        "function_call",
        "multiple_choice",
        "instruction",
        "judge",
        "language_mixing",
        "repetition",
        "format",
    } <= set(reward_names())


def _temporary_reward(cls: type[Reward]) -> type[Reward]:
    REWARDS[cls.name] = cls
    return cls


@pytest.fixture(autouse=True)
def _forget_test_rewards():
    yield
    for name in [n for n in REWARDS if n.startswith("test_")]:
        del REWARDS[name]
