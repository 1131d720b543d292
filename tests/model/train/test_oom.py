"""A GPU out-of-memory error during a step stops the run with a message naming the micro-batch size and sequence
length to lower, with their values, and keeps the last checkpoint. CI has no GPU, so the error is simulated: the
run (one rank, CPU, a real ``model.train.main`` process) has the model's forward raise
``torch.cuda.OutOfMemoryError`` from the second step on (mocked; everything else is real)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OOM_AT_STEP_2 = """
import sys, torch
from model.glm import GLMForCausalLM

real, calls = GLMForCausalLM.forward, [0]

def forward(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] > 1:  # one micro-batch per step: the second step's forward
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
    return real(self, *args, **kwargs)

GLMForCausalLM.forward = forward
from model.train.main import main
sys.exit(main([sys.argv[1]]))
"""


@pytest.mark.slow
def test_out_of_memory_names_micro_batch_and_seq_len(store: dict, tmp_path: Path) -> None:
    spec = {
        "model": {"flavour": "debug"},
        "data": {"shards": [str(store["packed"])], "tokenizer": str(store["tokenizer"])},
        "batch": {"global_batch": 2, "micro_batch": 2},
        "optim": {"name": "muon", "lr": 0.01},
        "steps": 3,
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "every": 1},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-c", OOM_AT_STEP_2, str(path)],
        capture_output=True, text=True, timeout=400, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode != 0
    last = [ln for ln in done.stderr.splitlines() if "Error: " in ln][-1]
    assert "model.train.main.TrainOutOfMemoryError: step 2: out of GPU memory on rank 0" in last
    assert "batch.micro_batch 2 rows of seq_len 64" in last and "Lower batch.micro_batch (now 2" in last
    assert "the seq_len of the pack node the rows come from, now 64" in last
    assert "Tried to allocate 2.00 GiB" in last  # the original error stays readable
    assert (tmp_path / "ckpt" / "latest").read_text() == "step00000001"  # the last good checkpoint is kept
