"""The runs that tests/model/train/test_zero.py checks, built in their own process: ``python -m
tests.model.train._zero_build FOLDER RESULT``.

The store of tests/model/train/conftest.py (a BPE tokenizer node and a pack node), then Muon under the real
DeepSpeed launcher on CPU (2 gloo ranks) at ZeRO 0, 1 and 2; ZeRO 2 in two launches: stopped after step 3 (a
checkpoint there), then resumed to the end (the Muon momentum comes back from each rank's file, the AdamW part from
DeepSpeed's partitions). Four launches are a few minutes of mostly single-core work, so tests/conftest.py starts
them in the background when the session starts (tests/_background.py); RESULT (a pickle) holds each stage's
checkpoint folder and the tag the stopped ZeRO-2 launch left.
"""

from __future__ import annotations

import json
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

from model.train.checkpoint import latest_tag
from model.train.launch import launch_command
from tests.model.train.conftest import write_store

STEPS = 5
CLIP = 0.5  # the debug model's raw gradient norm is 1.4-3.5 over these steps: every step is clipped
STOP = 3  # the first ZeRO-2 launch stops after this step


def _spec(tmp: Path, store: dict, zero: int) -> Path:
    spec = {
        "model": {"flavour": "debug"},
        "data": {"shards": [str(store["packed"])], "tokenizer": str(store["tokenizer"]), "seed": 5},
        "batch": {"global_batch": 4, "micro_batch": 1},  # 2 ranks x 2 micro-batches: accumulation too
        "optim": {"name": "muon", "lr": 0.01, "clip": CLIP},
        "schedule": {"warmup_steps": 1},
        "steps": STEPS,
        "zero_stage": zero,
        "checkpoint": {"dir": str(tmp / f"zero{zero}" / "ckpt")},
    }
    path = tmp / f"zero{zero}" / "spec.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(spec))
    return path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _launch(spec: Path) -> None:
    plan = launch_command(str(spec), 2)
    start, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run(plan.argv, env=plan.env, capture_output=True, text=True, timeout=600)
    wall, cpu = time.monotonic() - start, _children_cpu() - cpu
    print(f"{spec.parent.name}: launch ended {done.returncode} in {wall:.1f} s ({cpu:.1f} CPU-s)", flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"{spec} failed ({done.returncode}):\n{done.stdout[-4000:]}{done.stderr[-4000:]}")


def build(folder: Path) -> dict:
    """Each stage's checkpoint folder (``ckpt``: zero -> Path) and the latest tag after the stopped ZeRO-2 launch
    (``stopped_tag``)."""
    store = write_store(folder / "store" / "outputs")
    out: dict = {"ckpt": {}}
    for zero in (0, 1, 2):
        spec = _spec(folder, store, zero)
        if zero == 2:
            raw = json.loads(spec.read_text())
            spec.write_text(
                json.dumps({**raw, "stop_after": STOP, "checkpoint": {**raw["checkpoint"], "every": STOP}})
            )
            _launch(spec)
            out["stopped_tag"] = latest_tag(str(spec.parent / "ckpt"))
            spec.write_text(json.dumps(raw))
        _launch(spec)
        out["ckpt"][zero] = spec.parent / "ckpt"
    return out


if __name__ == "__main__":
    folder, result = Path(sys.argv[1]), Path(sys.argv[2])
    got = build(folder)
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_bytes(pickle.dumps(got))
    tmp.rename(result)  # the result appears whole, or not at all
