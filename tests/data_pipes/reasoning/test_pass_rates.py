"""Pass-rate report per dataset: teacher errors as their own column, and a warning naming each dataset the
teacher cannot do (a reasoning-gym generator the procedural teacher has no solver for)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

from data_pipes.reasoning import pass_rates
from flows.engine import Engine
from flows.validate import load_pipeline


def test_table_keeps_teacher_errors_out_of_pass_rates() -> None:
    a, b = {}, {}
    pass_rates.add(a, "reasoning_gym:gcd", "arithmetic", "easy", problems=2, samples=4, correct=4, solved=2)
    pass_rates.add(
        a, "reasoning_gym:word_sorting", "algorithmic", "easy", problems=3, samples=6, teacher_errors=6
    )
    pass_rates.add(
        b, "reasoning_gym:count_bits", "algorithmic", "easy", problems=1, samples=2, correct=1, solved=1
    )
    pass_rates.add(
        b, "reasoning_gym:word_sorting", "algorithmic", "easy", problems=1, samples=2, teacher_errors=2
    )
    rows = pass_rates.table(pass_rates.merge([a, b]))
    by = {r["dataset"]: r for r in rows}
    assert by["reasoning_gym:word_sorting"] == {
        "dataset": "reasoning_gym:word_sorting",
        "domain": "algorithmic",
        "difficulty": "easy",
        "problems": 4,
        "samples": 8,
        "answered": 0,
        "teacher_errors": 8,
        "correct": 0,
        "solved": 0,
        "records": 0,
        "pass_rate": None,
        "pass_at_k": None,
    }
    assert by["reasoning_gym:count_bits"]["pass_rate"] == 0.5  # not hidden behind the other dataset
    assert pass_rates.unsupported(rows) == {"reasoning_gym:word_sorting": 8}
    md = pass_rates.markdown(rows, "procedural")
    assert "| reasoning_gym:word_sorting | algorithmic | easy | 4 | 8 | 8 | n/a | n/a | 0 |" in md
    assert "The teacher cannot do** `reasoning_gym:word_sorting` (8 samples" in md


def test_generate_sft_warns_about_a_dataset_without_solver(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = {
        "probs": {
            "uses": "problems",
            "params": {
                "reasoning_gym": [
                    {"name": "gcd", "size": 3, "seed": 1, "difficulty": "easy"},
                    {"name": "word_sorting", "size": 3, "seed": 1, "difficulty": "easy"},
                ]
            },
        },
        "sft": {"uses": "generate_sft", "inputs": ["probs"], "params": {"samples_per_prompt": 2}},
    }
    spec = {"name": "r", "workdir": str(tmp_path / ".arcflow"), "nodes": nodes}
    spec["executor"] = {"n_workers": 1, "processes": False}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(tmp_path / "pipeline.yaml"), [])
    engine = Engine(pipeline)
    try:
        with caplog.at_level(logging.WARNING, logger="tasks.generate_sft"):
            manifest = {n: engine.run_node(n)[1] for n in pipeline.order}["sft"]
    finally:
        engine.close()
    out = tmp_path / ".arcflow" / "outputs" / manifest["fingerprint"] / "reports"
    rows = {r["dataset"]: r for r in json.loads((out / "sft-pass-rates.json").read_text())}
    assert rows["reasoning_gym:word_sorting"]["teacher_errors"] == 6
    assert rows["reasoning_gym:word_sorting"]["pass_rate"] is None
    assert rows["reasoning_gym:gcd"]["pass_rate"] == 1.0 and rows["reasoning_gym:gcd"]["teacher_errors"] == 0
    warned = [r.getMessage() for r in caplog.records if r.name == "tasks.generate_sft"]
    assert (
        len(warned) == 1 and "'reasoning_gym:word_sorting'" in warned[0] and "6 of its samples" in warned[0]
    )
