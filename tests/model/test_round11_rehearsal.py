"""The CPU rehearsal of ``benchmarks/train.py --sections round11`` (its plumbing, not its speed): the section that
times the headline step with the round-11 defaults at three grid entries, the round-10 default and HF at the
reference entry, so that a Python error cannot first show on the GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_round11_rehearsal_on_cpu(tmp_path: Path) -> None:
    """``--device cpu --sections round11`` (debug, eager, bf16, 64-token rows, DeepSpeed over gloo; grid 2x2, 4x4,
    4x8, reference 4x4; about 25 s): every row runs (the new defaults at each entry, the round-10 default at the
    reference and the first entry, HF at the reference, the new defaults again), each with its ratios to the
    round-10 default and to HF; the new and the round-10 defaults end their updates at the same loss within bf16
    rounding (on CPU they differ only in DeepSpeed's gradient norm); the table and the JSON rows are written."""
    pytest.importorskip("deepspeed")
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "benchmarks/train.py", "--device", "cpu", "--sections", "round11", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "FAILED" not in res.stdout and "skipped" not in res.stdout, res.stdout[-3000:]
    assert "## Round 11" in res.stdout
    rows = json.loads((tmp_path / "train_bench.json").read_text())
    info = [r for r in rows if r["section"] == "round11 info"]
    assert info and info[0]["swiglu_default"] == "False"  # CPU: the chunk path, whatever triton is installed
    steps = [r for r in rows if r["section"] == "round11 step"]
    got = {(r["change"], r["grid"]) for r in steps}
    assert got == {
        ("new defaults", "4 x 4"), ("new defaults", "2 x 2"), ("new defaults", "4 x 8"),
        ("round-10 defaults", "4 x 4"), ("round-10 defaults", "2 x 2"), ("HF", "4 x 4"),
        ("new defaults again", "4 x 4"),
    }  # fmt: skip
    for r in steps:
        assert r["tok_s"] > 0 and "x_ref" in r and "x_hf" in r, r["name"]
    ours = [r for r in steps if r["change"] != "HF"]
    assert all(r["optimizer"] == "DeepSpeedZeroOptimizer" for r in ours)
    # 1 warm-up + 3 timed at the reference, 1 + 2 above it, --r7-warmup + --r7-iters (2 + 5) below
    n_steps = {"4 x 4": 4, "4 x 8": 3, "2 x 2": 7}
    for r in ours:
        assert r["steps"] == n_steps[r["grid"]], r["name"]
    old = {r["grid"]: r["loss"] for r in ours if r["change"] == "round-10 defaults"}
    for r in ours:
        if r["grid"] in old:
            assert abs(r["loss"] - old[r["grid"]]) <= 2e-4 * old[r["grid"]], r["name"]
