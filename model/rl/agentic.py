"""Agentic rollouts (``rollout.strategy: agentic``): each GRPO sample is a multi-turn episode through the agent
loop's real tools, scored by the agent judge for task completion (GLM-4.5 report §3.4, agentic RL).

An episode is one token sequence, built turn by turn and never re-tokenised, so the log-probabilities the update
computes are those of exactly the context each turn was sampled from:

1. the prompt: the system message of the agent loop (tool schemas, call format) and the task as the user turn,
   rendered by the policy's chat template with the tool schemas (what ``sft`` trained the cold start on);
2. the policy samples a turn (the KV-cache engine, :func:`model.rl.rollout.generate`), up to a stop token; its
   tokens carry loss (mask 1), the stop token included (the policy learns to hand over);
3. the agent loop (:mod:`data_pipes.reasoning.agent_loop`) reads the turn: tool calls in the GLM XML template run
   against the real tools (calculator, the bubblewrap python sandbox, the read-only workspace files), each result
   an ``observation`` turn; a turn without a call or an answer gets the simulated user's reply; an ``Answer:``
   ends the episode; a malformed call ends it too (its one-turn step ``advance_turn`` is reused as is, so RL episodes
   and ``agent_trajectories`` follow the same rules);
4. the chat template's text between that turn and the next one (the observation or user turn and the next
   generation prompt, found by rendering the conversation around a sentinel assistant turn, so any template works)
   is tokenised and appended with mask 0: tool outputs and role tokens carry no loss; when the turn's own stop
   token already opens that text (``<|observation|>``), it is not repeated.

It ends at an answer, a malformed call, ``agent.max_turns`` policy turns, a turn cut at ``max_new_tokens``, or
``agent.max_episode_tokens`` tokens after the prompt (the last two mark the sample ``truncated``, which
``rollout.truncated`` masks, keeps or penalises). The judge (:func:`data_pipes.reasoning.agent_judge.load_judge`;
``rules`` by default: well-formed, finished, no unrecovered tool error, the right answer, the task's tool used)
gives 1 or 0; a judge that raises gives 0 with the error counted as the ``agent_task`` reward's. ``rewards.weights``
add the registry's rewards (e.g. the ``repetition`` penalty) on the policy's own text. A tool that raises anything
but ``ToolError`` (a bug, a sandbox that cannot start) answers ``error: ...`` like any failing tool, so the episode
goes on and the judge scores it (0 unless a later call recovers); a sandbox timeout is such an error, its reason
in the sample's detail.

Generation is batched over every running episode of the step: the first turn prefills each task once for its G
episodes (``n_samples``), later turns sample each running episode's own context in one call per turn. A turn's
seed is a function of the sample's seed, its index and the turn, so an episode does not depend on its batch.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from data_pipes.reasoning.agent_judge import AgentVerdict, load_judge
from data_pipes.reasoning.agent_loop import Trajectory, advance_turn, system_prompt
from data_pipes.reasoning.rewards.base import RewardResult, problem_meta
from data_pipes.reasoning.tools import Tool, ToolError, calculator_tool, file_tools, python_tool, search_tool
from data_pipes.reasoning.tools_search import BM25Index
from model.rl.agentic_config import AgentSpec
from model.rl.rollout import Policy, SamplingParams, generate
from model.rl.strategies import Rollout, RolloutStrategy, _add, completion_text, register_strategy

TASK_REWARD = "agent_task"  # the judge's name in the reward reports
_SENTINEL = "\ue000arcflow-agent-turn\ue001"
_TURN_MIX = 7_919


@dataclass
class Episode:
    """One sample's conversation (the agent loop's trajectory) and its token sequence after the prompt."""

    traj: Trajectory
    prompt: list[int]
    seed: int
    sample: int
    tokens: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)  # 1: the policy's token, 0: the environment's
    policy_texts: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def context(self) -> list[int]:
        return self.prompt + self.tokens


def _files(agent: AgentSpec) -> list[Tool]:
    if agent.workspace is None:
        raise ValueError("agent.tools has 'files' but no agent.workspace folder; the grpo kind builds one")
    return file_tools(agent.workspace)


@functools.lru_cache(maxsize=4)
def search_index(paths: tuple[str, ...]) -> BM25Index:
    """BM25 over the ``text`` of the document shards (id, url and text columns), in shard order."""
    import pyarrow.parquet as pq

    docs = []
    for path in paths:
        cols = [c for c in ("id", "url", "text") if c in pq.read_schema(path).names]
        for row in pq.read_table(path, columns=cols).to_pylist():
            docs.append((str(row.get("id", "")), str(row.get("url") or ""), str(row.get("text") or "")))
    return BM25Index(docs)


def _search(agent: AgentSpec) -> list[Tool]:
    if not agent.search_docs:
        raise ValueError(
            "agent.tools has 'search' but the node has no documents input to index (an input whose shards have "
            "no prompt column); add one to inputs or drop search"
        )
    return [search_tool(search_index(tuple(agent.search_docs)), agent.search_k)]


TOOLS: dict[str, Callable[[AgentSpec], list[Tool]]] = {
    "calculator": lambda agent: [calculator_tool()],
    "python": lambda agent: [python_tool(agent.sandbox_timeout_s, agent.sandbox_memory_mb)],
    "files": _files,  # list_files and read_file over the read-only workspace
    "search": _search,  # BM25 over the node's document inputs
}


def build_tools(agent: AgentSpec) -> dict[str, Tool]:
    """The agent loop's tools named in ``agent.tools``, each guarded so that only ``ToolError`` leaves it."""
    tools = [tool for name in agent.tools for tool in TOOLS[name](agent)]
    return {t.name: guarded(t) for t in tools}


