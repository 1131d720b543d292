"""One step's rollouts: draw prompts, sample G completions each, score them, keep the informative groups, and
persist the scored rows so a resumed run never samples or scores that step again.

Rounds: a round draws ``ceil(needed * oversample)`` problems from the sampler (the curriculum, or a seeded epoch
order), every rank samples and scores the groups of its share (candidate c goes to rank ``c % world``), the ranks
exchange their scored groups, and :func:`model.rl.grpo.fill_groups` keeps the first informative ones in candidate
order. Rounds repeat until the batch is full or ``max_rounds`` is spent. A completion's seed is a function of
(run seed, step, round, candidate), so samples do not depend on the number of ranks.

``rollouts/step-00000012.parquet`` (written by rank 0, atomically, before any update of that step) holds every
scored row of the step (kept or filtered) and, in its metadata, the sampler state after the step's draws and the
batch's key: the digest of what determines it (:func:`rollout_digest`: the run's settings that change rollouts,
the starting policy's and the problems' content) and ``policy_step``, the number of updates the sampling policy
had taken (the weights of step N are the starting policy after N - 1 updates under the same settings, CPU runs
being bit-identical). A resumed run reuses a batch only when its key equals the run's own; any other batch is
:class:`RolloutMismatchError`, naming the folder (never discarded: it may be another run's only copy).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from model.rl.grpo import fill_groups
from model.rl.rollout import Policy, SamplingParams
from model.rl.strategies import RolloutStrategy, SingleTurnRollout, completion_text

ROW_FIELDS = (
    "round", "group", "problem", "sample", "problem_id", "prompt_ids", "tokens", "text", "truncated",
    "reward", "passed", "error", "kept", "components", "loss_mask",
)  # fmt: skip
SCHEMA = pa.schema(
    [
        ("round", pa.int32()),
        ("group", pa.int32()),  # candidate index within the step (all rounds)
        ("problem", pa.int64()),  # index into the training problems
        ("sample", pa.int32()),
        ("problem_id", pa.string()),
        ("prompt_ids", pa.list_(pa.int32())),
        ("tokens", pa.list_(pa.int32())),
        ("text", pa.string()),
        ("truncated", pa.bool_()),
        ("reward", pa.float64()),
        ("passed", pa.bool_()),
        ("error", pa.string()),
        ("kept", pa.bool_()),
        ("components", pa.string()),  # JSON {reward name: value} of the task reward and each weighted one
        # per token of `tokens`: 1 the policy's own, 0 an observation (agentic episodes); empty: every token is 1
        ("loss_mask", pa.list_(pa.int8())),
    ]
)


class ProblemSampler(Protocol):
    """Where a step's problems come from (the curriculum implements it too)."""

    def draw(self, n: int) -> list[int]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class EpochSampler:
    """Problem indices in a seeded order, a new permutation each epoch (the default without a curriculum)."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError("no training problems to sample from")
        self.n, self.seed, self.epoch, self.cursor = n, seed, 0, 0

    def _order(self) -> list[int]:
        import numpy as np

        return [int(i) for i in np.random.default_rng([self.seed, self.epoch]).permutation(self.n)]

    def draw(self, n: int) -> list[int]:
        out: list[int] = []
        order = self._order()
        while len(out) < n:
            if self.cursor >= self.n:
                self.epoch, self.cursor = self.epoch + 1, 0
                order = self._order()
            take = min(n - len(out), self.n - self.cursor)
            out += order[self.cursor : self.cursor + take]
            self.cursor += take
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])


@dataclass
class StepRollouts:
    """The scored rows of one step (every group, kept or not) and how they were gathered."""

    rows: list[dict[str, Any]]
    kept_groups: list[int]
    n_groups: int
    filtered_groups: int
    rounds: int
    temperature: float
    timings: dict[str, float] = field(default_factory=dict)  # measured: rollout_s, reward_s, gen_tokens
    reused: bool = False


def rollout_path(folder: str, step: int) -> str:
    return os.path.join(folder, f"step-{step:08d}.parquet")


class RolloutMismatchError(ValueError):
    """A persisted rollout batch was made by a run with other settings, policy or problems."""


# spec fields that never change what a step samples or scores: where things are written, how often the run
# checkpoints, how many steps it runs (a longer run's first steps are the shorter run's), its CPU threads, and the
# OpenAI engine's transport settings (where the server is, retries, timeouts, concurrency, the key's variable
# name, where the weights are written for it: the server samples the weights arcflow hands it)
ROLLOUT_NEUTRAL = ("checkpoint", "rollouts_dir", "metrics", "threads", "stop_after", "steps")
TRANSPORT_NEUTRAL = (
    "api_key_env", "concurrency", "timeout_s", "retries", "base_url", "reload_url", "weights_dir"
)  # fmt: skip


def _sha256_file(path: str, h: Any) -> None:
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def policy_identity(path: str, gguf_file: str | None = None) -> str:
    """The starting policy's content digest (its path is not enough: a benchmark may rewrite one folder). A store
    output folder gives its manifest's content hash; any other folder the bytes of its files (hidden and ``_``
    scratch folders aside), or of ``gguf_file`` alone."""
    from data_pipes.reasoning.teachers.hf import resolve_model_path

    folder = resolve_model_path(path)
    h = hashlib.sha256()
    if gguf_file:
        h.update(b"gguf\0")
        _sha256_file(os.path.join(folder, gguf_file), h)
        return h.hexdigest()[:32]
    manifest = os.path.join(folder, "manifest.json")
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as fh:
            content = json.load(fh).get("content_hash")
        if content:
            return f"store:{content}"
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if name.startswith(".") or name == "manifest.json":
                continue
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, folder).encode() + b"\0")
            _sha256_file(full, h)
    return h.hexdigest()[:32]


def rows_digest(rows: Sequence[dict[str, Any]]) -> str:
    """The content digest of problem rows (not of the Parquet file's path or writer)."""
    body = json.dumps(list(rows), sort_keys=True, default=repr, ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def rollout_digest(
    settings: dict[str, Any], policy: str, train: Sequence[dict[str, Any]], val: Sequence[dict[str, Any]]
) -> str:
    """What determines a run's rollouts: ``settings`` (the spec as JSON, without ``policy`` and ``data``; the
    neutral fields are dropped here), the starting policy's identity and the problems' content."""
    keep = {k: v for k, v in settings.items() if k not in ROLLOUT_NEUTRAL and k not in ("policy", "data")}
    engine = dict(keep.get("rollout", {}).get("engine") or {})
    if engine:
        keep["rollout"] = {
            **keep["rollout"], "engine": {k: v for k, v in engine.items() if k not in TRANSPORT_NEUTRAL}
        }  # fmt: skip
    keep["policy"] = policy
    keep["problems"] = {"train": rows_digest(train), "val": rows_digest(val)}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:32]


def batch_key(digest: str, step: int) -> dict[str, Any]:
    """The key a step's batch carries: the run's rollout digest and the sampling policy's update count."""
    return {"digest": digest, "policy_step": step - 1}


def save_rollouts(
    folder: str, step: int, ro: StepRollouts, sampler_state: dict[str, Any], key: dict[str, Any] | None = None
) -> None:
    from data_pipes.io.atomic import atomic_path

    os.makedirs(folder, exist_ok=True)
    table = pa.Table.from_pylist([{k: r[k] for k in ROW_FIELDS} for r in ro.rows], schema=SCHEMA)
    meta = {
        "kept_groups": ro.kept_groups, "n_groups": ro.n_groups, "filtered_groups": ro.filtered_groups,
        "rounds": ro.rounds, "temperature": ro.temperature, "sampler": sampler_state, "key": key,
    }  # fmt: skip
    table = table.replace_schema_metadata({"arcflow_rl": json.dumps(meta, sort_keys=True)})
    with atomic_path(rollout_path(folder, step)) as tmp:
        pq.write_table(table, tmp)


def load_rollouts(
    folder: str, step: int, expected: dict[str, Any] | None = None
) -> tuple[StepRollouts, dict[str, Any]] | None:
    """The persisted rollouts of ``step`` and the sampler state after them, or None when not saved. With
    ``expected`` (:func:`batch_key`), a batch with another key is :class:`RolloutMismatchError`."""
    path = rollout_path(folder, step)
    if not os.path.isfile(path):
        return None
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[b"arcflow_rl"])
    if expected is not None and meta.get("key") != expected:
        found = meta.get("key")
        why = (
            "it carries no key (written by an older arcflow)"
            if found is None
            else f"it was made by another run (key {found}, this run's {expected}: other policy weights, "
            "problems or rollout/GRPO/reward/optimizer/seed settings)"
        )
        raise RolloutMismatchError(
            f"{path}: cannot reuse the scored rollouts of step {step}: {why}. The rollouts folder "
            f"{folder} belongs to another run; use a fresh rollouts_dir (and checkpoint.dir) for this run, "
            "or rerun with the settings that made it"
        )
    ro = StepRollouts(
        table.to_pylist(), list(meta["kept_groups"]), int(meta["n_groups"]), int(meta["filtered_groups"]),
        int(meta["rounds"]), float(meta["temperature"]), reused=True,
    )  # fmt: skip
    return ro, meta["sampler"]


