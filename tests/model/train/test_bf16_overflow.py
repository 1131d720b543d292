"""The entry point's DeepSpeed config (``model.train.main.ds_config``) and what its bf16 setting means for a bad step.

bf16 runs at ZeRO 1/2 turn DeepSpeed's ``bf16.check_grad_overflow`` off (bf16 has no loss scale, and the check made
the host wait every step; docs/TRAIN_SPEED.md, round 7). DeepSpeed then no longer skips a step whose gradients are
not finite: the entry point must stop on that step's gradient norm, before the step is logged or checkpointed. The
slow test makes that happen for real on CPU (bf16 parameters, DeepSpeed ZeRO-1 on its CPU accelerator over gloo): a
gradient hook turns one gradient of step 2 into NaN while its loss stays finite."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.train.main import ds_config

ROOT = Path(__file__).resolve().parents[3]


def test_bf16_zero_config_skips_the_overflow_check_and_the_throughput_timer() -> None:
    cfg = ds_config(
        global_batch=32, micro_batch=8, world=1, zero_stage=1, clip=1.0, optimizer="adamw", precision="bf16"
    )
    assert cfg["bf16"] == {"enabled": True, "check_grad_overflow": False}
    assert cfg["timers"] == {"throughput": {"enabled": False}}
    assert cfg["gradient_accumulation_steps"] == 4 and cfg["gradient_clipping"] == 1.0
    assert cfg["zero_optimization"] == {"stage": 1}
    # ZeRO 0 (DeepSpeed's bf16 optimizer would flatten Muon's matrices) and fp32 runs have no bf16 section
    for zero, precision in ((0, "bf16"), (1, "fp32"), (2, "fp32")):
        cfg = ds_config(
            global_batch=4,
            micro_batch=1,
            world=2,
            zero_stage=zero,
            clip=1.0,
            optimizer="muon",
            precision=precision,
        )
        assert "bf16" not in cfg and cfg["gradient_accumulation_steps"] == 2
        assert cfg["gradient_clipping"] == 0.0  # Muon: the raw-gradient clip is ours, not DeepSpeed's


def test_deepspeed_reads_the_setting() -> None:
    """DeepSpeed's own config model takes the key (a renamed or dropped key would fail here, not silently)."""
    from deepspeed.runtime.precision_config import get_bfloat16_config

    cfg = ds_config(
        global_batch=2, micro_batch=1, world=1, zero_stage=1, clip=1.0, optimizer="adamw", precision="bf16"
    )
    parsed = get_bfloat16_config(cfg)
    assert parsed.enabled and parsed.check_grad_overflow is False


# runs the entry point with a NaN put into one gradient of step 2 (its second optimizer step's first micro-batch)
_NAN_AT_STEP_2 = """
import sys
import model.train.main as m

build = m._build_model
forwards = [0]


def nan_in_step_2(spec, cfg, cuda):
    model = build(spec, cfg, cuda)
    model.register_forward_pre_hook(lambda mod, args: forwards.__setitem__(0, forwards[0] + 1))
    # 2 micro-batches per step: forward 3 is step 2's first; the loss stays finite, the final norm's gradient is NaN
    model.model.norm.weight.register_hook(lambda g: g * float("nan") if forwards[0] == 3 else g)
    return model


m._build_model = nan_in_step_2
if len(sys.argv) > 2 and sys.argv[2] == "old-combine":
    # DeepSpeed before combine_grad_norm_groups: the per-group norms (a NaN one masked to -1) L2-combined as they
    # are, so the -1 counts as 1.0 and the global norm is finite (only 0.19.8 is installed here: simulated)
    import torch
    import deepspeed.runtime.zero.stage_1_and_2 as s12

    s12.combine_grad_norm_groups = lambda norms, norm_type=2: torch.linalg.vector_norm(
        torch.stack([torch.as_tensor(n, dtype=torch.float) for n in norms]), ord=norm_type
    )
sys.exit(m.main(sys.argv[1:2]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("combine", ["installed", "old-combine"])
def test_non_finite_gradient_stops_before_its_checkpoint_in_bf16_zero1(
    store: dict, tmp_path: Path, combine: str
) -> None:
    """``old-combine``: DeepSpeed's -1 group-norm sentinel folded into a finite global norm (older DeepSpeed);
    the entry point still stops on the step (the per-group norms are checked)."""
    spec = {
        "model": {"flavour": "debug"},
        "data": {"shards": [str(store["packed"])], "tokenizer": str(store["tokenizer"])},
        "batch": {"global_batch": 2, "micro_batch": 1},
        "optim": {"name": "adamw", "lr": 1e-3},
        "schedule": {"floor": 0},
        "zero_stage": 1,
        "precision": "bf16",
        "steps": 4,
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "every": 1},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    script = tmp_path / "nan_step2.py"
    script.write_text(_NAN_AT_STEP_2)
    done = subprocess.run(
        [sys.executable, str(script), str(path), combine],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode != 0
    err = done.stderr
    assert "FloatingPointError: step 2: loss " in err and "last checkpoint" in err, err[-4000:]
    # the loss of step 2 was finite: the gradient norm is what stopped it (DeepSpeed's check no longer skips it)
    loss = err.split("FloatingPointError: step 2: loss ")[1].split(" /")[0]
    assert math.isfinite(float(loss)), err[-2000:]
    assert "grad norm inf" in err or "grad norm nan" in err, err[-2000:]
    ckpt = tmp_path / "ckpt"
    assert (ckpt / "latest").read_text() == "step00000001"
    assert not (ckpt / "step00000002").exists()
    states = list((ckpt / "step00000001").glob("*model_states.pt"))
    assert states, sorted(p.name for p in (ckpt / "step00000001").iterdir())
    module = torch.load(states[0], map_location="cpu", weights_only=False)["module"]
    assert module and all(torch.isfinite(t).all() for t in module.values() if t.is_floating_point())


def test_deepspeed_overflow_sentinel_is_not_finite() -> None:
    """DeepSpeed masks a NaN/inf gradient norm to -1: the entry point treats it as it treats NaN and inf."""
    from model.zero_grad_norm import is_invalid_norm

    assert is_invalid_norm(-1.0) and is_invalid_norm(torch.tensor(-1.0))
    assert is_invalid_norm(float("inf")) and is_invalid_norm(float("nan"))
    assert not is_invalid_norm(0.0) and not is_invalid_norm(torch.tensor(3.5, dtype=torch.float64))