def guarded(tool: Tool) -> Tool:
    """``tool`` whose unexpected exceptions become a ``ToolError`` (an ``error: ...`` observation), never a crash
    of the rollout."""

    def run(args: dict[str, Any]) -> str:
        try:
            return tool.fn(args)
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken tool is the episode's tool error, not the stage's
            raise ToolError(f"{tool.name} raised {type(exc).__name__}: {exc}"[:300]) from None

    return Tool(tool.name, tool.description, tool.parameters, run)


class TurnRenderer:
    """Renders the prompt and the environment's text between two policy turns with the policy's chat template."""

    def __init__(self, tokenizer: Any, tools: dict[str, Tool], thinking: bool | None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "agentic rollouts need a tokenizer with a chat template (an sft or grpo checkpoint carries one)"
            )
        self.tok = tokenizer
        self.schemas = [t.schema() for t in tools.values()]
        self.system = {"role": "system", "content": system_prompt(tools)}
        self.kw = {} if thinking is None else {"enable_thinking": thinking}

    def render(self, messages: list[dict[str, str]], generation: bool) -> str:
        return self.tok.apply_chat_template(
            messages, tools=self.schemas, add_generation_prompt=generation, tokenize=False, **self.kw
        )

    def ids(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def prompt_messages(self, problem: dict[str, Any]) -> list[dict[str, str]]:
        return [self.system, {"role": "user", "content": str(problem["prompt"])}]

    def between(self, history: list[dict[str, str]], new: list[dict[str, str]]) -> str:
        """The template's text after an assistant turn that followed ``history``, through the ``new`` messages
        and the next generation prompt."""
        turn = [*history, {"role": "assistant", "content": _SENTINEL}]
        before = self.render(turn, generation=False)
        after = self.render(turn + new, generation=True)
        if not after.startswith(before) or _SENTINEL not in before:
            raise ValueError(
                "the chat template renders earlier turns differently once later ones follow; agentic rollouts "
                "need a template that appends turns (the arcflow template does)"
            )
        return before[before.rindex(_SENTINEL) + len(_SENTINEL) :] + after[len(before) :]


def run_episodes(
    policy: Policy,
    problems: Sequence[dict[str, Any]],
    prompts: Sequence[Sequence[int]],
    sampling: SamplingParams,
    n_samples: int,
    seeds: Sequence[int],
    *,
    tools: dict[str, Tool],
    renderer: TurnRenderer,
    max_turns: int,
    max_episode_tokens: int,
    batch_rows: int = 64,
    gen: Any = generate,
) -> list[Episode]:
    """``n_samples`` episodes per problem (problem order, then sample order). ``gen`` is the engine's
    :func:`~model.rl.rollout.generate` (tests pass a scripted one with the same signature)."""
    pad = policy.tokenizer.pad_token_id or 0
    schemas = {name: t.parameters for name, t in tools.items()}
    stops = set(sampling.stop_ids)
    episodes = [
        Episode(Trajectory(dict(p), renderer.prompt_messages(p)), list(prompts[i]), int(seeds[i]), j)
        for i, p in enumerate(problems)
        for j in range(n_samples)
    ]
    # turn 0: each task prefilled once for its samples
    per_call = max(1, batch_rows // n_samples)
    first = []
    turn0 = _limited(sampling, max_episode_tokens)
    for s in range(0, len(problems), per_call):
        first += gen(
            policy, [list(p) for p in prompts[s : s + per_call]], turn0, n_samples=n_samples,
            seeds=[int(x) for x in seeds[s : s + per_call]], pad_id=pad,
        )  # fmt: skip
    for ep, comp in zip(episodes, first, strict=True):
        _take_turn(ep, comp, policy, renderer, tools, schemas, stops, max_turns, max_episode_tokens)
    for turn in range(1, max_turns):
        active = [ep for ep in episodes if ep.traj.active and not ep.truncated]
        if not active:
            break
        by_limit: dict[int, list[Episode]] = {}
        for ep in active:  # the per-turn limit never lets an episode pass max_episode_tokens
            by_limit.setdefault(min(sampling.max_new_tokens, max_episode_tokens - len(ep.tokens)), []).append(
                ep
            )
        for limit, eps in sorted(by_limit.items()):
            sp = SamplingParams(limit, sampling.temperature, sampling.top_p, sampling.stop_ids)
            for s in range(0, len(eps), batch_rows):
                part = eps[s : s + batch_rows]
                comps = gen(
                    policy, [ep.context for ep in part], sp, n_samples=1, pad_id=pad,
                    seeds=[(ep.seed * _TURN_MIX + turn) * 1_000_003 + ep.sample for ep in part],
                )  # fmt: skip
                for ep, comp in zip(part, comps, strict=True):
                    _take_turn(
                        ep, comp, policy, renderer, tools, schemas, stops, max_turns, max_episode_tokens
                    )
    return episodes


def _limited(sampling: SamplingParams, max_episode_tokens: int) -> SamplingParams:
    n = min(sampling.max_new_tokens, max_episode_tokens)
    return SamplingParams(n, sampling.temperature, sampling.top_p, sampling.stop_ids)


def _take_turn(
    ep: Episode, comp: Any, policy: Policy, renderer: TurnRenderer, tools: dict[str, Tool],
    schemas: dict[str, dict], stops: set[int], max_turns: int, max_episode_tokens: int,
) -> None:  # fmt: skip
    """Append the policy's turn (mask 1), let the agent loop act on it, append the environment's answer (mask 0)."""
    tokens = list(comp.tokens)
    ep.tokens += tokens
    ep.mask += [1] * len(tokens)
    text = completion_text(policy, tokens, tuple(stops))
    ep.policy_texts.append(text)
    traj = ep.traj
    if comp.truncated:  # cut at max_new_tokens (or the episode's last tokens): the agent loop's "length"
        traj.turns += 1
        traj.messages.append({"role": "assistant", "content": text})
        at_limit = len(ep.tokens) >= max_episode_tokens
        traj.teacher_error = (
            f"episode token limit ({max_episode_tokens})" if at_limit else "truncated response"
        )
        ep.truncated = True
        return
    history = list(traj.messages)
    advance_turn(traj, text, tools, schemas)
    if not traj.active or traj.turns >= max_turns:
        return  # finished, malformed, or out of turns: nothing more is sampled, so no observation is appended
    env = renderer.between(history, traj.messages[len(history) + 1 :])
    if tokens and tokens[-1] in stops:  # the stop token (e.g. <|observation|>) already opened the next turn
        opened = policy.tokenizer.decode([tokens[-1]], skip_special_tokens=False)
        if opened and env.startswith(opened):
            env = env[len(opened) :]
    env_ids = renderer.ids(env)
    if len(ep.tokens) + len(env_ids) >= max_episode_tokens:
        traj.teacher_error = f"episode token limit ({max_episode_tokens})"
        ep.truncated = True
        return
    ep.tokens += env_ids
    ep.mask += [0] * len(env_ids)


def judge_episode(judge: Any, traj: Trajectory) -> RewardResult:
    """The judge's verdict as a reward: 1 when it keeps the trajectory, else 0 with its reason; a judge that
    raises is 0 with the error."""
    try:
        verdict: AgentVerdict = judge(traj)
        ok = bool(verdict.ok)
    except Exception as exc:  # noqa: BLE001 - a raising judge is this reward's counted error, never the stage's
        return RewardResult(0.0, False, "judge error", error=f"{type(exc).__name__}: {exc}"[:300])
    detail = "completed" if ok else f"{verdict.reason}"
    if verdict.detail:
        detail += f": {verdict.detail}"
    return RewardResult(float(ok), ok, detail[:300])


@register_strategy
class AgenticRollout(RolloutStrategy):
    """Multi-turn episodes through the agent loop's tools, judged for task completion (module docstring)."""

    name = "agentic"
    uses_documents = True

    def __init__(self, scorer: Any, agent: Any = None, thinking: bool | None = None) -> None:
        agent = agent if isinstance(agent, AgentSpec) else AgentSpec(**dict(agent or {}))
        super().__init__(scorer, agent, thinking)
        self.judge = load_judge(agent.judge)
        self._tools: dict[str, Tool] | None = None
        self._renderers: dict[int, TurnRenderer] = {}

    @property
    def tools(self) -> dict[str, Tool]:
        if self._tools is None:
            self._tools = build_tools(self.agent)
        return self._tools

    def setup(
        self, folder: str, seed: int, documents: Sequence[str] = ()
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """The workspace the file tools read, the search index's shards, and the generated tool tasks
        (agent_tasks, same ``seed``), as ``agent_trajectories`` makes them."""
        from data_pipes.reasoning import agent_tasks as gen

        agent: AgentSpec = self.agent
        workspace = os.path.join(folder, "workspace")
        gen.build_workspace(workspace, seed)
        self.agent = agent.model_copy(update={"workspace": workspace, "search_docs": list(documents)})
        self._tools = None
        counts = agent.generate
        tasks = [gen.calculator_task(i, seed, agent.clarify_share) for i in range(counts.calculator)]
        tasks += [gen.python_task(i, seed) for i in range(counts.python)]
        tasks += [gen.files_task(i, seed) for i in range(counts.files)]
        if counts.search:
            if not documents:
                raise ValueError(
                    f"agent.generate.search={counts.search} needs a documents input for the search index; add "
                    "one to inputs or set agent.generate.search: 0"
                )
            index = search_index(tuple(documents))
            tasks += [t for i in range(counts.search) if (t := gen.search_task(i, seed, index)) is not None]
        return tasks, self.agent.model_dump(mode="json")

    def renderer(self, tokenizer: Any) -> TurnRenderer:
        key = id(tokenizer)
        if key not in self._renderers:
            self._renderers[key] = TurnRenderer(tokenizer, self.tools, self.thinking)
        return self._renderers[key]

    def prompt(self, tokenizer: Any, problem: dict[str, Any]) -> list[int]:
        r = self.renderer(tokenizer)
        return r.ids(r.render(r.prompt_messages(problem), generation=True))

    def check(self, problem: dict[str, Any]) -> str | None:
        if "agent" in problem_meta(problem):  # an agent task: the rules judge compares its answer
            return None if str(problem.get("answer") or "").strip() else "agent_task_no_answer"
        return self.scorer.check(problem)  # a problem-table row: the judge runs its own verifier

    def task_reward(self, problem: dict[str, Any]) -> str:
        return TASK_REWARD

    def run(
        self,
        policy: Policy,
        problems: Sequence[dict[str, Any]],
        prompts: Sequence[Sequence[int]],
        sampling: SamplingParams,
        n_samples: int,
        seeds: Sequence[int],
        batch_rows: int,
        timings: dict[str, float] | None = None,
        gen: Any = generate,
    ) -> list[Rollout]:
        agent: AgentSpec = self.agent
        started = time.perf_counter()
        episodes = run_episodes(
            policy, problems, prompts, sampling, n_samples, seeds, tools=self.tools,
            renderer=self.renderer(policy.tokenizer), max_turns=agent.max_turns,
            max_episode_tokens=agent.max_episode_tokens, batch_rows=batch_rows, gen=gen,
        )  # fmt: skip
        _add(timings, "rollout_s", time.perf_counter() - started)
        _add(timings, "gen_tokens", float(sum(sum(ep.mask) for ep in episodes)))
        started = time.perf_counter()
        results = self.score(episodes)
        _add(timings, "reward_s", time.perf_counter() - started)
        return [
            Rollout(
                i // n_samples,
                ep.sample,
                ep.tokens,
                policy.tokenizer.decode(ep.tokens, skip_special_tokens=False),
                ep.truncated,
                res,
                ep.mask,
            )  # fmt: skip
            for i, (ep, res) in enumerate(zip(episodes, results, strict=True))
        ]

    def score(self, episodes: Sequence[Episode]) -> list[RewardResult]:
        """The judge's task reward, plus ``rewards.weights`` on the policy's own text (its turns joined)."""
        config = self.scorer.config
        problems = [ep.traj.task for ep in episodes]
        texts = ["\n\n".join(ep.policy_texts) for ep in episodes]
        extras = {name: self._safe(name, problems, texts) for name in config.weights}
        out = []
        for i, ep in enumerate(episodes):
            base = judge_episode(self.judge, ep.traj)
            value = config.task_weight * base.value
            components = {TASK_REWARD: base.value}
            notes = [base.detail]
            errors = [f"{TASK_REWARD}: {base.error}"] if base.error else []
            for name, results in extras.items():
                r = results[i]
                value += config.weights[name] * r.value
                components[name] = r.value
                if not r.passed:
                    notes.append(f"{name}: {r.detail}")
                if r.error:
                    errors.append(f"{name}: {r.error}")
            out.append(
                RewardResult(
                    value, base.passed, " | ".join(notes)[:500], "; ".join(errors) or None, components
                )
            )
        return out

    def _safe(self, name: str, problems: list[dict[str, Any]], texts: list[str]) -> list[RewardResult]:
        """A weighted reward over every episode; one that raises is 0 with its error, row by row."""
        try:
            reward = self.scorer.reward(name)
            return list(reward.score_batch(problems, texts))
        except Exception:  # noqa: BLE001 - find the rows that raise, score the others
            out = []
            for p, t in zip(problems, texts, strict=True):
                try:
                    out.append(self.scorer.reward(name).score(p, t))
                except Exception as exc:  # noqa: BLE001 - that reward's counted error, value 0
                    out.append(
                        RewardResult(0.0, False, "reward error", error=f"{type(exc).__name__}: {exc}"[:300])
                    )
            return out
