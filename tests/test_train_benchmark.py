"""benchmarks/train.py's bookkeeping: the two MFU conventions (ours, half the causal attention matrix, and PaLM's,
the whole matrix), the headline's DeepSpeed config (the training entry point's own), and the headline table; the
slow test rehearses ``--sections headline`` on CPU (debug flavour, DeepSpeed on its CPU accelerator)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import train
from model.config import flops_per_token, model_config
from model.train.main import ds_config

ROOT = Path(__file__).resolve().parents[1]


def test_small_step_flops_both_conventions() -> None:
    cfg = model_config("small")
    ours = train.step_flops(cfg, 8, None, False) * 4  # the headline step: 4 micro-batches of 8 x 4096
    palm = train.step_flops(cfg, 8, None, False, whole_matrix=True) * 4
    tokens = 4 * 8 * 4096
    attn_per_token = (
        6 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * 4096
    )  # half the matrix
    assert ours == pytest.approx(169.23e12, rel=1e-4)  # docs/TRAIN_SPEED.md's 169 TFLOP per step
    assert palm - ours == pytest.approx(attn_per_token * tokens)  # PaLM: 12 * L * H * hd * S per token
    assert palm == pytest.approx(228.60e12, rel=1e-4)


def test_packed_rows_double_only_the_attention_term() -> None:
    cfg = model_config("small")
    docs = [[1000, 3000, 96], [4096]]
    ours = train.step_flops(cfg, 2, docs, True)
    palm = train.step_flops(cfg, 2, docs, True, whole_matrix=True)
    layers = cfg.num_hidden_layers + 1  # the MTP layer attends too
    attn = 6 * layers * cfg.num_attention_heads * cfg.head_dim * sum(n * n for row in docs for n in row)
    assert ours - attn == pytest.approx(flops_per_token(cfg, 0, with_mtp=True) * 2 * 4096)  # the matmul part
    assert palm == pytest.approx(ours + attn)  # each document's whole matrix: its attention counted twice


def test_headline_uses_the_entry_points_deepspeed_config() -> None:
    cfg = train.entry_ds_config(8, 4)
    assert cfg == ds_config(
        global_batch=32, micro_batch=8, world=1, zero_stage=1, clip=1.0, optimizer="adamw", precision="bf16"
    )
    assert cfg["bf16"]["check_grad_overflow"] is False and cfg["timers"]["throughput"]["enabled"] is False
    more = train.entry_ds_config(8, 4, {"immediate_grad_update": True})  # --ds-bf16 adds keys, keeps the rest
    assert more["bf16"] == {"enabled": True, "check_grad_overflow": False, "immediate_grad_update": True}
    assert cfg["bf16"] == {"enabled": True, "check_grad_overflow": False}  # not changed by the merge


def _row(name: str, tok_s: float, step: bool, **extra: object) -> dict:
    row = {"name": name, "tok_s": tok_s, "mfu": tok_s / 1e6, "mfu_palm": tok_s / 8e5, "ms": 1e5 / tok_s}
    row["peak_gib"] = 1.0
    return {**row, **({"step": "DeepSpeed ZeRO-1, the entry point's config"} if step else {}), **extra}


def test_headline_table_ratios_against_hf_of_the_same_kind() -> None:
    args = type("A", (), {"micro_batch": 8, "gas": 4})()
    rows = [
        _row("HF sdpa, experts=grouped_mm", 100_000, False),
        _row("ours fwd+bwd", 250_000, False),
        _row("HF sdpa, experts=grouped_mm", 80_000, True),
        _row("ours (same work as HF)", 200_000, True, packed=False, mtp=False),
        _row("ours as trained (packed rows, MTP)", 150_000, True, packed=True, mtp=True),
    ]
    table = train.headline_table("small", rows, args).splitlines()
    assert "MFU, PaLM convention (whole attention matrix)" in table[3]
    body = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table[5:]}
    assert body["ours fwd+bwd"][-1].rstrip(" |") == "2.50x"  # against HF forward + backward
    assert body["ours (same work as HF), full step"][-1].rstrip(" |") == "2.50x"  # against HF's full step
    assert body["ours as trained (packed rows, MTP), full step"][-1].rstrip(" |") == "other work"
    assert body["ours fwd+bwd"][2:4] == ["25.0%", "31.2%"]  # MFU, then the PaLM figure


@pytest.mark.slow
def test_headline_rehearsal_on_cpu(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/train.py", "--device", "cpu", "--sections", "headline", "--out", str(tmp_path),
         "--hf-sdpa", "default", "--hf-experts", "eager", "--micro-batch", "2", "--gas", "2", "--warmup", "1",
         "--iters", "3", "--r7-seq", "32"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "| ours (same work as HF), full step |" in done.stdout, done.stdout[-3000:]
    rows = json.loads((tmp_path / "train_bench.json").read_text())
    steps = [r for r in rows if r["section"] == "debug step"]
    assert [r["name"] for r in steps] == [
        "HF sdpa, experts=eager", "ours (same work as HF)", "ours as trained (packed rows, MTP)"
    ]  # fmt: skip
    for r in steps:  # both models under the entry point's config, each row with both MFU figures
        assert r["ds_config"]["bf16"] == {"enabled": True, "check_grad_overflow": False}
        assert r["ds_config"]["timers"] == {"throughput": {"enabled": False}}
        assert r["mfu_palm"] > r["mfu"] > 0
