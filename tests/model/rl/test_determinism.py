"""Same spec and seed, same bytes: two GRPO runs (``python -m model.rl.main spec.json``, each its own process with
its own string-hash seed) with the curriculum, the dynamic temperature, two clipped updates per rollout batch and a
k3 KL term give byte-identical weights, rollouts, metrics and summaries on CPU. (The kind-level twin, a kill -9 and
resume against an uninterrupted run, is in tests/tasks/test_grpo_kind.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.model.rl._ckpt import make_debug_checkpoint, write_problems

ROOT = Path(__file__).resolve().parents[3]
STEPS = 4
MEASURED = {"rollout_s", "reward_s", "train_s", "gen_tok_s", "step_s"}


def _spec(base: Path, out: Path) -> Path:
    spec = {
        "policy": {"path": str(base / "ckpt")},
        "data": {"train": str(base / "train.parquet"), "val": str(base / "val.parquet")},
        "rollout": {"group_size": 4, "prompts_per_step": 3, "max_new_tokens": 10, "truncated": "keep"},
        "grpo": {"micro_batch": 8, "updates": 2, "kl_coef": 0.05, "eps_high": 0.28},
        "curriculum": {"k_small": 2, "k_large": 4, "moderate_min": 0.0, "moderate_max": 1.0, "window": 2,
                       "threshold": 0.3},
        "temperature": {"window": 2, "flat_tol": 1.0, "step": 0.2, "max_temperature": 1.4, "max_drop": 1.0},
        "optim": {"name": "adamw", "lr": 0.02, "weight_decay": 0.0},
        "steps": STEPS,
        "checkpoint": {"dir": str(out / "ckpt"), "every": 1, "keep": 1, "export": str(out / "export")},
        "rollouts_dir": str(out / "rollouts"),
        "metrics": str(out / "metrics.parquet"),
        "seed": 5,
    }  # fmt: skip
    out.mkdir(parents=True)
    path = out / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _run(spec: Path, hash_seed: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(PYTHONHASHSEED=hash_seed, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "model.rl.main", str(spec)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_two_runs_give_the_same_bytes(tmp_path: Path) -> None:
    base = tmp_path / "base"
    make_debug_checkpoint(str(base / "ckpt"))
    write_problems(str(base / "train.parquet"), 12)
    write_problems(str(base / "val.parquet"), 3)
    a, b = tmp_path / "a", tmp_path / "b"
    _run(_spec(base, a), "1")
    _run(_spec(base, b), "2")
    assert (a / "export" / "model.safetensors").read_bytes() == (
        b / "export" / "model.safetensors"
    ).read_bytes()
    names = sorted(p.name for p in (a / "rollouts").iterdir())
    assert len(names) == STEPS and names == sorted(p.name for p in (b / "rollouts").iterdir())
    for name in names:
        assert (a / "rollouts" / name).read_bytes() == (b / "rollouts" / name).read_bytes(), name
    rows_a, rows_b = (pq.read_table(x / "metrics.parquet").to_pylist() for x in (a, b))
    assert [{k: v for k, v in r.items() if k not in MEASURED} for r in rows_a] == [
        {k: v for k, v in r.items() if k not in MEASURED} for r in rows_b
    ]
    # the code paths this test is for did run: two updates (clipping), the KL term, the curriculum's pools and
    # the temperature controller's decisions
    assert rows_a[-1]["kl_to_start"] > 0 and all(r["rounds"] >= 1 for r in rows_a)
    summary_a = json.loads((a / "ckpt" / "rl_summary.json").read_text())
    summary_b = json.loads((b / "ckpt" / "rl_summary.json").read_text())
    assert summary_a == summary_b
    assert summary_a["curriculum"]["pools_at_start"] and len(summary_a["temperature_events"]) > 1
