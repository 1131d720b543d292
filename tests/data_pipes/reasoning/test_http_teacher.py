"""HttpTeacher against a real local OpenAI-compatible server: answers, retries, concurrency, timeouts,
garbage."""

from __future__ import annotations

import json
import time

from _openai_server import FakeOpenAI

from data_pipes.reasoning.teachers.base import GenRequest, build_messages
from data_pipes.reasoning.teachers.http import HttpTeacher, parse_completion


def _requests(prompts: list[str]) -> list[GenRequest]:
    return [GenRequest((f"p{i}", 0), build_messages(p), 0.0, 64, i) for i, p in enumerate(prompts)]


def test_answers_and_streams_results() -> None:
    with FakeOpenAI() as srv:
        seen = []
        out = HttpTeacher(srv.base_url, "fake", concurrency=4).generate(
            _requests(["Calculate 2 + 3.", "Calculate ( 4 - 10 ) * 2."]), on_result=seen.append
        )
    assert [r.text.splitlines()[-1] for r in out] == ["Answer: 5", "Answer: -12"]
    assert all(r.error is None and r.finish_reason == "stop" and r.usage["total_tokens"] > 0 for r in out)
    assert sorted(r.key for r in seen) == [("p0", 0), ("p1", 0)]
    assert srv.requests[0]["model"] == "fake" and srv.requests[0]["messages"][0]["role"] == "system"


def test_retries_500_then_429_with_backoff() -> None:
    with FakeOpenAI(fail_first=[500, 429]) as srv:
        started = time.perf_counter()
        out = HttpTeacher(srv.base_url, "fake", retries=3, backoff_s=0.05).generate(
            _requests(["Calculate 1 + 1."])
        )
        elapsed = time.perf_counter() - started
    assert out[0].error is None and out[0].attempts == 3 and out[0].text.endswith("Answer: 2")
    assert len(srv.requests) == 3
    assert elapsed >= 0.05 * 0.5 + 0.1 * 0.5  # two jittered backoffs happened


def test_concurrency_limit_is_respected() -> None:
    with FakeOpenAI(delay_s=0.05) as srv:
        out = HttpTeacher(srv.base_url, "fake", concurrency=3).generate(
            _requests([f"Calculate {i} + 1." for i in range(18)])
        )
    assert all(r.error is None for r in out)
    assert srv.max_active == 3


def test_timeout_garbage_and_client_errors_become_error_responses() -> None:
    with FakeOpenAI() as srv:
        teacher = HttpTeacher(srv.base_url, "fake", timeout_s=0.3, retries=1, backoff_s=0.01)
        slow, garbage, bad, good = teacher.generate(
            _requests(["SLOW Calculate 1 + 1.", "GARBAGE", "BADREQ", "Calculate 3 * 3."])
        )
    assert slow.error.startswith("teacher_timeout") and slow.attempts == 2
    assert garbage.error.startswith("teacher_garbage") and garbage.attempts == 2
    assert bad.error.startswith("teacher_http_400") and bad.attempts == 1  # a 4xx is not retried
    assert good.error is None and good.text.endswith("Answer: 9")


def test_unreachable_server_is_an_error_not_a_crash() -> None:
    out = HttpTeacher("http://127.0.0.1:9/v1", "fake", retries=1, backoff_s=0.01).generate(_requests(["x"]))
    assert out[0].error.startswith("teacher_connection") and out[0].finish_reason == "error"


def test_parse_completion_reasoning_content() -> None:
    message = {"content": "Answer: 4", "reasoning_content": "2+2"}
    body = json.dumps({"choices": [{"message": message, "finish_reason": "stop"}]}).encode()
    text, finish, _usage = parse_completion(body)
    assert text == "<think>\n2+2\n</think>\n\nAnswer: 4" and finish == "stop"
