"""The OpenAI-compatible rollout engine (model/rl/openai_engine.py) against a stub completions server on loopback
(a real ``http.server`` in this process speaking the protocol; no real vLLM/SGLang here, so this checks the
protocol only): requests carry the prompt's token ids and the sampling settings, responses are parsed and their
token ids mapped back, faults are retried and then reported clearly, weights are published and reloaded; then
one GRPO step of ``python -m model.rl.main`` sampling from the stub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from model.rl.openai_engine import OpenAIEngine, OpenAISingleTurnRollout, RolloutEngineError, publish_weights
from model.rl.rollout import Policy, SamplingParams
from tests.model.rl._ckpt import make_debug_checkpoint, write_problems

ROOT = Path(__file__).resolve().parents[3]


class Stub:
    """``/v1/completions``: answers ``ids`` (as ``token_id:<id>`` log-prob tokens) made from the request's seed,
    ``finish_reason`` stop or length; ``faults`` maps a seed to the faults of its first attempts (a status code,
    ``"slow"`` or ``"garbage"``); ``mode`` ``"text"`` answers text only, ``"token_ids"`` a ``token_ids`` list.
    ``/reload`` records its bodies (``reload_status`` its answer)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.reloads: list[dict[str, Any]] = []
        self.attempts: dict[int, int] = {}
        self.faults: dict[int, list[Any]] = {}
        self.mode, self.reload_status, self.vocab = "logprobs", 200, 500
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, out = stub.answer(self.path, body, dict(self.headers))
                if status == "slow":
                    time.sleep(1.0)
                    status = 200
                data = out if isinstance(out, bytes) else json.dumps(out).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (a timeout): expected

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[Any, Any]:
        if path == "/reload":
            self.reloads.append(body)
            return self.reload_status, {"success": self.reload_status == 200}
        seed = int(body["seed"])
        with self.lock:
            self.requests.append(body)
            self.headers.append(headers)
            self.attempts[seed] = self.attempts.get(seed, 0) + 1
            attempt = self.attempts[seed]
        faults = self.faults.get(seed, [])
        if attempt <= len(faults):
            fault = faults[attempt - 1]
            if fault == "garbage":
                return 200, b"<html>not json"
            if fault == "slow":
                return "slow", self.completion(body, seed)
            return fault, {"error": {"message": "overloaded"}}
        return 200, self.completion(body, seed)

    def completion(self, body: dict[str, Any], seed: int) -> dict[str, Any]:
        n = 1 + seed % 4  # tokens before the stop
        ids = [(seed + 7 * k) % self.vocab + 5 for k in range(n)]
        stop = n < body["max_tokens"]
        ids = ids[: body["max_tokens"]]
        choice: dict[str, Any] = {
            "index": 0,
            "text": "x" * len(ids),
            "finish_reason": "stop" if stop else "length",
        }
        if self.mode == "logprobs":
            choice["logprobs"] = {
                "tokens": [f"token_id:{t}" for t in ids],
                "token_logprobs": [-0.5] * len(ids),
            }
        elif self.mode == "token_ids":
            choice["token_ids"] = ids
        else:
            choice["text"] = "hello world"
        if stop:
            choice["stop_reason"] = body["stop_token_ids"][-1]  # stopped on a stop id the server left out
        return {"id": "cmpl", "object": "text_completion", "model": body["model"], "choices": [choice]}

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def stub() -> Any:
    s = Stub()
    yield s
    s.close()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_debug_checkpoint(str(tmp_path_factory.mktemp("policy") / "ckpt"))


