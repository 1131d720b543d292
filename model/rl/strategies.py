"""Rollout strategies: how one GRPO sample is made and scored. One class per strategy, registered by name
(``rollout.strategy`` in the spec); the step loop (model/rl/collect.py), validation and the curriculum's
measurements (model/rl/main.py) call the strategy and never branch on its name.

* ``single_turn`` (:class:`SingleTurnRollout`): the prompt rendered as one user turn, one completion sampled by
  the KV-cache engine (model/rl/rollout.py), scored by the reward registry (data_pipes/reasoning/rewards);
* ``agentic`` (model/rl/agentic.py): a multi-turn episode through the agent loop's tools, scored by the agent
  judge; observations in the token sequence carry no loss.

A strategy returns :class:`Rollout` rows: the tokens after the prompt, their loss mask (None: every token is the
policy's own), the text the rewards read, whether the sample was cut, and its ``RewardResult``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from model.rl.rollout import Policy, SamplingParams, generate, render_prompt


@dataclass
class Rollout:
    """One scored sample of prompt ``prompt_index`` (its ``sample_index``-th)."""

    prompt_index: int
    sample_index: int
    tokens: list[int]  # everything after the prompt, the stop token included
    text: str  # what the rewards read
    truncated: bool
    result: Any  # data_pipes.reasoning.rewards.RewardResult
    loss_mask: list[int] | None = None  # 1 per policy token of `tokens`, 0 per observation token; None: all 1


class RolloutStrategy:
    """Base class: ``prompt`` renders a problem, ``run`` samples and scores ``n_samples`` per prompt."""

    name: ClassVar[str]
    # True: inputs without a ``prompt`` column are documents for the strategy (the agent's search index), not
    # problem rows (which the kind would quarantine, ``grpo_no_prompt``)
    uses_documents: ClassVar[bool] = False

    def __init__(self, scorer: Any, agent: Any = None, thinking: bool | None = None) -> None:
        self.scorer, self.agent, self.thinking = scorer, agent, thinking

    def prompt(self, tokenizer: Any, problem: dict[str, Any]) -> list[int]:
        return render_prompt(tokenizer, str(problem["prompt"]), self.thinking)

    def check(self, problem: dict[str, Any]) -> str | None:
        """Why ``problem`` cannot be scored by this strategy (a quarantine reason), or None."""
        return self.scorer.check(problem)

    def task_reward(self, problem: dict[str, Any]) -> str:
        """The name of the reward that decides ``passed`` for ``problem`` (the reports' task reward)."""
        return str(self.scorer.reward_name(problem))

    def setup(
        self, folder: str, seed: int, documents: Sequence[str] = ()
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """On the kind's driver, before the split: (problems this strategy adds to the inputs', the spec's
        ``agent`` block for the launcher). ``folder`` is the strategy's scratch folder in the node's work dir;
        ``documents`` the document shards (with ``uses_documents``)."""
        return [], None

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
    ) -> list[Rollout]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the strategy holds (tools, sandboxes)."""


STRATEGIES: dict[str, type[RolloutStrategy]] = {}


def register_strategy(cls: type[RolloutStrategy]) -> type[RolloutStrategy]:
    if cls.name in STRATEGIES and STRATEGIES[cls.name] is not cls:
        raise ValueError(f"rollout strategy {cls.name!r} registered twice")
    STRATEGIES[cls.name] = cls
    return cls


def make_strategy(name: str, scorer: Any, agent: Any = None, thinking: bool | None = None) -> RolloutStrategy:
    """The registered strategy ``name``; an unknown name lists the valid ones."""
    import model.rl.agentic  # noqa: F401 - registers the agentic strategy

    if name not in STRATEGIES:
        raise ValueError(f"unknown rollout strategy {name!r}; use one of {sorted(STRATEGIES)}")
    return STRATEGIES[name](scorer, agent, thinking)


def completion_text(policy: Policy, tokens: Sequence[int], stop_ids: Sequence[int]) -> str:
    """The completion's text without its final stop token (special tokens such as <think> kept)."""
    ids = list(tokens)
    if ids and ids[-1] in stop_ids:
        ids = ids[:-1]
    return policy.tokenizer.decode(ids, skip_special_tokens=False)


def _add(timings: dict[str, float] | None, key: str, value: float) -> None:
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + value


@register_strategy
class SingleTurnRollout(RolloutStrategy):
    """One completion per sample, scored by the reward registry (the GRPO default)."""

    name = "single_turn"

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
    ) -> list[Rollout]:
        pad = policy.tokenizer.pad_token_id or 0
        started = time.perf_counter()
        comps = []
        per_call = max(1, batch_rows // n_samples)
        for s in range(0, len(prompts), per_call):
            comps += generate(
                policy, list(prompts[s : s + per_call]), sampling, n_samples=n_samples, pad_id=pad,
                seeds=list(seeds[s : s + per_call]),
            )  # fmt: skip
        _add(timings, "rollout_s", time.perf_counter() - started)
        _add(timings, "gen_tokens", float(sum(len(c.tokens) for c in comps)))
        started = time.perf_counter()
        texts = [completion_text(policy, c.tokens, sampling.stop_ids) for c in comps]
        flat = [problems[i // n_samples] for i in range(len(comps))]
        results = self.scorer.score_batch(flat, texts) if comps else []
        _add(timings, "reward_s", time.perf_counter() - started)
        return [
            Rollout(i // n_samples, c.sample_index, list(c.tokens), t, c.truncated, r)
            for i, (c, t, r) in enumerate(zip(comps, texts, results, strict=True))
        ]
