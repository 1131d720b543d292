"""`agent_trajectories` through the engine: generated tasks over a documents node and a `problems` node, the
scripted agent with and without faults, drop reasons and the accounting."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import polars as pl
import yaml

from data_pipes.reasoning.tool_calls import parse_tool_calls
from flows.engine import Engine
from flows.validate import load_pipeline

REASONS = {"agent_bad_tool_call", "agent_no_terminal", "agent_tool_error", "agent_check_failed"}
WORDS = "apple banana cherry grape lemon mango olive peach plum quince".split()


def _docs(root: Path) -> Path:
    rows = [
        {
            "id": f"doc-{i}",
            "text": f"Page {i} talks about {WORDS[i]} and zebra{'x' * i}tron in detail.",
            "url": f"https://example.org/page/{i}",
        }
        for i in range(10)
    ]
    path = root / "docs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def _pipeline(root: Path, agent_params: dict, with_problems: bool = False) -> Path:
    nodes: dict = {
        "docs": {
            "uses": "files",
            "params": {"paths": [str(_docs(root))], "format": "jsonl", "id_field": "id", "url_field": "url"},
        },
        "agent": {"uses": "agent_trajectories", "inputs": ["docs"], "params": agent_params},
    }
    if with_problems:
        nodes["probs"] = {
            "uses": "problems",
            "params": {"reasoning_gym": [{"name": "basic_arithmetic", "size": 4, "seed": 3}]},
        }
        nodes["agent"]["inputs"] = ["docs", "probs"]
    spec = {
        "name": "a",
        "workdir": str(root / ".arcflow"),
        "nodes": nodes,
        "executor": {"n_workers": 1, "processes": False},
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _run(path: Path) -> dict[str, dict]:
    p = load_pipeline(str(path), [])
    engine = Engine(p)
    try:
        return {n: engine.run_node(n)[1] for n in p.order}
    finally:
        engine.close()


def _outputs(root: Path, manifest: dict) -> tuple[pl.DataFrame, pl.DataFrame]:
    (d,) = [
        os.path.dirname(m)
        for m in glob.glob(str(root / ".arcflow" / "**" / "manifest.json"), recursive=True)
        if json.load(open(m))["fingerprint"] == manifest["fingerprint"]
    ]
    kept = pl.concat([pl.read_parquet(p) for p in sorted(glob.glob(f"{d}/part-*.parquet"))])
    excl = sorted(glob.glob(f"{d}/excluded/part-*.parquet"))
    dropped = pl.concat([pl.read_parquet(p) for p in excl]) if excl else pl.DataFrame()
    return kept, dropped


def _check_record(row: dict) -> None:
    tools = {t["name"]: t for t in json.loads(row["tools"])}
    assert {"calculator", "python", "search", "read_file", "list_files"} <= set(tools)
    msgs = row["messages"]
    assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user" and msgs[-1]["role"] == "assistant"
    assert "Answer:" in msgs[-1]["content"] and row["verified"]
    for i, m in enumerate(msgs):
        if m["role"] == "assistant":
            calls = parse_tool_calls(m["content"], {k: v["parameters"] for k, v in tools.items()})
            if calls:  # each call is answered by one observation
                obs = msgs[i + 1 : i + 1 + len(calls)]
                assert [o["role"] for o in obs] == ["observation"] * len(calls)
        if m["role"] == "observation":
            assert m["content"].startswith("<tool_response>") and m["content"].endswith("</tool_response>")
    observations = [m["content"] for m in msgs if m["role"] == "observation"]
    assert not observations or not observations[-1].startswith("<tool_response>\nerror")  # errors recovered


def test_clean_run_keeps_every_kind(tmp_path: Path) -> None:
    params = {"generate": {"calculator": 4, "python": 2, "files": 2, "search": 3}, "clarify_share": 0.5}
    manifests = _run(_pipeline(tmp_path, params, with_problems=True))
    m = manifests["agent"]
    c = m["counts"]
    assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"] == 4 + 2 + 2 + 3 + 4
    assert c["dropped"] == 0, m.get("drop_reasons")
    kept, _ = _outputs(tmp_path, m)
    for row in kept.to_dicts():
        _check_record(row)
    sources = set(kept["problem_id"].str.extract(r"^(agent-[a-z]+|[a-z_]+)").to_list())
    assert {"agent-calculator", "agent-python", "agent-files", "agent-search"} <= sources
    clarify = [r for r in kept.to_dicts() if r["difficulty"] == "clarify"]
    assert clarify and all(r["messages"][3]["role"] == "user" for r in clarify)  # the user's scripted reply
    code_calls = [
        m["content"] for r in kept.to_dicts() for m in r["messages"] if "<tool_call>python" in m["content"]
    ]
    assert code_calls and all("def " in c and "\\n" not in c for c in code_calls)  # code verbatim, not JSON


def test_faults_are_dropped_with_reasons(tmp_path: Path) -> None:
    params = {
        "generate": {"calculator": 16, "python": 6, "files": 8, "search": 6},
        "scripted_fault_rate": 0.7,
        "max_turns": 6,
    }
    m = _run(_pipeline(tmp_path, params))["agent"]
    c = m["counts"]
    assert c["in"] == 36 == c["kept"] + c["dropped"] + c["quarantined"]
    reasons = set(m["drop_reasons"])
    assert reasons <= REASONS | {"agent_teacher_error"} and REASONS <= reasons, reasons
    kept, dropped = _outputs(tmp_path, m)
    assert c["kept"] > 0 and dropped.height == c["dropped"]
    for row in kept.to_dicts():
        _check_record(row)  # recovered tool errors are kept; their failing observation is in the history
    assert set(dropped["reason"].to_list()) == reasons


def test_custom_judge(tmp_path: Path) -> None:
    params = {
        "generate": {"calculator": 3, "python": 0, "files": 0, "search": 0},
        "judge": "tests.tasks.test_agent_kind:reject_all",
    }
    m = _run(_pipeline(tmp_path, params))["agent"]
    assert m["counts"]["kept"] == 0 and m["drop_reasons"] == {"agent_judge_rejected": 3}


def reject_all(traj):  # a pluggable judge: module:function
    from data_pipes.reasoning.agent_judge import AgentVerdict

    return AgentVerdict(False, "agent_judge_rejected", "custom")