def completion_seed(seed: int, step: int, rnd: int, cand: int) -> int:
    return ((seed * 1_000_003 + step) * 1009 + rnd) * 100_003 + cand


def collect_step(
    *,
    step: int,
    policy: Policy,
    problems: Sequence[dict[str, Any]],
    prompts: Sequence[Sequence[int]],
    sampler: ProblemSampler,
    score: Callable[[list[dict[str, Any]], list[str]], list[Any]],
    sampling: SamplingParams,
    group_size: int,
    need: int,
    oversample: float,
    max_rounds: int,
    batch_rows: int,
    seed: int,
    truncated: str,
    truncated_reward: float,
    rank: int = 0,
    world: int = 1,
    gather: Callable[[Any], list[Any]] | None = None,
    strategy: RolloutStrategy | None = None,
) -> StepRollouts:
    """Sample, score and fill one step's batch (see the module docstring). ``strategy`` makes and scores the
    samples (model/rl/strategies.py; default: single-turn completions scored by ``score(problems, texts)``, which
    returns objects with ``value``, ``passed`` and ``error``); ``gather`` exchanges a picklable value between
    ranks."""
    rows: list[dict[str, Any]] = []
    kept: list[int] = []
    n_groups = filtered = rounds = 0
    timings = {"rollout_s": 0.0, "reward_s": 0.0, "gen_tokens": 0.0}
    strategy = strategy or SingleTurnRollout(_ScoreOnly(score))
    for rnd in range(max_rounds):
        missing = need - len(kept)
        if missing <= 0:
            break
        rounds += 1
        cands = sampler.draw(max(1, math.ceil(missing * oversample)))
        mine = [(n_groups + c, p) for c, p in enumerate(cands) if (n_groups + c) % world == rank]
        samples = strategy.run(
            policy, [problems[p] for _, p in mine], [prompts[p] for _, p in mine], sampling, group_size,
            [completion_seed(seed, step, rnd, g) for g, _ in mine], batch_rows, timings,
        )  # fmt: skip
        local = []
        for smp in samples:
            g, p = mine[smp.prompt_index]
            res = smp.result
            reward = float(res.value)
            if smp.truncated and truncated == "penalise":
                reward = truncated_reward
            local.append(
                {
                    "round": rnd, "group": g, "problem": p, "sample": smp.sample_index,
                    "problem_id": str(problems[p].get("id", p)), "prompt_ids": list(prompts[p]),
                    "tokens": smp.tokens, "text": smp.text, "truncated": smp.truncated, "reward": reward,
                    "passed": bool(res.passed), "error": res.error or "", "kept": False,
                    "components": json.dumps(dict(getattr(res, "components", None) or {}), sort_keys=True),
                    "loss_mask": list(smp.loss_mask) if smp.loss_mask is not None else [],
                }
            )  # fmt: skip
        every = [r for part in (gather(local) if gather else [local]) for r in part]
        every.sort(key=lambda r: (r["group"], r["sample"]))
        by_group: dict[int, list[float]] = {}
        for r in every:
            by_group.setdefault(r["group"], []).append(r["reward"])
        order = sorted(by_group)
        fill = fill_groups([by_group[g] for g in order], missing)
        kept += [order[i] for i in fill.kept]
        filtered += len(fill.filtered)
        n_groups += len(cands)
        rows += every
    keep = set(kept)
    for r in rows:
        r["kept"] = r["group"] in keep
    return StepRollouts(rows, kept, n_groups, filtered, rounds, sampling.temperature, timings)


def _text(policy: Policy, tokens: Sequence[int], stop_ids: Sequence[int]) -> str:
    """The completion's text without its final stop token (special tokens such as <think> kept)."""
    return completion_text(policy, tokens, stop_ids)


class _ScoreOnly:
    """A bare ``score(problems, texts)`` function in the scorer's place (the single-turn strategy needs only
    ``score_batch``)."""

    def __init__(self, score: Callable[[list[dict[str, Any]], list[str]], list[Any]]) -> None:
        self.score_batch = score
