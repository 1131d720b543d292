"""The real launcher on CPU (DeepSpeed's, gloo, ``DS_ACCELERATOR=cpu``) running ``model.train.main``: 1 and 2 ranks
give the same losses and weights for the same global batches, and a run killed with SIGKILL after a checkpoint
resumes to bit-identical final weights and metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from model.train.checkpoint import latest_tag
from model.train.launch import launch_command

STEPS = 6


def _spec(tmp: Path, store: dict, name: str, **over: object) -> Path:
    spec = {
        "model": {"flavour": "debug"},
        "data": {"shards": [str(store["packed"])], "tokenizer": str(store["tokenizer"]), "seed": 5},
        "batch": {"global_batch": 4, "micro_batch": 1},
        "optim": {"name": "muon", "lr": 0.01, "clip": 0.5},
        "schedule": {"warmup_steps": 1, "aux_weight": 1e-4},
        "steps": STEPS,
        "checkpoint": {"dir": str(tmp / name / "ckpt"), "every": 2},
        "seed": 0,
        **over,
    }
    path = tmp / name / "spec.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    return path


def _run(spec: Path, ranks: int) -> None:
    plan = launch_command(str(spec), ranks)
    done = subprocess.run(plan.argv, env=plan.env, capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def _weights(spec: Path) -> dict[str, torch.Tensor]:
    ckpt = Path(json.loads(spec.read_text())["checkpoint"]["dir"])
    tag = latest_tag(str(ckpt))
    assert tag == f"step{STEPS:08d}"
    return torch.load(ckpt / tag / "mp_rank_00_model_states.pt", weights_only=False)["module"]


def _metrics(spec: Path) -> list[dict]:
    ckpt = Path(json.loads(spec.read_text())["checkpoint"]["dir"])
    return pq.read_table(ckpt / "metrics.parquet").to_pylist()


@pytest.fixture(scope="module")
def reference(store: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = _spec(tmp_path_factory.mktemp("launch"), store, "one")
    _run(spec, 1)
    return spec


def test_launch_command() -> None:
    plan = launch_command("/w/spec.json", 3, master_port=29999)
    assert plan.argv[1:3] == ["-m", "deepspeed.launcher.runner"]
    assert plan.argv[-3:] == ["--module", "model.train.main", "/w/spec.json"]
    assert "--num_gpus" in plan.argv and plan.argv[plan.argv.index("--num_gpus") + 1] == "3"
    assert plan.env["DS_ACCELERATOR"] == "cpu" and plan.env["OMP_NUM_THREADS"] == "1"
    tr = launch_command("/w/spec.json", 2, launcher="torchrun", master_port=29999)
    assert tr.argv[1:3] == ["-m", "torch.distributed.run"] and tr.argv[-3:] == [
        "-m",
        "model.train.main",
        "/w/spec.json",
    ]
    with pytest.raises(ValueError, match="hostfile needs launcher 'deepspeed'"):
        launch_command("/w/spec.json", 2, launcher="torchrun", hostfile="/w/hosts")


@pytest.mark.slow
def test_one_and_two_ranks_agree(reference: Path, store: dict, tmp_path: Path) -> None:
    spec = _spec(tmp_path, store, "two")
    _run(spec, 2)
    one, two = _metrics(reference), _metrics(spec)
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, STEPS + 1))
    assert [r["tokens"] for r in one] == [r["tokens"] for r in two]
    assert two[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-12, abs=0)  # same weights, same batch
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    assert one[-1]["loss"] < one[0]["loss"]  # it learns
    w1, w2 = _weights(reference), _weights(spec)
    for name, t in w1.items():
        torch.testing.assert_close(w2[name], t, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_kill_and_resume_is_bit_identical(reference: Path, store: dict, tmp_path: Path) -> None:
    spec = _spec(tmp_path, store, "killed")
    ckpt = tmp_path / "killed" / "ckpt"
    plan = launch_command(str(spec), 1)
    proc = subprocess.Popen(
        plan.argv, env=plan.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 400
    try:
        while latest_tag(str(ckpt)) is None:
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.time() < deadline, "no checkpoint within the time limit"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_at = latest_tag(str(ckpt))
    assert killed_at is not None and killed_at < f"step{STEPS:08d}"  # killed mid-run
    _run(spec, 1)  # resumes from the last checkpoint
    ref, got = _weights(reference), _weights(spec)
    assert ref.keys() == got.keys()
    for name, t in ref.items():
        assert torch.equal(got[name], t), name
    assert sorted(p.name for p in ckpt.glob("step*")) == ["step00000004", "step00000006"]  # keep: 2
    strip = [{k: v for k, v in r.items() if k != "tok_s"} for r in _metrics(reference)]
    assert [{k: v for k, v in r.items() if k != "tok_s"} for r in _metrics(spec)] == strip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_bf16_one_and_two_ranks(store: dict, tmp_path: Path) -> None:
    """NCCL, bf16 parameters with Muon at ZeRO 0, and AdamW under ZeRO-1 with DeepSpeed's bf16, on 1 and 2 GPUs."""
    over = {"precision": "bf16", "batch": {"global_batch": 4, "micro_batch": 2}}
    runs = {
        "one": (1, {}),
        "two": (2, {}),
        "zero1": (2, {"optim": {"name": "adamw", "lr": 0.01}, "zero_stage": 1}),
    }
    losses = {}
    for name, (ranks, extra) in runs.items():
        if ranks > torch.cuda.device_count():
            continue
        spec = _spec(tmp_path, store, name, **{**over, **extra})
        plan = launch_command(str(spec), ranks, device="cuda")
        done = subprocess.run(plan.argv, env=plan.env, capture_output=True, text=True, timeout=540)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        rows = _metrics(spec)
        assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
        assert all(r["loss"] == r["loss"] for r in rows)  # finite
        losses[name] = [r["loss"] for r in rows]
    if "two" in losses:  # same first batch, same weights: equal up to bf16 reduction order
        assert losses["two"][0] == pytest.approx(losses["one"][0], rel=1e-3)
