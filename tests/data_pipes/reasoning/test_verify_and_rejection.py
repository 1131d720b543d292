"""Answer extraction, the verifiers (reasoning-gym, math-verify, code in the sandbox), procedural solutions
and the rejection-sampling rules."""

from __future__ import annotations

import json

import pytest

from data_pipes.reasoning.answers import extract_code, final_answer, split_think
from data_pipes.reasoning.gym_problems import gym_rows
from data_pipes.reasoning.humaneval_problems import humaneval_rows
from data_pipes.reasoning.jsonl_problems import jsonl_rows
from data_pipes.reasoning.rejection import in_bottom, judge, length_cutoff
from data_pipes.reasoning.sandbox import run_code_tests
from data_pipes.reasoning.teachers.base import GenRequest, GenResponse
from data_pipes.reasoning.teachers.procedural import SOLVERS, ProceduralTeacher
from data_pipes.reasoning.verify import verify_response


def test_split_and_final_answer() -> None:
    assert split_think("<think>a\nb</think>\n\nAnswer: 7") == ("a\nb", "Answer: 7")
    assert split_think("no trace\nAnswer: 3") == (None, "no trace\nAnswer: 3")
    assert final_answer("<think>Answer: 1</think>\nso\nAnswer: 2") == "2"
    assert final_answer("the result is \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert final_answer("<think>never closed") is None
    assert extract_code("```python\ndef f():\n    return 1\n```") == "def f():\n    return 1\n"


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_procedural_solutions_pass_the_generators_own_verifier(name: str) -> None:
    rows = gym_rows(name, seed=7, size=15, start=0, stop=15, config={}, difficulty="default")
    reqs = [GenRequest((r["id"], 0), [], problem=r) for r in rows]
    errors = 0
    for row, resp in zip(rows, ProceduralTeacher().generate(reqs), strict=True):
        if resp.error is not None:  # e.g. simple_equations sometimes emits the degenerate "0 = 0"
            assert resp.error.startswith("teacher_solver_error") and resp.finish_reason == "error"
            errors += 1
            continue
        assert resp.text.startswith("<think>")
        verdict = verify_response(row, resp.text)
        assert verdict.ok, (row["prompt"], resp.text, verdict)
    assert errors <= 1


def test_gym_verifier_rejects_a_wrong_answer_and_math_verify_checks_user_sets(tmp_path) -> None:
    row = gym_rows("basic_arithmetic", seed=1, size=1, start=0, stop=1, config={}, difficulty="d")[0]
    assert json.loads(row["meta"])["entry"]["answer"] == row["answer"]
    assert not verify_response(row, "Answer: 123456789").ok
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Half of one?", "answer": "\\frac{1}{2}"}) + "\n")
    (user,) = jsonl_rows(str(path))
    assert verify_response(user, "<think>1/2</think>\nAnswer: 0.5").ok
    assert not verify_response(user, "Answer: 0.75").ok


def test_jsonl_rows_name_the_file_as_given_never_by_its_location(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "Half of one?", "answer": "1/2"}) + "\n")
    (row,) = jsonl_rows(str(path), "sets/p.jsonl")
    assert row["url"] == "sets/p.jsonl#1" and json.loads(row["meta"])["path"] == "sets/p.jsonl"
    assert str(tmp_path) not in json.dumps(row)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "p.jsonl").write_bytes(path.read_bytes())
    assert jsonl_rows(str(moved / "p.jsonl"), "sets/p.jsonl") == [row]  # same bytes in any folder
    (missing,) = jsonl_rows(str(tmp_path / "gone.jsonl"), "gone.jsonl")
    assert missing["error"].startswith("problems_unreadable_file") and str(tmp_path) not in missing["error"]


def test_humaneval_canonical_solution_passes_and_a_wrong_one_fails() -> None:
    row = humaneval_rows(limit=1)[0]
    meta = json.loads(row["meta"])
    good = f"```python\n{meta['function_prompt']}{meta['canonical_solution']}```"
    assert verify_response(row, good).ok
    bad = f"```python\ndef {row['entry_point']}(*a):\n    return None\n```"
    verdict = verify_response(row, bad)
    assert not verdict.ok and verdict.method == "sandbox"
    assert not verify_response(row, "no code here").ok


def test_sandbox_limits() -> None:
    assert run_code_tests("def f():\n    return 1", "assert f() == 1", "f", 5) == (True, "passed")
    ok, detail = run_code_tests("while True:\n    pass", "", "", timeout_s=0.5)
    assert not ok and detail.startswith("timeout")
    ok, detail = run_code_tests("x = bytearray(2_000_000_000)", "", "", timeout_s=5, memory_mb=256)
    assert not ok and "MemoryError" in detail


def _resp(i: int, text: str, finish: str = "stop", error: str | None = None) -> GenResponse:
    return GenResponse(("p", i), text, finish, {}, error)


def test_judge_reasons_in_order() -> None:
    ok = {"ok": True}
    samples = [
        (0, _resp(0, "", "error", "teacher_timeout: x"), None),
        (1, _resp(1, "long enough but cut", "length"), None),
        (2, _resp(2, "tiny"), ok),
        (3, _resp(3, "Answer: 5 is right"), ok),
        (4, _resp(4, "Answer:  5 is   right"), ok),  # same text after whitespace normalisation
        (5, _resp(5, "Answer: 6 is wrong"), {"ok": False}),
        (6, _resp(6, "Answer: 5 also right"), ok),
        (7, _resp(7, "Answer: 5 right again"), ok),
    ]
    reasons = [j.reason for j in judge(samples, keep=2, min_chars=8)]
    assert reasons == [
        "sft_teacher_error",
        "sft_truncated",
        "sft_too_short",
        None,
        "sft_duplicate",
        "sft_incorrect",
        None,
        "sft_over_k",
    ]


def test_length_cutoff_drops_the_bottom_half() -> None:
    lengths = [(10.0, "a"), (30.0, "b"), (20.0, "c"), (20.0, "d")]
    cut = length_cutoff(lengths, 0.5)
    assert sorted(pid for length, pid in lengths if in_bottom(length, pid, cut)) == ["a", "c"]
    assert length_cutoff(lengths, 0.0) is None
