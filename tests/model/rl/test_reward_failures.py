"""A reward that raises on every one of its calls in a step (an LLM judge at an unreachable base_url) fails the
run at the end of that step, naming the reward, the count and the first error; partial errors stay counted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from model.rl.main import all_error_rewards, reward_failure_message
from tests.model.rl._ckpt import make_debug_checkpoint, write_problems

ROOT = Path(__file__).resolve().parents[3]


def _row(components: dict[str, float], error: str = "") -> dict[str, str]:
    return {"components": json.dumps(components), "error": error}


def test_only_a_reward_that_failed_every_call_is_reported() -> None:
    rows = [
        _row({"math": 1.0, "judge": 0.0}, "judge: connection error (ConnectError: [Errno 111] refused)"),
        _row({"math": 0.0, "judge": 0.0}, "math: ValueError: bad; judge: timeout; after 3 attempts"),
        _row({"math": 1.0}),  # judge not applicable to this row: no call
    ]
    failed = all_error_rewards(rows)
    assert failed == [("judge", 2, "connection error (ConnectError: [Errno 111] refused)")]  # math: 1 of 3
    text = reward_failure_message(4, failed)
    assert text.startswith(
        "step 4: reward 'judge' raised on all 2 of its calls (first error: connection error"
    )
    assert "] " not in text and "\n" not in text and "check that the reward's endpoint" in text.lower()
    assert all_error_rewards([_row({"math": 0.0}, "math: boom"), _row({"math": 1.0})]) == []


def test_a_judge_at_an_unreachable_url_fails_the_first_step(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    make_debug_checkpoint(str(tmp_path / "ckpt"))
    write_problems(str(tmp_path / "train.parquet"), 4)
    judge = {"base_url": f"http://127.0.0.1:{port}/v1", "model": "j", "retries": 0, "timeout_s": 2}
    spec = {
        "policy": {"path": str(tmp_path / "ckpt")},
        "data": {"train": str(tmp_path / "train.parquet")},
        "rollout": {"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 4, "truncated": "keep"},
        "grpo": {"micro_batch": 8},
        "rewards": {"weights": {"judge": 0.5}, "options": {"judge": judge}},
        "optim": {"name": "adamw", "lr": 0.02, "weight_decay": 0.0},
        "steps": 3,
        "checkpoint": {"dir": str(tmp_path / "out" / "ckpt"), "every": 0, "keep": 1},
        "rollouts_dir": str(tmp_path / "rollouts"),
        "metrics": str(tmp_path / "out" / "metrics.parquet"),
        "seed": 5,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "model.rl.main", str(path)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if "RewardFailedError: " in ln]
    assert "step 1: reward 'judge' raised on all " in line and "first error: " in line, line
    assert "teacher_connection" in line and "rewards.options" in line
    assert not (tmp_path / "rollouts").exists() or not os.listdir(tmp_path / "rollouts")  # nothing to reuse
    # the node's error is the ranks' last error line, whole
    from tasks._train_run import _error_of

    log = tmp_path / "launch.log"
    log.write_text(proc.stderr)
    assert _error_of(str(log)).startswith(line.split("]: ", 1)[-1].strip())
