"""`problems` and `generate_sft` through the engine: the procedural teacher end to end, the HTTP teacher
against a real local server (resume after a kill without repeated requests; bad teachers counted, never a
crash)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import yaml

from flows.engine import Engine
from flows.validate import load_pipeline

sys.path.insert(0, str(Path(__file__).parents[1] / "data_pipes" / "reasoning"))
from _openai_server import FakeOpenAI  # noqa: E402

CHAT_COLUMNS = [
    "id",
    "messages",
    "mode",
    "tools",
    "problem_id",
    "domain",
    "difficulty",
    "teacher",
    "verified",
    "meta",
]


def _write(root: Path, nodes: dict) -> Path:
    spec = {
        "name": "r",
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


def _out_dir(manifest: dict, root: Path) -> str:
    (d,) = [
        os.path.dirname(m)
        for m in glob.glob(str(root / ".arcflow" / "**" / "manifest.json"), recursive=True)
        if json.load(open(m))["fingerprint"] == manifest["fingerprint"]
    ]
    return d


def _balanced(m: dict) -> None:
    c = m["counts"]
    assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"]


def test_procedural_end_to_end(tmp_path: Path) -> None:
    user = tmp_path / "user.jsonl"
    user.write_text(
        "\n".join(
            [
                json.dumps(
                    {"id": "half", "prompt": "What is half of 1?", "answer": "1/2", "difficulty": "easy"}
                ),
                "{not json",
                json.dumps({"answer": "3"}),
                json.dumps({"prompt": "no way to check"}),
                json.dumps(["a", "list"]),
            ]
        )
        + "\n"
    )
    path = _write(
        tmp_path,
        {
            "probs": {
                "uses": "problems",
                "params": {
                    "reasoning_gym": [
                        {"name": "basic_arithmetic", "size": 12, "seed": 1, "difficulty": "easy"},
                        {"name": "gcd", "size": 6, "seed": 2},
                    ],
                    "human_eval": {"limit": 2},
                    "jsonl": [str(user)],
                    "problems_per_shard": 8,
                },
            },
            "sft": {
                "uses": "generate_sft",
                "inputs": ["probs"],
                "params": {"samples_per_prompt": 2, "keep_per_prompt": 1, "thinking_ratio": 0.5, "seed": 3},
            },
        },
    )
    m = _run(path)
    probs, sft = m["probs"], m["sft"]
    _balanced(probs)
    assert probs["counts"]["kept"] == 12 + 6 + 2 + 1
    assert probs["quarantine_errors"] == {
        "problems_bad_json": 1,
        "problems_missing_prompt": 1,
        "problems_no_answer_or_tests": 1,
        "problems_not_object": 1,
    }
    _balanced(sft)
    assert sft["counts"]["in"] == 2 * 21  # rows in are drawn samples
    assert sft["drop_reasons"] == {
        "sft_duplicate": 18,
        "sft_teacher_error": 6,
    }  # no solver: 2 humaneval + 1 user
    out = _out_dir(sft, tmp_path)
    records = pl.concat([pl.read_parquet(f) for f in sorted(glob.glob(os.path.join(out, "part-*.parquet")))])
    assert records.columns == CHAT_COLUMNS and records.height == 18
    assert records["verified"].all() and set(records["teacher"]) == {"procedural"}
    assert set(records["mode"]) == {"thinking", "direct"}
    for row in records.iter_rows(named=True):
        user_msg, reply = row["messages"]
        assert user_msg["role"] == "user" and reply["role"] == "assistant"
        assert reply["content"].startswith("<think>") == (row["mode"] == "thinking")
        assert "Answer:" in reply["content"] and row["id"].endswith(row["mode"])
    report = json.load(open(os.path.join(out, "reports", "sft-pass-rates.json")))
    by = {(r["domain"], r["difficulty"]): r for r in report}
    assert by[("arithmetic", "easy")]["pass_rate"] == 1.0 and by[("code", "humaneval")]["teacher_errors"] == 4
    assert sft["reports"][0]["title"] == "SFT pass rates"


def _http_nodes(base_url: str, size: int, **teacher) -> dict:
    return {
        "probs": {
            "uses": "problems",
            "params": {
                "reasoning_gym": [{"name": "basic_arithmetic", "size": size, "seed": 5}],
                "problems_per_shard": 100,
            },
        },
        "sft": {
            "uses": "generate_sft",
            "inputs": ["probs"],
            "params": {
                "teacher": {
                    "kind": "http",
                    "base_url": base_url,
                    "model": "fake",
                    "temperature": 0.8,
                    **teacher,
                },
                "samples_per_prompt": 2,
                "keep_per_prompt": 2,
            },
        },
    }


def _settled_count(srv: FakeOpenAI) -> int:
    """The server's request count once the killed client's last request, already in the socket, is recorded."""
    n = -1
    while n != len(srv.requests):
        n = len(srv.requests)
        time.sleep(0.5)
    return n


def _cached_response_keys(path: str) -> set[tuple[str, int]]:
    """The responses a resumed run finds in a generation cache: whole lines only (a kill can tear the last one
    mid-write), verdict lines not counted."""
    keys = set()
    for line in open(path, encoding="utf-8"):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("type") != "verdict":
            keys.add((str(rec["key"][0]), int(rec["key"][1])))
    return keys


def test_http_resume_after_kill_repeats_no_request(tmp_path: Path) -> None:
    with FakeOpenAI(delay_s=0.05) as srv:
        path = _write(tmp_path, _http_nodes(srv.base_url, 20, concurrency=2))
        code = (
            "import sys; from flows.validate import load_pipeline; from flows.engine import Engine\n"
            "p = load_pipeline(sys.argv[1], []); e = Engine(p)\n"
            "[e.run_node(n) for n in p.order]"
        )
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)], start_new_session=True)
        deadline = time.time() + 60
        while len(srv.requests) < 12 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        first_run = _settled_count(srv)
        assert 12 <= first_run < 40, "the run was not killed mid-way"
        (cache,) = glob.glob(
            str(tmp_path / ".arcflow" / "**" / "_work" / "generations-*.jsonl"), recursive=True
        )
        cached = len(_cached_response_keys(cache))
        m = _run(path)
    sft = m["sft"]
    _balanced(sft)
    assert sft["counts"]["in"] == 40 and sft["counts"]["kept"] == 40
    assert len(srv.requests) - first_run == 40 - cached  # only the missing samples were requested
    assert (
        max(srv.attempts.values()) <= 2 and sum(v > 1 for v in srv.attempts.values()) <= 2
    )  # in flight at kill


def test_bad_teacher_rows_are_counted(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"id": "ok", "prompt": "Calculate 2 + 2.", "answer": "4"},
                {"id": "garbage", "prompt": "GARBAGE", "answer": "1"},
                {"id": "slow", "prompt": "SLOW Calculate 1 + 1.", "answer": "2"},
                {"id": "cut", "prompt": "TRUNCATE Calculate 1 + 2.", "answer": "3"},
                {"id": "wrong", "prompt": "OFFBYONE Calculate 5 + 5.", "answer": "10"},
                {"id": "dunno", "prompt": "What is love?", "answer": "42"},
            ]
        )
        + "\n"
    )
    with FakeOpenAI() as srv:
        path = _write(
            tmp_path,
            {
                "probs": {"uses": "problems", "params": {"jsonl": [str(bad)]}},
                "sft": {
                    "uses": "generate_sft",
                    "inputs": ["probs"],
                    "params": {
                        "teacher": {
                            "kind": "http",
                            "base_url": srv.base_url,
                            "model": "fake",
                            "timeout_s": 0.4,
                            "retries": 1,
                            "backoff_s": 0.01,
                        },
                        "samples_per_prompt": 2,
                        "keep_per_prompt": 1,
                        "hard_prompt_extra_samples": 2,
                        "min_response_chars": 0,
                    },
                },
            },
        )
        m = _run(path)
    sft = m["sft"]
    _balanced(sft)
    # every prompt but "ok" has pass rate 0, so it got 2 extra draws: 2 + 5 * 4 = 22 samples
    assert sft["counts"]["in"] == 22 and sft["counts"]["kept"] == 1
    # "dunno" always answers the same text (3 duplicates); "ok" answers right twice (keep 1: 1 over k)
    assert sft["drop_reasons"] == {
        "sft_teacher_error": 8,
        "sft_truncated": 4,
        "sft_incorrect": 5,
        "sft_duplicate": 3,
        "sft_over_k": 1,
    }
