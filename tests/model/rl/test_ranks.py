"""Two ranks through gloo give one rank's result for one global batch: the same problems drawn, the same samples
and rewards (a completion's seed does not depend on the rank that samples it), the same validation pass rate, and
the same update (losses normalised over the global batch, gradients summed over the ranks) within float rounding:
the ranks reduce in another order, so not bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from model.train.launch import launch_command
from tests.model.rl._ckpt import make_debug_checkpoint, write_problems

ROOT = Path(__file__).resolve().parents[3]
LR = 1e-3


def _run(base: Path, out: Path, ranks: int) -> None:
    spec = {
        "policy": {"path": str(base / "ckpt")},
        "data": {"train": str(base / "train.parquet"), "val": str(base / "val.parquet")},
        # 4 kept groups of 4: two per rank; on one rank one micro-batch of 16, on two one of 8 each
        "rollout": {"group_size": 4, "prompts_per_step": 4, "max_new_tokens": 10, "truncated": "keep"},
        "grpo": {"micro_batch": 16},
        "optim": {"name": "adamw", "lr": LR, "weight_decay": 0.0},
        "steps": 1,
        "checkpoint": {"dir": str(out / "ckpt"), "export": str(out / "export")},
        "rollouts_dir": str(out / "rollouts"),
        "metrics": str(out / "metrics.parquet"),
        "seed": 7,
    }
    out.mkdir(parents=True)
    (out / "spec.json").write_text(json.dumps(spec))
    plan = launch_command(str(out / "spec.json"), ranks, launcher="torchrun", entry="model.rl.main")
    env = {k: v for k, v in plan.env.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    proc = subprocess.run(plan.argv, env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_ranks_equal_one_rank_for_one_global_batch(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    base = tmp_path / "base"
    make_debug_checkpoint(str(base / "ckpt"))
    write_problems(str(base / "train.parquet"), 12)
    write_problems(str(base / "val.parquet"), 3)
    one, two = tmp_path / "one", tmp_path / "two"
    _run(base, one, 1)
    _run(base, two, 2)
    ro1, ro2 = (pq.read_table(x / "rollouts" / "step-00000001.parquet").to_pylist() for x in (one, two))
    assert [(r["problem"], r["sample"], r["tokens"], r["reward"], r["kept"]) for r in ro1] == [
        (r["problem"], r["sample"], r["tokens"], r["reward"], r["kept"]) for r in ro2
    ]
    assert sum(r["kept"] for r in ro1) == 16  # a full batch: 4 groups on 2 ranks
    m1, m2 = (pq.read_table(x / "metrics.parquet").to_pylist()[0] for x in (one, two))
    for key in ("reward", "pass_rate", "kept_groups", "groups", "response_len"):
        assert m1[key] == m2[key], key
    for key in ("loss", "grad_norm"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-7), key
    s1, s2 = (json.loads((x / "ckpt" / "rl_summary.json").read_text()) for x in (one, two))
    assert s1["val_before"] == s2["val_before"] and s1["val_after"] == s2["val_after"]
    w0 = load_file(os.path.join(base / "ckpt", "model.safetensors"))
    w1, w2 = (load_file(str(x / "export" / "model.safetensors")) for x in (one, two))
    moved = max(float((w1[k] - w0[k]).abs().max()) for k in w0)
    assert moved > LR / 2  # the step did update the weights (Adam's first step moves them by about lr)
    # a weight whose gradient is float noise on both sides may step by a fraction of lr in either run
    diffs = sorted(float((w1[k] - w2[k]).abs().max()) for k in w0)
    assert diffs[-1] < LR * 0.1, diffs[-5:]
