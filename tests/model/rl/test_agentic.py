"""Agentic rollouts (model/rl/agentic.py): multi-turn episodes through the agent loop's real tools, judged for task
completion, with a loss mask that covers only the policy's own tokens.

Most tests script the policy (``Script``: the model's turns must be controlled to reach a tool call, an answer, a
wrong answer); everything else is real: the debug checkpoint's tokenizer and chat template, the agent loop, the
calculator and the bubblewrap python sandbox, the rules judge, the reward registry. The last test runs the real
`debug` model through the KV-cache engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from data_pipes.reasoning import agent_tasks as gen
from data_pipes.reasoning.rewards import Scorer
from data_pipes.reasoning.tool_calls import format_tool_call, format_tool_response
from data_pipes.reasoning.tools import Tool
from model.rl.agentic import TASK_REWARD, AgenticRollout, guarded
from model.rl.rollout import Completion, SamplingParams, load_policy
from model.rl.strategies import STRATEGIES, make_strategy
from tests.model.rl._ckpt import make_debug_checkpoint


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Any:
    torch.set_num_threads(1)
    return load_policy(make_debug_checkpoint(str(tmp_path_factory.mktemp("agentic") / "ckpt")))


class Script:
    """A scripted policy with the engine's ``generate`` signature: for the task whose prompt the context holds,
    turn k (counted by the assistant turns in the context) is ``turns[k]``: (text, the stop token it ends with)."""

    def __init__(self, tok: Any, turns: dict[str, list[tuple[str, str]]]) -> None:
        self.tok, self.turns = tok, turns

    def __call__(
        self, policy: Any, prompts: list[list[int]], sampling: SamplingParams, *, n_samples: int = 1,
        seeds: list[int] | None = None, pad_id: int = 0,
    ) -> list[Completion]:  # fmt: skip
        out = []
        for i, ctx in enumerate(prompts):
            text = self.tok.decode(ctx, skip_special_tokens=False)
            key = next(k for k in self.turns if k in text)
            said, stop = self.turns[key][text.count("<|assistant|>") - 1]
            ids = list(self.tok(said, add_special_tokens=False)["input_ids"])
            ids.append(self.tok.convert_tokens_to_ids(stop))
            cut = len(ids) > sampling.max_new_tokens
            out += [Completion(i, j, ids[: sampling.max_new_tokens], cut) for j in range(n_samples)]
        return out


def _sampling(policy: Any, n: int = 64) -> SamplingParams:
    return SamplingParams(n, 1.0, 1.0, policy.stop_ids())


def _task(i: int = 0) -> dict:
    return gen.calculator_task(i, 0, 0.0)


def _strategy(**agent: Any) -> AgenticRollout:
    agent = {"tools": ["calculator"], "max_turns": 3, "max_episode_tokens": 400, **agent}
    return AgenticRollout(Scorer({}), agent)


def _call(task: dict) -> str:
    expr = json.loads(task["meta"])["agent"]["expression"]
    return "<think>\nI use the calculator.\n</think>\n\n" + format_tool_call(
        "calculator", {"expression": expr}
    )


def _solve(task: dict, answer: str | None = None) -> list[tuple[str, str]]:
    final = f"<think>\nThe tool says so.\n</think>\n\nAnswer: {answer or task['answer']}"
    return [(_call(task), "<|observation|>"), (final, "<|endoftext|>")]


def _run(policy: Any, st: AgenticRollout, tasks: list[dict], script: Script, n: int = 1) -> list[Any]:
    prompts = [st.prompt(policy.tokenizer, t) for t in tasks]
    seeds = list(range(len(tasks)))
    return st.run(policy, tasks, prompts, _sampling(policy), n, seeds, 64, gen=script)


def test_episode_through_a_real_tool_and_its_exact_token_mask(policy: Any) -> None:
    from model.rl.main import _loss_mask

    tok, task = policy.tokenizer, _task()
    st = _strategy()
    script = Script(tok, {task["prompt"]: _solve(task)})
    (ro,) = _run(policy, st, [task], script)
    # the real calculator answered the call: the observation holds its result, the judge passes the answer
    assert ro.result.value == 1.0 and ro.result.passed and ro.result.detail.startswith("completed")
    assert ro.result.components == {TASK_REWARD: 1.0} and not ro.truncated
    # token level: turn 1 (its <|observation|> stop included) is the policy's, then the template's observation
    # turn and the next generation prompt carry no loss, then turn 2 (its end-of-text included)
    t1 = tok(_call(task), add_special_tokens=False)["input_ids"] + [
        tok.convert_tokens_to_ids("<|observation|>")
    ]
    final = _solve(task)[1][0]
    t2 = tok(final, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|endoftext|>")]
    env = ro.tokens[len(t1) : len(ro.tokens) - len(t2)]
    assert ro.tokens[: len(t1)] == t1 and ro.tokens[len(ro.tokens) - len(t2) :] == t2
    assert ro.loss_mask == [1] * len(t1) + [0] * len(env) + [1] * len(t2)
    observation = format_tool_response(task["answer"])
    assert tok.decode(env, skip_special_tokens=False) == f"\n{observation}<|assistant|>\n"
    # the whole sequence is the chat contract's rendering of the conversation: no token re-tokenised or lost
    prompt = st.prompt(tok, task)
    messages = [
        *st.renderer(tok).prompt_messages(task),
        {"role": "assistant", "content": _call(task)},
        {"role": "observation", "content": observation},
        {"role": "assistant", "content": final},
    ]
    rendered = st.renderer(tok).render(messages, generation=False) + "<|endoftext|>"
    assert tok.decode(prompt + ro.tokens, skip_special_tokens=False) == rendered
    # the GRPO update's mask (model/rl/main.py): targets are shifted by one, the prompt carries no loss
    row = {"prompt_ids": prompt, "tokens": ro.tokens, "truncated": False, "loss_mask": ro.loss_mask}
    mask = _loss_mask([row], len(prompt) + len(ro.tokens), "mask")[0].tolist()
    assert mask == [0.0] * (len(prompt) - 1) + [float(m) for m in ro.loss_mask]
    # a single-turn row (no loss_mask) still trains every completion token
    plain = _loss_mask([{**row, "loss_mask": []}], len(prompt) + len(ro.tokens), "mask")[0]
    assert int(plain.sum()) == len(ro.tokens)


def test_judge_reward_on_completed_and_uncompleted_tasks(policy: Any) -> None:
    tok = policy.tokenizer
    solved, wrong, silent, broken = (_task(i) for i in range(4))
    nothing = ("<think>\nHmm.\n</think>\n\nI am thinking about it.", "<|user|>")
    bad_call = ("<tool_call>calculator\n<arg_key>expression</arg_key>\n</tool_call>", "<|observation|>")
    script = Script(
        tok,
        {
            solved["prompt"]: _solve(solved),
            wrong["prompt"]: _solve(wrong, answer=str(int(wrong["answer"]) + 1)),
            silent["prompt"]: [nothing] * 3,
            broken["prompt"]: [bad_call],
        },
    )
    out = _run(policy, _strategy(), [solved, wrong, silent, broken], script, n=2)
    assert [(r.prompt_index, r.sample_index) for r in out] == [(i, j) for i in range(4) for j in range(2)]
    values = [r.result.value for r in out]
    assert values == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    reasons = [r.result.detail.split(":")[0] for r in out[::2]]
    assert reasons == ["completed", "agent_check_failed", "agent_no_terminal", "agent_bad_tool_call"]
    # the silent agent got the simulated user's nudges (mask 0) between its 3 turns, then ran out of turns
    silent_ro = out[4]
    env = [t for t, m in zip(silent_ro.tokens, silent_ro.loss_mask, strict=True) if m == 0]
    assert tok.decode(env, skip_special_tokens=False).count("Please give your final answer.") == 2


def test_a_raising_tool_judge_or_reward_gives_zero_and_is_counted(
    policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok, task = policy.tokenizer, _task()
    script = Script(tok, {task["prompt"]: _solve(task)})

    def boom(args: dict) -> str:
        raise RuntimeError("calculator backend down")

    st = _strategy()
    real = st.tools["calculator"]
    st._tools = {"calculator": guarded(Tool("calculator", real.description, real.parameters, boom))}
    (ro,) = _run(policy, st, [task], script)
    assert ro.result.value == 0.0 and not ro.result.passed and ro.result.error is None
    assert ro.result.detail.startswith("agent_tool_error: calculator: calculator raised RuntimeError")
    env = tok.decode([t for t, m in zip(ro.tokens, ro.loss_mask, strict=True) if m == 0])
    assert "error: calculator raised RuntimeError: calculator backend down" in env

    def bad_judge(traj: Any) -> Any:
        raise ValueError("judge crashed")

    st = _strategy()
    st.judge = bad_judge
    (ro,) = _run(policy, st, [task], script)
    assert ro.result.value == 0.0 and ro.result.error == f"{TASK_REWARD}: ValueError: judge crashed"

    class Raising:
        def score_batch(self, problems: Any, texts: Any) -> Any:
            raise RuntimeError("penalty bug")

        def score(self, problem: Any, text: Any) -> Any:
            raise RuntimeError("penalty bug")

    st = AgenticRollout(Scorer({"weights": {"repetition": 0.5}}), {"tools": ["calculator"]})
    monkeypatch.setattr(st.scorer, "reward", lambda name: Raising())
    (ro,) = _run(policy, st, [task], script)
    # the judge's 1 stands, the raising penalty counts 0 and its error is attributed to it
    assert ro.result.value == 1.0 and ro.result.components == {TASK_REWARD: 1.0, "repetition": 0.0}
    assert ro.result.error == "repetition: RuntimeError: penalty bug"


def test_sandbox_timeout_is_a_zero_reward_with_its_reason(policy: Any, tmp_path: Path) -> None:
    from data_pipes.reasoning.sandbox import SandboxUnavailable, run_python

    try:
        run_python("print(1)", timeout_s=10)
    except SandboxUnavailable as exc:
        pytest.skip(f"no sandbox here: {exc}")
    tok, task = policy.tokenizer, _task()
    loop = format_tool_call("python", {"code": "while True:\n    pass\n"})
    script = Script(
        tok, {task["prompt"]: [(loop, "<|observation|>"), (f"Answer: {task['answer']}", "<|endoftext|>")]}
    )
    st = _strategy(tools=["python"], sandbox_timeout_s=1.0)
    (ro,) = _run(policy, st, [task], script)
    assert ro.result.value == 0.0 and not ro.result.passed
    assert ro.result.detail.startswith("agent_tool_error: python: python: ") and "timeout" in ro.result.detail


def test_episode_limits_mark_the_sample_truncated(policy: Any) -> None:
    tok, task = policy.tokenizer, _task()
    script = Script(tok, {task["prompt"]: _solve(task)})
    (ro,) = _run(policy, _strategy(max_episode_tokens=40), [task], script)
    assert ro.truncated and len(ro.tokens) <= 40 and ro.result.value == 0.0
    assert "episode token limit (40)" in ro.result.detail


def test_real_model_episodes_are_batched_and_do_not_depend_on_their_batch(policy: Any) -> None:
    st = _strategy(max_turns=2, max_episode_tokens=40)
    tasks = [_task(0), _task(1)]
    prompts = [st.prompt(policy.tokenizer, t) for t in tasks]
    sp = _sampling(policy, 12)
    both = st.run(policy, tasks, prompts, sp, 2, [11, 12], 64)
    alone = st.run(policy, tasks[1:], prompts[1:], sp, 2, [12], 64)
    assert [(r.tokens, r.loss_mask) for r in both[2:]] == [(r.tokens, r.loss_mask) for r in alone]
    for r in both:
        assert len(r.loss_mask) == len(r.tokens) <= 40 and r.loss_mask[0] == 1
        assert r.result.components[TASK_REWARD] == 0.0  # a random debug model completes nothing


def test_strategy_registry() -> None:
    assert {"single_turn", "agentic"} <= set(STRATEGIES)
    with pytest.raises(
        ValueError, match=r"unknown rollout strategy 'multi'; use one of \['agentic', 'single_turn'\]"
    ):
        make_strategy("multi", Scorer({}))


def test_check_quarantines_tasks_no_judge_can_score() -> None:
    st = _strategy()
    task = _task()
    assert st.check(task) is None
    assert st.check({**task, "answer": ""}) == "agent_task_no_answer"
    # a problem-table row: the judge runs its verifier, so the registry's check applies
    assert st.check({"id": "p", "prompt": "Compute 2 + 2.", "answer": ""}) == "reward_math_no_answer"
    assert st.task_reward(task) == TASK_REWARD


def _docs(tmp_path: Path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [
        "the harbor lights glimmer over quartz",
        "maple leaves and falcons",
        "orbit of the prism lantern",
    ]
    rows = [{"id": f"d{i}", "url": f"https://example.org/{i}", "text": t} for i, t in enumerate(texts)]
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_search_tool_over_document_inputs(policy: Any, tmp_path: Path) -> None:
    docs = _docs(tmp_path)
    st = AgenticRollout(Scorer({}), {"tools": ["search"], "generate": {"search": 2, "calculator": 1}})
    tasks, agent = st.setup(str(tmp_path / "agent"), 0, [docs])
    assert agent is not None and agent["search_docs"] == [docs] and Path(agent["workspace"]).is_dir()
    search = [t for t in tasks if t["source"] == "agent:search"]
    assert len(tasks) == 3 and len(search) == 2
    task = search[0]
    term = json.loads(task["meta"])["agent"]["term"]
    call = format_tool_call("search", {"query": term})
    final = f"<think>\nThe first hit.\n</think>\n\nAnswer: {task['answer']}"
    script = Script(policy.tokenizer, {task["prompt"]: [(call, "<|observation|>"), (final, "<|endoftext|>")]})
    (ro,) = _run(policy, st, [task], script)
    assert ro.result.value == 1.0, ro.result.detail
    env = policy.tokenizer.decode([t for t, m in zip(ro.tokens, ro.loss_mask, strict=True) if m == 0])
    assert f"url={task['answer']}" in env  # the real BM25 index answered
    with pytest.raises(ValueError, match="needs a documents input"):
        AgenticRollout(Scorer({}), {"tools": ["search"], "generate": {"search": 1}}).setup(
            str(tmp_path / "b"), 0
        )
    with pytest.raises(ValueError, match="no documents input to index"):
        _ = AgenticRollout(Scorer({}), {"tools": ["search"]}).tools
