"""The `checkpoint` teacher: the pipeline's own model (a `debug` arcflow checkpoint exported as a training kind
does) answering teacher requests through the rollout engine, and `generate_sft` taking it as a checkpoint input
(the expert-distillation edge of issue 11), with the DAG checks that go with it."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import polars as pl
import pytest
import yaml

from data_pipes.reasoning.answers import final_answer
from data_pipes.reasoning.problem_table import problem_row, problems_frame
from data_pipes.reasoning.sampling import sample_seed
from data_pipes.reasoning.teachers.base import GenRequest, build_messages
from data_pipes.reasoning.teachers.config import TeacherConfig, make_teacher
from tasks.base import DataType, InputRef, RunContext
from tasks.generate_sft import GenerateSft


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a training kind outputs: an HF folder with the `debug` GLM model, a byte-level BPE and the chat
    template (random weights: the point is the plumbing, not the answers)."""
    import collections
    import textwrap

    from data_pipes.tokens.bpe_train import save_hf_folder, train_bpe
    from model.config import model_config
    from model.export import save_hf
    from model.glm import GLMForCausalLM
    from model.train.chat import install_chat_template

    folder = tmp_path_factory.mktemp("expert")
    texts = [inspect.getdoc(m) or "" for m in (collections, json, textwrap, inspect)]
    save_hf_folder(train_bpe(texts + ["What is 12 + 7? Answer: 19"] * 10, 512), str(folder))
    save_hf(GLMForCausalLM(model_config("debug"), seed=0), folder)
    install_chat_template(str(folder))
    # a training kind's output also holds a one-row summary shard: a consumer must not read it as problems
    pl.DataFrame({"steps": [1], "loss": [5.0]}).write_parquet(folder / "part-00000.parquet")
    return folder


def _ckpt_input(folder: Path) -> InputRef:
    return InputRef(
        "expert", DataType.CHECKPOINT, str(folder), (str(folder / "part-00000.parquet"),), (1,), "h2"
    )


def _inline(kind, params, out: Path):  # noqa: ANN001, ANN202 - the engine's run_shards, run in this process
    return lambda tasks, phase=None: [kind.run_shard(params, t, str(out), 0) for t in tasks]


def _request(i: int, prompt: str, seed: int, temperature: float = 1.0) -> GenRequest:
    return GenRequest((f"p{i}", 0), build_messages(prompt), temperature, 12, seed)


def test_teacher_generates_per_request_seeded_samples(checkpoint: Path) -> None:
    teacher = make_teacher(
        TeacherConfig(kind="checkpoint", batch_size=4, threads=1), 0, str(checkpoint), "expert"
    )
    assert teacher.name == "checkpoint:expert"  # no machine path in the records' teacher column
    reqs = [_request(i, f"What is {i} + {i}?", seed=100 + i) for i in range(3)]
    reqs.append(_request(3, "What is 3 + 3?", seed=7, temperature=0.0))
    seen = []
    out = teacher.generate(reqs, on_result=seen.append)
    assert [r.key for r in out] == [r.key for r in reqs] and len(seen) == 4
    assert all(r.error is None and r.finish_reason in ("stop", "length") for r in out)
    assert all(r.usage["completion_tokens"] >= 1 and r.usage["prompt_tokens"] > 10 for r in out)
    assert any(r.text for r in out)
    # a response depends on its own request only: alone, or in a batch of one, it is the same
    alone = make_teacher(
        TeacherConfig(kind="checkpoint", batch_size=1, threads=1), 0, str(checkpoint), "expert"
    )
    assert [r.text for r in alone.generate([reqs[2], reqs[0]])] == [out[2].text, out[0].text]
    with pytest.raises(ValueError, match="needs a checkpoint node among the node's inputs"):
        make_teacher(TeacherConfig(kind="checkpoint"), 0, None, "")


