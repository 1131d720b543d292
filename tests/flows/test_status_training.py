"""`arcflow status` and `arcflow show` on a training stage whose run was killed (kill -9) mid-stage: its output
folder holds no manifest and no shard marker, only the DeepSpeed checkpoints under ``_train/ckpt/`` that the next
run resumes from. They say ``partial (step 4/40)``, not ``missing / never run``.

The store is real: the inputs (demo corpus, tokenizer, packed tokens) are built by the engine, and the pretrain
node's folder (at the fingerprint `status` plans it at) is laid out as the killed run leaves it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app

STEPS = 40


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline with its inputs to ``pretrain`` built; ``pretrain`` itself never completed."""
    from flows.engine import Engine
    from flows.validate import load_pipeline

    root = tmp_path_factory.mktemp("train_status")
    nodes = {
        "demo": {"uses": "demo_corpus", "params": {"parts": ["licenses"], "max_items_per_part": 20}},
        "tokenizer": {
            "uses": "tokenizer_train",
            "inputs": ["demo"],
            "params": {"vocab_size": 300, "sample_docs": 20, "heldout_docs": 0},
        },
        "packed": {"uses": "pack", "inputs": ["tokenizer", "demo"], "params": {"seq_len": 64}},
        "pretrain": {
            "uses": "pretrain",
            "inputs": ["packed"],
            "params": {"steps": STEPS, "batch": {"global_batch": 4, "micro_batch": 2}, "checkpoint_every": 4},
        },
    }
    path = root / "pipeline.yaml"
    spec = {"name": "train-status", "workdir": str(root / "store"), "seed": 7, "nodes": nodes}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    engine = Engine(load_pipeline(str(path), []))
    try:
        for node in ("demo", "tokenizer", "packed"):
            engine.run_node(node)
    finally:
        engine.close()
    return path


def _pretrain_dir(path: Path) -> Path:
    """The pretrain node's output folder, at the fingerprint a run computes it at (emptied of earlier layouts)."""
    import shutil

    from flows.engine import Engine
    from flows.validate import load_pipeline

    engine = Engine(load_pipeline(str(path), []))
    try:
        (plan,) = [x for x in engine.plan() if x.node == "pretrain"]
        assert plan.status == "missing" and plan.fingerprint, plan
        out = Path(engine.store.output_dir(plan.fingerprint))
    finally:
        engine.close()
    shutil.rmtree(out, ignore_errors=True)
    # the engine makes it before the kind runs; a training stage writes no marker in it
    (out / "_markers").mkdir(parents=True)
    return out


def _killed_at_step_4(out: Path, *, spec: bool = True) -> None:
    """What `arcflow run` killed with -9 between the checkpoints of steps 4 and 8 leaves: the launcher's spec, the
    complete checkpoint of step 4 named by ``latest``, the half-written one of step 8 (``latest`` not moved)."""
    work = out / "_train"
    ckpt = work / "ckpt"
    for tag in ("step00000004", "step00000008"):
        (ckpt / tag).mkdir(parents=True)
        (ckpt / tag / "mp_rank_00_model_states.pt").write_bytes(b"\0" * 16)
    (ckpt / "step00000004" / "metrics.parquet").write_bytes(b"PAR1")
    (ckpt / "latest").write_text("step00000004")
    if spec:
        (work / "spec.json").write_text(
            json.dumps({"steps": STEPS, "checkpoint": {"dir": str(ckpt), "every": 4, "keep": 2}})
        )
    (work / "launch.log").write_text("step 5 ...\n")


def _status(runner: CliRunner, path: Path) -> tuple[str, str]:
    result = runner.invoke(app, ["status", "-f", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.stdout.splitlines() if "pretrain" in line]
    return row, _flat(result.stdout)


def test_status_and_show_a_killed_training_stage(built: Path) -> None:
    runner = CliRunner()
    before, _ = _status(runner, built)
    assert "missing" in before and "never run" in before  # nothing of a run there yet

    out = _pretrain_dir(built)
    _killed_at_step_4(out)
    row, flat = _status(runner, built)
    assert "partial (step 4/40)" in row and "missing" not in row and "never run" not in row, flat
    assert "checkpoint at step 4 of 40; the next run resumes there" in flat

    shown = runner.invoke(app, ["show", "pretrain", "-f", str(built)], env={"COLUMNS": "200"})
    assert shown.exit_code == 1
    said = _flat(shown.stderr)
    assert (
        "pretrain has no stored output (partial (step 4/40): checkpoint at step 4 of 40; the next run "
        in said
    )
    assert "`arcflow run --to pretrain` finishes it" in said and "never run" not in said, said

    # while a run holds the store's lock (a live pid): it is computing the rest now
    lock = built.parent / "store" / "lock"
    lock.write_text(f"arcflow pid {os.getpid()} since 2026-12-01 06:00:00\n")
    try:
        _, live = _status(runner, built)
        assert (
            f"checkpoint at step 4 of 40; a run is computing the rest now (arcflow pid {os.getpid()}" in live
        )
    finally:
        lock.write_text("arcflow pid 999999999 since 2026-12-01 06:00:00\n")  # killed with -9: its pid gone
    _, gone = _status(runner, built)
    assert "the next run resumes there" in gone


def test_status_steps_from_params_and_before_the_first_checkpoint(built: Path) -> None:
    runner = CliRunner()
    # no spec.json beside the checkpoint: the total steps come from the node's params
    out = _pretrain_dir(built)
    _killed_at_step_4(out, spec=False)
    row, flat = _status(runner, built)
    assert "partial (step 4/40)" in row and "checkpoint at step 4 of 40" in flat, flat

    # killed before its first checkpoint was complete: nothing to resume, but it ran
    out = _pretrain_dir(built)
    _killed_at_step_4(out)
    (out / "_train" / "ckpt" / "latest").unlink()
    row, flat = _status(runner, built)
    assert "missing" in row and "never run" not in row and "partial" not in row, flat
    assert "a run started it and stopped before its first checkpoint; the next run starts it over" in flat


def test_training_work_folders_match_the_kinds() -> None:
    from flows.status_view import TRAIN_WORK
    from tasks import _grpo_run, _train_run

    assert set(TRAIN_WORK) == {_train_run.WORK, _grpo_run.WORK}


def test_training_progress_of_a_grpo_folder(tmp_path: Path) -> None:
    from flows.status_view import training_progress

    assert training_progress(str(tmp_path)) is None
    ckpt = tmp_path / "_grpo" / "ckpt"
    (ckpt / "step00000012").mkdir(parents=True)
    (ckpt / "latest").write_text("step00000012")
    got = training_progress(str(tmp_path), type("P", (), {"steps": 20, "checkpoint_every": 6})())
    assert (got.step, got.total, got.every) == (12, 20, 6)
    assert got.label("missing") == "partial (step 12/20)"
