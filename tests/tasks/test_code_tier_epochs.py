"""A tier's epochs flow from `code_quality` through `repo_samples` into `pack`'s counts and mixture report."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from flows.engine import Engine
from flows.validate import load_pipeline

HIGH, MID = 3.0, 1.0


def _run(root: Path, rule: str) -> dict[str, tuple[dict, Path]]:
    nodes = {
        "code": {
            "uses": "demo_corpus",
            "params": {"parts": ["stdlib_code"], "max_items_per_part": 40, "items_per_shard": 20},
        },
        "tiers": {
            "uses": "code_quality",
            "inputs": ["code"],
            "params": {"tiers": {"high": {"epochs": HIGH}, "mid": {"epochs": MID}}},
        },
        "repos": {"uses": "repo_samples", "inputs": ["tiers"], "params": {"tier_rule": rule}},
        "tok": {
            "uses": "tokenizer_train",
            "inputs": ["code"],
            "params": {"vocab_size": 400, "sample_docs": 20},
        },
        "packed": {"uses": "pack", "inputs": ["tok", "repos"], "params": {"seq_len": 512}},
    }
    spec = {"name": "tiers", "workdir": str(root / ".arcflow"), "nodes": nodes}
    spec["executor"] = {"n_workers": 1, "processes": False}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))
    engine = Engine(pipeline)
    out = {}
    try:
        for n in pipeline.order:
            _, manifest = engine.run_node(n)
            out[n] = (manifest, root / ".arcflow" / "outputs" / manifest["fingerprint"])
    finally:
        engine.close()
    return out


def _rows(out: Path) -> pl.DataFrame:
    return pl.concat([pl.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))], how="diagonal_relaxed")


def _mix(out: Path) -> list[dict]:
    for path in sorted((out / "reports").glob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, list) and data and "configured_epochs" in data[0]:
            return data
    raise AssertionError(f"no mixture report in {out / 'reports'}")


@pytest.mark.parametrize("rule", ["max", "mean"])
def test_tier_epochs_reach_pack(tmp_path: Path, rule: str) -> None:
    run = _run(tmp_path, rule)
    files = _rows(run["tiers"][1])
    assert set(files["tier"]) >= {"high", "mid"}  # both tiers present in the real stdlib files
    tier_of = dict(zip(files["id"], files["tier"], strict=True))
    epochs_of = dict(zip(files["id"], files["epochs"], strict=True))
    chars_of = dict(zip(files["id"], files["text"].str.len_chars(), strict=True))
    samples = _rows(run["repos"][1])
    for members, tier, epochs in zip(samples["member_ids"], samples["tier"], samples["epochs"], strict=True):
        if rule == "max":
            top = "high" if any(tier_of[m] == "high" for m in members) else "mid"
            assert (tier, epochs) == (top, HIGH if top == "high" else MID)
        else:  # weighted by characters (the header and path lines are weighted too, so allow a little)
            want = sum(epochs_of[m] * chars_of[m] for m in members) / sum(chars_of[m] for m in members)
            assert epochs == pytest.approx(want, rel=0.02)
    # pack: every sample appears floor(e) + Bernoulli(frac(e)) times; its report shows the epochs per tier
    mix = {row["bucket"]: row for row in _mix(run["packed"][1])}
    packed = _rows(run["packed"][1])
    copies = packed.explode("doc_ids", "doc_starts").filter(pl.col("doc_starts") == 0)["doc_ids"]
    counted = copies.value_counts()
    n_copies = dict(zip(counted["doc_ids"], counted["count"], strict=True))
    for sample_id, epochs in zip(samples["id"], samples["epochs"], strict=True):
        assert int(epochs) <= n_copies.get(sample_id, 0) <= int(epochs) + (epochs % 1 > 0)
    if rule == "max":
        assert mix["high"]["configured_epochs"] == mix["high"]["reached_epochs"] == HIGH
        assert mix["mid"]["configured_epochs"] == mix["mid"]["reached_epochs"] == MID
    else:
        # a few large samples: each draws floor(e) + Bernoulli(frac(e)) copies, so only the configured figure
        # (token-weighted mean of the samples' epochs) is fixed; the reached one lies between floor and ceil
        for row in mix.values():
            assert MID <= row["configured_epochs"] <= HIGH and MID <= row["reached_epochs"] <= HIGH
        assert mix["high"]["configured_epochs"] > MID  # high files' up-sampling reaches their samples