def _tok(ckpt: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(ckpt)


def test_requests_carry_the_prompt_and_settings_and_ids_come_back(
    stub: Stub, ckpt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROLLOUT_KEY", "sk-test")
    engine = OpenAIEngine(stub.base_url, "policy", api_key_env="ROLLOUT_KEY", concurrency=3)
    params = SamplingParams(max_new_tokens=3, temperature=0.9, top_p=0.95, stop_ids=(1, 2))
    comps = engine.generate(_tok(ckpt), [[10, 11, 12], [20]], params, n_samples=2, seeds=[4, 9])
    assert [(c.prompt_index, c.sample_index) for c in comps] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    bodies = sorted(stub.requests, key=lambda b: b["seed"])
    seeds = sorted(s * 1_000_003 + j for s in (4, 9) for j in (0, 1))  # as the local engine seeds sample j
    assert [b["seed"] for b in bodies] == seeds
    for b in bodies:
        assert b["prompt"] == ([10, 11, 12] if b["seed"] // 1_000_003 == 4 else [20])
        assert (b["model"], b["max_tokens"], b["temperature"], b["top_p"], b["n"]) == (
            "policy",
            3,
            0.9,
            0.95,
            1,
        )
        assert (
            b["stop_token_ids"] == [1, 2] and b["logprobs"] == 1 and b["return_tokens_as_token_ids"] is True
        )
    assert all(h["Authorization"] == "Bearer sk-test" for h in stub.headers)
    for c in comps:
        seed = [4, 9][c.prompt_index] * 1_000_003 + c.sample_index
        n = 1 + seed % 4
        ids = [(seed + 7 * k) % 500 + 5 for k in range(n)]
        if n < 3:  # stopped: its ids, then the stop id the server named but left out
            assert c.tokens == ids + [2] and not c.truncated
        else:
            assert c.tokens == ids[:3] and c.truncated


def test_other_ways_of_giving_the_ids(stub: Stub, ckpt: str) -> None:
    tok = _tok(ckpt)
    params = SamplingParams(max_new_tokens=8, temperature=1.0, stop_ids=(tok.eos_token_id,))
    stub.mode = "token_ids"
    (c,) = OpenAIEngine(stub.base_url, "m").generate(tok, [[5]], params, seeds=[1])
    seed = 1_000_003
    assert c.tokens == [(seed + 7 * k) % 500 + 5 for k in range(1 + seed % 4)] + [tok.eos_token_id]
    stub.mode = "text"  # no ids at all: the text tokenised by the local tokenizer
    (c,) = OpenAIEngine(stub.base_url, "m").generate(tok, [[5]], params, seeds=[2])
    assert c.tokens[:-1] == tok("hello world", add_special_tokens=False)["input_ids"]


def test_faults_are_retried_then_reported(stub: Stub, ckpt: str) -> None:
    tok = _tok(ckpt)
    params = SamplingParams(max_new_tokens=4, stop_ids=(2,))
    stub.faults = {0: [503, "garbage", 429], 1_000_003: ["slow"]}
    engine = OpenAIEngine(stub.base_url, "m", timeout_s=0.3, retries=3, backoff_s=0.01)
    comps = engine.generate(tok, [[5], [6]], params, seeds=[0, 1])
    assert len(comps) == 2 and stub.attempts == {0: 4, 1_000_003: 2}
    # still failing after its retries: an error naming the server, the last failure and the attempts
    stub.faults = {2_000_006: [503] * 9}
    with pytest.raises(RolloutEngineError) as caught:
        engine.generate(tok, [[5]], params, seeds=[2])
    text = str(caught.value)
    assert f"{stub.base_url}/completions" in text and "HTTP 503" in text and "after 4 attempts" in text
    # a request the server refuses (4xx) is not retried
    stub.faults = {3_000_009: [400]}
    with pytest.raises(RolloutEngineError, match="refused a request \\(HTTP 400"):
        engine.generate(tok, [[5]], params, seeds=[3])
    assert stub.attempts[3_000_009] == 1
    with pytest.raises(RolloutEngineError, match="NO_SUCH_KEY_VAR"):
        OpenAIEngine(stub.base_url, "m", api_key_env="NO_SUCH_KEY_VAR")
    # nothing listens: connection errors, retried, then reported
    dead = OpenAIEngine("http://127.0.0.1:9/v1", "m", retries=1, backoff_s=0.01)
    with pytest.raises(RolloutEngineError, match="connection error.*after 2 attempts"):
        dead.generate(tok, [[5]], params, seeds=[0])


def test_the_strategy_scores_the_servers_samples(stub: Stub, ckpt: str) -> None:
    tok = _tok(ckpt)

    class _Score:
        def score_batch(self, problems: list[dict], texts: list[str]) -> list[Any]:
            from data_pipes.reasoning.rewards.base import RewardResult

            return [RewardResult(float(len(t)), len(t) > 2) for t in texts]

    strategy = OpenAISingleTurnRollout(_Score(), OpenAIEngine(stub.base_url, "m"))
    timings: dict[str, float] = {}
    params = SamplingParams(max_new_tokens=6, stop_ids=(tok.eos_token_id,))
    rows = strategy.run(
        Policy(None, tok, "stub", False), [{"id": "a"}], [[5, 6]], params, 3, [7], 64, timings
    )
    assert [(r.prompt_index, r.sample_index) for r in rows] == [(0, 0), (0, 1), (0, 2)]
    for r in rows:
        assert r.tokens[-1] == tok.eos_token_id and r.text == tok.decode(
            r.tokens[:-1], skip_special_tokens=False
        )
        assert r.result.value == float(len(r.text))
    assert timings["gen_tokens"] == sum(len(r.tokens) for r in rows) and timings["rollout_s"] >= 0


def test_weights_are_published_and_reloaded(stub: Stub, tmp_path: Path) -> None:
    def export(out: str) -> None:
        os.makedirs(out)
        Path(out, "config.json").write_text("{}")

    reload = stub.base_url.replace("/v1", "/reload")
    first = publish_weights(export, str(tmp_path / "served"), 0, reload, 5.0)
    second = publish_weights(export, str(tmp_path / "served"), 1, reload, 5.0)
    assert os.listdir(tmp_path / "served") == ["step-00000001"] and not os.path.exists(first)
    assert stub.reloads == [{"model_path": os.path.abspath(first)}, {"model_path": os.path.abspath(second)}]
    stub.reload_status = 500
    with pytest.raises(RolloutEngineError, match="answered HTTP 500"):
        publish_weights(export, str(tmp_path / "served"), 2, reload, 5.0)


def test_the_spec_checks_the_engine() -> None:
    from model.rl.spec import RolloutSpec, check_engine

    with pytest.raises(ValueError, match="needs base_url and model"):
        RolloutSpec.model_validate({"engine": {"name": "openai"}})
    with pytest.raises(ValueError, match="single_turn rollouts only"):
        check_engine(RolloutSpec.model_validate({"strategy": "agentic", "engine": {"name": "openai", "base_url":
                                                 "http://127.0.0.1:1/v1", "model": "m"}}))  # fmt: skip


def test_a_grpo_step_samples_from_the_server(stub: Stub, ckpt: str, tmp_path: Path) -> None:
    stub.vocab = 400  # ids inside the debug tokenizer's 512
    write_problems(str(tmp_path / "train.parquet"), 4)
    write_problems(str(tmp_path / "val.parquet"), 2)
    engine = {"name": "openai", "base_url": stub.base_url, "model": "policy",
              "reload_url": stub.base_url.replace("/v1", "/reload"), "weights_dir": str(tmp_path / "served")}  # fmt: skip
    spec = {
        "policy": {"path": ckpt},
        "data": {"train": str(tmp_path / "train.parquet"), "val": str(tmp_path / "val.parquet")},
        "rollout": {"group_size": 4, "prompts_per_step": 2, "max_new_tokens": 6, "truncated": "keep",
                    "engine": engine},
        "grpo": {"micro_batch": 8}, "optim": {"name": "adamw", "lr": 0.02, "weight_decay": 0.0}, "steps": 1,
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "every": 0}, "rollouts_dir": str(tmp_path / "rollouts"),
        "seed": 1,
    }  # fmt: skip
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), NO_PROXY="127.0.0.1")
    proc = subprocess.run(
        [sys.executable, "-m", "model.rl.main", str(tmp_path / "spec.json")],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # the starting policy before anything was sampled, then the updated one after the step
    assert [os.path.basename(r["model_path"]) for r in stub.reloads] == ["step-00000000", "step-00000001"]
    assert os.listdir(tmp_path / "served") == ["step-00000001"]
    assert (tmp_path / "served" / "step-00000001" / "config.json").is_file()
    rows = pq.read_table(tmp_path / "rollouts" / "step-00000001.parquet").to_pylist()
    prompts = {tuple(b["prompt"]) for b in stub.requests}
    assert rows and all(tuple(r["prompt_ids"]) in prompts for r in rows)
    sampled = [
        b for b in stub.requests if b["temperature"] > 0
    ]  # the rest: greedy validation before and after
    by_seed = {b["seed"]: b for b in sampled}
    assert len(by_seed) == len(sampled) == len(rows)  # each sample its own seed
    from model.rl.collect import completion_seed

    for (
        r
    ) in rows:  # every stored token sequence is what the server sent for that sample (plus the stop it named)
        seed = (completion_seed(1, 1, r["round"], r["group"]) * 1_000_003 + r["sample"]) % (2**63 - 1)
        body = by_seed[seed]
        n = 1 + seed % 4
        ids = [(seed + 7 * k) % 400 + 5 for k in range(n)]
        assert r["tokens"] == ids + [body["stop_token_ids"][-1]], (r, body)
        assert r["prompt_ids"] == body["prompt"]
