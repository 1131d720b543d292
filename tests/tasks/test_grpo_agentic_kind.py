"""The ``grpo`` kind with agentic rollouts (``rollout.strategy: agentic``), through the engine and the real DeepSpeed
launcher on CPU: the `debug` checkpoint plays the agent in multi-turn episodes (the agent loop, the real calculator,
the simulated user), the rules judge scores task completion, and a weighted ``format`` penalty (which a random
policy sometimes breaks) keeps some groups informative, so the update runs on agentic groups. Tasks: a `problems`
node (arithmetic rows; one no judge can check is quarantined) plus calculator and search tasks the kind generates;
a `files` node of pages (no prompt column) is the search tool's index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests._background import build_result

STEPS = 2
PAGES = ["the harbor lights glimmer over quartz", "maple leaves and falcons", "orbit of the prism lantern"]


def write(root: Path, ckpt: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ckpt, root / "policy", dirs_exist_ok=True)
    rows = [
        {"id": f"sum{i}", "prompt": f"Compute {i} + {2 * i + 3}.", "answer": str(3 * i + 3)} for i in range(6)
    ]
    # no check the judge could run (an instruction row without instructions): quarantined by the grpo kind
    rows.append({"id": "nochecks", "prompt": "Anything.", "answer": "-", "meta": {"reward": "instruction"}})
    (root / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pages = [{"text": t, "url": f"https://example.org/{i}"} for i, t in enumerate(PAGES)]
    (root / "pages.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pages))
    nodes = {
        "problems": {"uses": "problems", "params": {"jsonl": ["sums.jsonl"]}},
        "pages": {"uses": "files", "params": {"paths": ["pages.jsonl"], "url_field": "url"}},
        "rl_agent": {
            "uses": "grpo",
            "inputs": ["problems", "pages"],  # pages: no prompt column, so the search index
            "params": {
                "model_path": "policy",
                "val_problems": 2,
                "steps": STEPS,
                "rollout": {
                    "strategy": "agentic",
                    "group_size": 4,
                    "prompts_per_step": 2,
                    "max_rounds": 3,
                    "max_new_tokens": 12,
                    "truncated": "keep",
                },
                "agent": {
                    "tools": ["calculator", "search"],
                    "max_turns": 2,
                    "max_episode_tokens": 40,
                    "generate": {"calculator": 4, "search": 2},
                },
                "grpo": {"micro_batch": 16},
                "rewards": {"weights": {"format": 0.5}},
                "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
            },
        },
    }
    path = root / "pipeline.yaml"
    spec = {"name": "grpo-agentic", "workdir": str(root / "store"), "seed": 5, "nodes": nodes}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def done(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``write`` with the `debug` checkpoint and ``run`` of it, built in the background from the session's start
    (tests/tasks/_grpo_build.py)."""
    return build_result(tmp_path_factory, "grpo")["agentic"]


@pytest.mark.background_build("grpo")
def test_grpo_step_on_agentic_groups(done: tuple[Path, dict]) -> None:
    path, res = done
    manifest = res["rl_agent"]["manifest"]
    # 7 problem rows + 4 generated calculator and 2 search tasks (the pages are the index, not problems); the row
    # without checks cannot be judged
    assert manifest["counts"] == {"in": 13, "kept": 12, "dropped": 0, "quarantined": 1, "out": 1}
    assert list(manifest["quarantine_errors"]) == ["reward_instruction_no_checks"]
    out = path.parent / "store" / "outputs" / manifest["fingerprint"]
    ev = json.loads((out / "eval.json").read_text())
    assert ev["steps"] == STEPS and ev["val_problems"] == 2 and ev["val_pass_rate_before"] is not None
    task, weighted = ev["rewards"]
    assert (task["reward"], task["role"], task["errors"]) == ("agent_task", "task", 0)
    assert (weighted["reward"], weighted["role"]) == ("format", "weighted")
    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    trained = [m for m in metrics if m["kept_groups"] > 0]
    assert trained and all(m["grad_norm"] > 0 and m["kl_to_start"] >= 0 for m in trained), metrics
    # the scored episodes: every token has a mask entry; observations / user turns carry none of the loss
    work = out / "_grpo"
    rows = [
        r
        for s in range(1, STEPS + 1)
        for r in pq.read_table(work / "rollouts" / f"step-{s:08d}.parquet").to_pylist()
    ]
    assert all(len(r["loss_mask"]) == len(r["tokens"]) and r["loss_mask"][0] == 1 for r in rows)
    for m in metrics:  # the response length counts the policy's own tokens, not the observations
        step = pq.read_table(work / "rollouts" / f"step-{m['step']:08d}.parquet").to_pylist()
        assert m["response_len"] == pytest.approx(sum(sum(r["loss_mask"]) for r in step) / len(step))
    multi = [r for r in rows if 0 in r["loss_mask"]]
    assert multi, "no episode reached a second turn"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    for r in multi:
        env = tok.decode([t for t, m in zip(r["tokens"], r["loss_mask"], strict=True) if m == 0])
        # the simulated user's nudge or a tool's answer, then the next generation prompt (the turn's own stop
        # token, e.g. <|user|>, opened it and stays the policy's)
        assert env.endswith("<|assistant|>\n") and ("final answer" in env or "<tool_response>" in env), env
    # the episodes ran the problems node's rows and the generated calculator tasks, nothing else
    assert all(r["problem_id"].startswith(("agent-", "jsonl:sums.jsonl:sum")) for r in rows)
    spec = json.loads((work / "spec.json").read_text())
    assert spec["agent"]["tools"] == ["calculator", "search"] and len(spec["agent"]["search_docs"]) == 1
    train = pq.read_table(work / "problems" / "train.parquet").to_pylist()
    val = pq.read_table(work / "problems" / "val.parquet").to_pylist()
    assert sum(r["source"] == "agent:search" for r in train + val) == 2


def test_agent_params_are_validated() -> None:
    from tasks._grpo_params import GrpoParams

    ok = GrpoParams(rollout={"strategy": "agentic"}, agent={"tools": ["calculator"], "max_turns": 3})
    assert ok.agent is not None and ok.agent.max_turns == 3
    with pytest.raises(ValueError, match="set rollout.strategy: agentic or drop agent"):
        GrpoParams(agent={"max_turns": 3})
    with pytest.raises(ValueError, match="unknown judge 'rulez'"):
        GrpoParams(rollout={"strategy": "agentic"}, agent={"judge": "rulez"})
    with pytest.raises(ValueError, match="extra"):
        GrpoParams(rollout={"strategy": "agentic"}, agent={"tool": ["calculator"]})
