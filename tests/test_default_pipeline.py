"""The README's main job: the default pipeline.yaml validates, its training stages fit the data it makes, and it runs
end to end then fully cached.

The run is the session's shared default run (``tests/flows/_determinism.py: default_run``): the default pipeline
from a clone of this repository, shrunk by ``SMALL_DEFAULT`` (fewer documents, 256 / 1024-token rows, the training
stages at the `debug` flavour for a few steps) so that CI runs it once for this test, the determinism test and the
deployment test together. The full-size run (`tiny` stages on 4K and 32K rows) is the README's command; what CI can
check of it without running it is below: that it validates and that its model fits its tokenizer and rows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.validate import load_pipeline

ROOT = Path(__file__).resolve().parents[1]


def test_default_pipeline_validates() -> None:
    p = load_pipeline(str(ROOT / "pipeline.yaml"))
    assert {"demo", "web_buckets", "web_semdedup", "code_fim", "pretrain_4k", "sft_chats", "agent"} <= set(
        p.nodes
    )
    uses = {name: node.uses for name, node in p.nodes.items()}
    assert [uses[n] for n in ("pretrain", "midtrain", "sft")] == ["pretrain", "midtrain", "sft"]
    assert (uses["sft_chats"], uses["agent"]) == ("generate_sft", "agent_trajectories")
    assert (uses["rl"], uses["rl_problems"]) == ("grpo", "problems")


def test_default_training_stages_fit_the_tokenizer_and_the_rows() -> None:
    """The full-size stages: the `tiny` model's vocabulary is the tokenizer's, its positions hold the 4K rows,
    midtrain continues pretrain on the 32K rows with a larger RoPE base, and SFT reads both chat nodes with the
    tokenizer and continues midtrain (CI trains the `debug` flavour on shorter rows instead)."""
    from model.config import model_config

    p = load_pipeline(str(ROOT / "pipeline.yaml"))
    nodes = p.nodes
    tiny = model_config(nodes["pretrain"].params.flavour)
    assert nodes["pretrain"].params.flavour == "tiny"
    assert tiny.vocab_size == nodes["tokenizer"].params.vocab_size
    assert tiny.max_position_embeddings >= nodes["pretrain_4k"].params.seq_len == 4096
    assert nodes["midtrain_32k"].params.seq_len == 32768
    assert nodes["pretrain"].inputs == ["pretrain_4k"]
    assert nodes["midtrain"].inputs == ["midtrain_32k", "pretrain"]
    assert nodes["midtrain"].params.init_from == "pretrain"
    assert nodes["midtrain"].params.rope_theta > tiny.rope_theta
    assert set(nodes["sft"].inputs) == {"sft_chats", "agent", "tokenizer", "midtrain"}
    assert nodes["sft"].params.init_from == "midtrain"
    assert nodes["sft"].params.seq_len <= tiny.max_position_embeddings
    # the tiny GRPO stage starts from the SFT checkpoint on procedural arithmetic, with held-out problems
    assert nodes["rl"].inputs == ["sft", "rl_problems"]
    assert nodes["rl"].params.val_problems > 0
    assert "rl" in nodes["eval"].inputs and "rl" in nodes["eval"].params.problems.checkpoints


@pytest.mark.slow
@pytest.mark.default_runs("A")
@pytest.mark.timeout(2400)
def test_default_pipeline_runs_then_is_cached(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.flows._determinism import default_run, run_cli

    run = default_run(tmp_path_factory)
    assert not run.failure, run.failure
    n = len(load_pipeline(str(run.pipeline)).nodes)
    assert f"{n} node(s), 0 reused, {n} computed" in " ".join(run.output.split()), run.output[-3000:]
    second = run_cli(
        run.pipeline, run.overrides, cwd=run.folder, prefect_home=run.prefect_home, timeout_s=600
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"{n} node(s), {n} reused, 0 computed" in " ".join(second.stdout.split()), second.stdout[-3000:]

    store = run.workdir
    refs = json.loads((store / "refs" / "arcflow-demo.json").read_text())
    assert len(refs) == n
    manifests = {
        node: json.loads((store / "outputs" / ref["fingerprint"] / "manifest.json").read_text())
        for node, ref in refs.items()
    }
    for node, manifest in manifests.items():
        c = manifest["counts"]
        assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"], node
    pack = manifests["pretrain_4k"]
    assert pack["counts"]["out"] > 0 and pack["output_type"] == "packed_tokens"
    # each training stage's checkpoint continues the one before it (lineage.json names the parent's content)
    for stage, parent in (("pretrain", None), ("midtrain", "pretrain"), ("sft", "midtrain")):
        out = store / "outputs" / refs[stage]["fingerprint"]
        assert manifests[stage]["output_type"] == "checkpoint", stage
        assert (out / "config.json").is_file() and (out / "model.safetensors").is_file(), stage
        lineage = json.loads((out / "lineage.json").read_text())
        assert (lineage["parent"] or {}).get("node") == parent, (stage, lineage["parent"])
        if parent is not None:
            assert lineage["parent"]["content_hash"] == manifests[parent]["content_hash"], stage
    # the GRPO stage continues the SFT checkpoint: a reward per step, the validation pass rate before and after
    import pyarrow.parquet as pq

    rl = store / "outputs" / refs["rl"]["fingerprint"]
    assert manifests["rl"]["output_type"] == "checkpoint" and (rl / "model.safetensors").is_file()
    assert json.loads((rl / "lineage.json").read_text())["policy"] == {
        "node": "sft", "content_hash": manifests["sft"]["content_hash"],
    }  # fmt: skip
    steps = pq.read_table(rl / "metrics.parquet").to_pylist()
    assert [r["step"] for r in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 1
    assert all(0.0 <= r["reward"] <= 1.0 for r in steps)
    evaluation = json.loads((rl / "eval.json").read_text())
    assert evaluation["val_problems"] > 0
    for key in ("val_pass_rate_before", "val_pass_rate_after"):
        assert 0.0 <= evaluation[key] <= 1.0, evaluation
    reports = {p.stem for p in (rl / "reports").glob("*.json")}
    assert {"validation-pass-rate", "rl-metrics", "rewards"} <= reports, reports
    # the eval compares the four checkpoints on held-out loss, and the chat checkpoints on held-out problems
    rows = pq.read_table(store / "outputs" / refs["eval"]["fingerprint"] / "part-00000.parquet").to_pylist()
    scored = {(r["task"], r["checkpoint"]) for r in rows if r["source"] == "all"}
    assert scored == {
        ("loss", "pretrain"), ("loss", "midtrain"), ("loss", "sft"), ("loss", "rl"), ("problems", "sft"),
        ("problems", "rl"),
    }, scored  # fmt: skip