def test_generate_sft_with_a_checkpoint_input(checkpoint: Path, tmp_path: Path) -> None:
    teacher = make_teacher(TeacherConfig(kind="checkpoint", threads=1), 0, str(checkpoint), "expert")
    # the random expert rarely stops; find a problem id whose first sample (generate_sft's seed for it) does,
    # and make that sample's final answer the problem's gold: its record is then verified and kept, while the
    # other problem's gold ("4") is not what the expert says
    tries = [(f"echo{i}", sample_seed(0, f"echo{i}", 0)) for i in range(8)]
    responses = teacher.generate(
        [GenRequest((pid, 0), build_messages("What is 12 + 7?"), 1.0, 96, seed) for pid, seed in tries]
    )
    echo = next(r for r in responses if r.finish_reason == "stop" and final_answer(r.text))
    rows = [
        problem_row(id=echo.key[0], prompt="What is 12 + 7?", answer=final_answer(echo.text) or "",
                    source="jsonl:t", domain="math", difficulty="d"),
        problem_row(id="other", prompt="What is 2 + 2?", answer="4", source="jsonl:t", domain="math",
                    difficulty="d"),
    ]  # fmt: skip
    problems = tmp_path / "problems" / "part-00000.parquet"
    problems.parent.mkdir()
    problems_frame(rows).write_parquet(problems)
    params = GenerateSft.Params(
        teacher={
            "kind": "checkpoint",
            "checkpoint": "expert",
            "temperature": 1.0,
            "max_tokens": 96,
            "threads": 1,
        },
        min_response_chars=0,
        thinking_ratio=0.0,
    )
    inputs = [
        InputRef("problems", DataType.DOCUMENTS, str(problems.parent), (str(problems),), (2,), "h1"),
        _ckpt_input(checkpoint),
    ]
    kind, out = GenerateSft(), tmp_path / "out"
    out.mkdir()

    run_shards = _inline(kind, params, out)
    ctx = RunContext("distill", params, inputs, str(out), 0, map=None, run_shards=run_shards)  # type: ignore[arg-type]
    (result,) = kind.run(ctx)  # one shard: the checkpoint input is the teacher, not a problems shard
    assert result.rows_in == 2 and result.kept + result.dropped == 2
    kept = pl.read_parquet(out / "part-00000.parquet")
    assert kept["problem_id"].to_list() == [echo.key[0]] and kept["teacher"].to_list() == [
        "checkpoint:expert"
    ]
    assert kept["verified"].to_list() == [True]
    dropped = pl.read_parquet(out / "excluded" / "part-00000.parquet")
    assert dropped["problem_id"].to_list() == ["other"]
    assert dropped["reason"][0] in ("sft_incorrect", "sft_truncated")
    assert "### Pass rates (checkpoint:expert)" in (out / ctx.reports[0]["markdown"]).read_text()

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text("{}")
    no_tok = [inputs[0], InputRef("expert", DataType.CHECKPOINT, str(bare), (), (), "h3")]
    with pytest.raises(
        ValueError, match=r"node 'distill': the checkpoint teacher 'expert' has no tokenizer.json"
    ):
        kind.run(RunContext("distill", params, no_tok, str(out), 0, map=None, run_shards=run_shards))  # type: ignore[arg-type]
    missing = RunContext("distill", params, inputs[:1], str(out), 0, map=None, run_shards=run_shards)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"node 'distill': teacher kind 'checkpoint' needs checkpoint input 'expert'"
    ):
        kind.run(missing)


def test_agent_trajectories_with_a_checkpoint_teacher(checkpoint: Path, tmp_path: Path) -> None:
    """The random expert plays the agent: its trajectories are judged (dropped with the judge's reasons), the
    checkpoint's summary shard is neither a problems nor a documents input (search needs none here)."""
    from tasks.agent_trajectories import AgentTrajectories

    params = AgentTrajectories.Params(
        generate={"calculator": 2, "python": 0, "files": 0, "search": 0},
        teacher={"kind": "checkpoint", "max_tokens": 16, "threads": 1},
        max_turns=1,
    )
    kind, out = AgentTrajectories(), tmp_path / "out"
    out.mkdir()
    ctx = RunContext(
        "agent",
        params,
        [_ckpt_input(checkpoint)],
        str(out),
        0,
        map=None,
        run_shards=_inline(kind, params, out),
    )  # type: ignore[arg-type]
    (result,) = kind.run(ctx)  # one shard of generated tasks; no shard made from the checkpoint's files
    assert result.rows_in == 2 and result.kept + result.dropped == 2
    dropped = pl.read_parquet(out / "excluded" / "part-00000.parquet")
    assert set(dropped["teacher"]) == {"checkpoint:expert"}
    # the random expert answers (no model error); the loop counts a response cut at max_tokens as the
    # teacher's failure, anything else is judged
    assert "teacher_model_error" not in " ".join(dropped["detail"])
    reasons = dict(zip(dropped["reason"], dropped["detail"], strict=True))
    assert set(reasons) <= {
        "agent_teacher_error",
        "agent_bad_tool_call",
        "agent_no_terminal",
        "agent_check_failed",
    }
    assert reasons.get("agent_teacher_error", "truncated response") == "truncated response"


def test_dag_accepts_a_checkpoint_teacher_input(tmp_path: Path) -> None:
    from flows.validate import load_pipeline

    def pipeline(teacher_ckpt: str) -> Path:
        nodes = {
            "problems": {
                "uses": "problems",
                "params": {"reasoning_gym": [{"name": "basic_arithmetic", "size": 4}]},
            },
            "traces": {"uses": "generate_sft", "inputs": ["problems"]},
            "tok": {"uses": "tokenizer_train", "inputs": ["problems"], "params": {"vocab_size": 300}},
            "expert": {"uses": "sft", "inputs": ["traces", "tok"], "params": {"steps": 1}},
            "distill": {
                "uses": "generate_sft",
                "inputs": ["problems", "expert"],
                "params": {"teacher": {"kind": "checkpoint", "checkpoint": teacher_ckpt}},
            },
        }
        path = tmp_path / f"{teacher_ckpt}.yaml"
        path.write_text(yaml.safe_dump({"name": "x", "workdir": str(tmp_path / ".a"), "nodes": nodes}))
        return path

    p = load_pipeline(str(pipeline("expert")), [])
    assert "distill" in p.order
    with pytest.raises(Exception, match=r"(?s)teacher.*checkpoint.*'exprt' is not an input of this node"):
        load_pipeline(str(pipeline("exprt")), [])
