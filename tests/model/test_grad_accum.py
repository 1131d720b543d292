"""model/grad_accum.py: gradient accumulation with foreach adds gives autograd's own gradients bit for bit, in
plain PyTorch (fp32 and bf16, an unused layer included) and under DeepSpeed ZeRO-1 in bf16 (the entry point's config,
CPU accelerator over gloo, in a subprocess: the weights after two optimizer steps of three micro-batches)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.config import ModelConfig
from model.glm import GLMForCausalLM
from model.grad_accum import ForeachGradAccumulation

ROOT = Path(__file__).resolve().parents[2]


def _grads_after(
    model: GLMForCausalLM, batches: list[torch.Tensor], mtp: list[float]
) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    for ids, w in zip(batches, mtp, strict=True):
        model(ids, labels=ids, mtp_weight=w, return_logits=False).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_foreach_accumulation_equals_autograd(debug_cfg: ModelConfig, dtype: torch.dtype) -> None:
    base = GLMForCausalLM(debug_cfg).to(dtype)
    fast = copy.deepcopy(base)
    acc = ForeachGradAccumulation(
        fast, max_numel=1 << 14
    )  # the debug model's large tensors keep autograd's add
    assert 0 < len(acc.params) < len(list(fast.parameters()))
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, debug_cfg.vocab_size, (2, 16), generator=gen) for _ in range(3)]
    mtp = [0.0, 0.3, 0.0]  # the MTP layer has no gradient in the first micro-batch, then one, then none again
    want = _grads_after(base, batches, mtp)
    got = _grads_after(fast, batches, mtp)
    assert acc.adds == 2  # micro-batches 2 and 3
    assert want.keys() == got.keys()
    for name, grad in want.items():
        assert torch.equal(got[name], grad), name
    acc.remove()
    _grads_after(fast, batches, mtp)
    assert acc.adds == 2


def test_gradients_taken_during_backward_are_refused(debug_cfg: ModelConfig) -> None:
    """A hook that takes every gradient as it is made (what ZeRO 2 / overlap_comm do) would lose micro-batches: the
    accumulation says so instead."""
    model = GLMForCausalLM(debug_cfg)
    ForeachGradAccumulation(model)
    ids = torch.randint(0, debug_cfg.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    model(ids, labels=ids, return_logits=False).loss.backward()
    for p in model.parameters():
        p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    with pytest.raises(RuntimeError, match="taken during it"):
        model(ids, labels=ids, return_logits=False).loss.backward()


_DS_SCRIPT = r"""
import json, os, socket, sys
import torch
sys.path.insert(0, os.environ["ROOT"])
import deepspeed
from model.config import model_config
from model.glm import GLMForCausalLM
from model.grad_accum import ForeachGradAccumulation
from model.train.main import _skip_op_builds, ds_config

_skip_op_builds()  # as the entry point on CPU: no JIT build of DeepSpeed's shared-memory all-reduce (unused here)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
deepspeed.init_distributed(dist_backend="gloo", verbose=False)
torch.set_num_threads(1)
cfg = model_config("debug")
gen = torch.Generator().manual_seed(0)
batches = [torch.randint(0, cfg.vocab_size, (2, 16), generator=gen) for _ in range(3)]
out = {}
for foreach in (False, True):
    model = GLMForCausalLM(cfg, seed=0)
    acc = ForeachGradAccumulation(model, max_numel=1 << 14) if foreach else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    config = ds_config(global_batch=6, micro_batch=2, world=1, zero_stage=1, clip=1.0, optimizer="adamw",
                       precision="bf16")
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=opt, config=config)
    for _ in range(2):
        for ids in batches:
            engine.backward(engine(ids, labels=ids, return_logits=False).loss)
            engine.step()
    out[foreach] = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    if acc is not None:
        adds = acc.adds
same = all(torch.equal(out[True][n], t) for n, t in out[False].items())
moved = any(not torch.equal(out[False][n], t) for n, t in GLMForCausalLM(cfg, seed=0).to(torch.bfloat16).float().named_parameters() if n in out[False])
print(json.dumps({"same": same, "adds": adds, "moved": moved}))
"""


@pytest.mark.slow
def test_foreach_accumulation_under_deepspeed_zero1_bf16() -> None:
    """Two DeepSpeed ZeRO-1 bf16 steps of three micro-batches (the entry point's config, clipping on): the same
    weights bit for bit with and without the foreach accumulation (about 20 s on CPU)."""
    pytest.importorskip("deepspeed")
    env = {**os.environ, "ROOT": str(ROOT), "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", _DS_SCRIPT], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"same": True, "adds": 4, "moved": True}, got
