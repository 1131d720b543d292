"""Scored rollouts are reused on resume only when they came from the same run: each persisted batch carries the
run's rollout digest (settings that change rollouts, the starting policy's and the problems' content) and the
sampling policy's update count. Unit checks of the digest and the key, then ``python -m model.rl.main`` itself: a
run with other checkpoint/threads/steps settings reuses a batch, one with another seed or other starting weights
in the same rollouts folder stops with an error naming the folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from model.rl.collect import (
    RolloutMismatchError,
    StepRollouts,
    batch_key,
    load_rollouts,
    policy_identity,
    rollout_digest,
    save_rollouts,
)
from tests.model.rl._ckpt import make_debug_checkpoint, write_problems

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = {
    "rollout": {"group_size": 4, "engine": {"name": "local"}},
    "grpo": {"updates": 1},
    "optim": {"lr": 0.02},
    "seed": 5,
}


def test_the_digest_follows_what_changes_rollouts(tmp_path: Path) -> None:
    rows = [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": "q"}]
    base = rollout_digest(SETTINGS, "w1", rows, [])
    neutral = {
        **SETTINGS, "checkpoint": {"dir": "/elsewhere", "every": 3}, "rollouts_dir": "/x", "threads": 4,
        "steps": 99, "metrics": "/m.parquet", "stop_after": 2,
        "policy": {"path": "/other/path"}, "data": {"train": "/other/train.parquet"},
    }  # fmt: skip
    assert rollout_digest(neutral, "w1", rows, []) == base
    transport = {**SETTINGS, "rollout": {**SETTINGS["rollout"], "engine": {"name": "local", "retries": 9}}}
    assert rollout_digest(transport, "w1", rows, []) == base
    changed = [
        rollout_digest({**SETTINGS, "seed": 6}, "w1", rows, []),
        rollout_digest({**SETTINGS, "optim": {"lr": 0.01}}, "w1", rows, []),
        rollout_digest(SETTINGS, "w2", rows, []),  # other starting weights
        rollout_digest(SETTINGS, "w1", rows[:1], []),  # other problems
        rollout_digest(SETTINGS, "w1", rows, rows[:1]),  # other validation problems (the temperature guard)
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_policy_identity_is_the_content_not_the_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "config.json").write_text("{}")
    (a / "model.safetensors").write_bytes(b"\x00" * 64)
    (a / "_train").mkdir()  # a store output's scratch is not the policy
    (a / "_train" / "state.pt").write_bytes(b"x")
    shutil.copytree(a, b)
    (b / "_train" / "state.pt").write_bytes(b"y")
    assert policy_identity(str(a)) == policy_identity(str(b))
    (b / "model.safetensors").write_bytes(b"\x01" * 64)
    assert policy_identity(str(a)) != policy_identity(str(b))
    # a store output: its manifest's content hash
    (b / "manifest.json").write_text(json.dumps({"content_hash": "abc", "timings": {"s": 1}}))
    assert policy_identity(str(b)) == "store:abc"


def test_a_batch_with_another_key_is_refused_with_the_folder_named(tmp_path: Path) -> None:
    ro = StepRollouts([], [], 0, 0, 1, 1.0)
    folder = str(tmp_path / "rollouts")
    save_rollouts(folder, 3, ro, {"epoch": 0, "cursor": 4}, batch_key("d1", 3))
    loaded = load_rollouts(folder, 3, batch_key("d1", 3))
    assert loaded is not None and loaded[0].reused and loaded[1] == {"epoch": 0, "cursor": 4}
    with pytest.raises(RolloutMismatchError) as caught:
        load_rollouts(folder, 3, batch_key("d2", 3))
    text = str(caught.value)
    assert folder in text and "step 3" in text and "fresh rollouts_dir" in text and "another run" in text
    save_rollouts(folder, 4, ro, {"epoch": 0, "cursor": 8})  # no key: an older writer
    with pytest.raises(RolloutMismatchError, match="carries no key"):
        load_rollouts(folder, 4, batch_key("d1", 4))


def _spec(base: Path, out: Path, rollouts: Path, policy: str = "ckpt", **over: object) -> Path:
    spec = {
        "policy": {"path": str(base / policy)},
        "data": {"train": str(base / "train.parquet")},
        "rollout": {"group_size": 2, "prompts_per_step": 2, "max_new_tokens": 6, "truncated": "keep"},
        "grpo": {"micro_batch": 8},
        "optim": {"name": "adamw", "lr": 0.02, "weight_decay": 0.0},
        "steps": 1,
        "checkpoint": {"dir": str(out / "ckpt"), "every": 0, "keep": 1},
        "rollouts_dir": str(rollouts),
        "metrics": str(out / "metrics.parquet"),
        "seed": 5,
        **over,
    }
    out.mkdir(parents=True)
    path = out / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def _run(spec: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "model.rl.main", str(spec)], cwd=ROOT, env=env, capture_output=True, text=True
    )


def test_the_run_reuses_its_own_batches_and_refuses_another_runs(tmp_path: Path) -> None:
    base = tmp_path / "base"
    make_debug_checkpoint(str(base / "ckpt"))
    make_debug_checkpoint(str(base / "other"), seed=1)  # same shape, other weights
    write_problems(str(base / "train.parquet"), 6)
    rollouts = tmp_path / "rollouts"
    first = _run(_spec(base, tmp_path / "a", rollouts))
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    step1 = rollouts / "step-00000001.parquet"
    made = step1.stat().st_mtime_ns
    # other checkpoint folder, threads and step count: the same rollouts, so step 1 is reused as is
    again = _run(_spec(base, tmp_path / "b", rollouts, steps=2, threads=2))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-3000:]
    reused = [r["reused_rollouts"] for r in pq.read_table(tmp_path / "b" / "metrics.parquet").to_pylist()]
    assert reused == [True, False] and step1.stat().st_mtime_ns == made
    # another seed, or other starting weights at the same path: a clear error, the batch left as it was
    for name, spec in (
        ("seed", _spec(base, tmp_path / "c", rollouts, seed=6)),
        ("weights", _spec(base, tmp_path / "d", rollouts, policy="other")),
    ):
        proc = _run(spec)
        assert proc.returncode != 0, name
        err = proc.stderr
        assert (
            "RolloutMismatchError" in err and f"rollouts folder {rollouts} belongs to another run" in err
        ), err[-3000:]
        assert step1.stat().st_mtime_ns == made
