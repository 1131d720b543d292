"""The README's main job: the default pipeline.yaml validates, and runs end to end then fully cached."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.validate import load_pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_default_pipeline_validates() -> None:
    p = load_pipeline(str(ROOT / "pipeline.yaml"))
    assert {"demo", "web_buckets", "web_semdedup", "code_fim", "pretrain_4k", "sft", "agent"} <= set(p.nodes)


@pytest.mark.slow
def test_default_pipeline_runs_then_is_cached(tmp_path: Path) -> None:
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(tmp_path / "prefect"))
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "run",
        "-f",
        str(ROOT / "pipeline.yaml"),
        "--set",
        f"workdir={tmp_path / 'store'}",
    ]
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    n = len(load_pipeline(str(ROOT / "pipeline.yaml")).nodes)
    assert f"{n} node(s), {n} reused, 0 computed" in " ".join(second.stdout.split())
    refs = json.loads((tmp_path / "store" / "refs" / "arcflow-demo.json").read_text())
    for node, ref in refs.items():
        manifest = json.loads(
            (tmp_path / "store" / "outputs" / ref["fingerprint"] / "manifest.json").read_text()
        )
        c = manifest["counts"]
        assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"], node
    pack = json.loads(
        (tmp_path / "store" / "outputs" / refs["pretrain_4k"]["fingerprint"] / "manifest.json").read_text()
    )
    assert pack["counts"]["out"] > 0 and pack["output_type"] == "packed_tokens"
