"""The GRPO run the launcher starts on every rank: ``python -m model.rl.main spec.json``.

One run: read the spec (:mod:`model.rl.spec`), load the starting policy (:func:`model.rl.rollout.load_policy`: an
arcflow checkpoint or any transformers causal LM) and a frozen copy of it (the reference of the k3 KL, always
logged as KL-to-start), wrap the policy with ``deepspeed.initialize`` exactly as training does (torch's AdamW or
Muon, ZeRO stage, gloo on CPU), resume from the latest RL checkpoint, measure the validation pass rate (greedy),
then run the steps:

1. rollouts (:mod:`model.rl.collect`): reused from ``rollouts/step-N.parquet`` when that step was scored before
   a crash by a run with the same rollout digest (settings, starting weights and problems by content; another
   run's batch is an error naming the folder), else sampled, scored with the reward registry
   (``data_pipes/reasoning/rewards``) and saved;
2. advantages per kept group (:func:`model.rl.grpo.group_advantages`), split into ``grpo.updates`` mini-batches;
   each is one optimizer step whose loss is the clipped policy gradient, aggregated over the whole mini-batch on
   every rank (:func:`model.rl.grpo.token_weights`); the MTP loss and the balance loss are off, the routers count
   no load and their biases are never updated (the loss-free balance is a pre-training device);
3. the temperature controller and the curriculum see the step's rewards; one metrics row is logged.

Checkpoints every ``checkpoint.every`` steps (DeepSpeed state + the sampler, temperature and metrics); at the end
the validation pass rate again, the HF folder export (weights and the tokenizer) and ``rl_summary.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import sys
import time
from typing import Any

import torch
import torch.distributed as dist

from model.rl.spec import RLSpec, load_spec

SUMMARY = "rl_summary.json"


def _spec_digest(spec: RLSpec) -> str:
    keep = spec.model_dump(
        mode="json",
        include={
            "policy",
            "data",
            "rollout",
            "agent",
            "grpo",
            "rewards",
            "curriculum",
            "temperature",
            "seed",
        },
    )
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def _read_problems(path: str | None) -> list[dict[str, Any]]:
    if not path:
        return []
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _gather(value: Any) -> list[Any]:
    if dist.get_world_size() == 1:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


class _ConstantTemperature:
    """The sampling temperature when no controller is configured (the controller's interface)."""

    def __init__(self, value: float) -> None:
        self.temperature = value
        self.events: list[dict[str, Any]] = []

    def observe(self, step: int, mean_reward: float) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.temperature = float(state["temperature"])


def _temperature(spec: RLSpec, validate: Any) -> Any:
    """The dynamic temperature controller (model/rl/temperature.py), or a constant temperature."""
    if spec.temperature is None:
        return _ConstantTemperature(spec.rollout.temperature)
    from model.rl.temperature import TemperatureController

    return TemperatureController(spec.temperature, validate, start=spec.rollout.temperature)


def _sampler(spec: RLSpec, problems: list[dict[str, Any]], measure: Any) -> Any:
    """The difficulty curriculum (model/rl/curriculum.py), or a seeded epoch order over every problem."""
    from model.rl.collect import EpochSampler

    if spec.curriculum is None:
        return EpochSampler(len(problems), spec.seed)
    from model.rl.curriculum import Curriculum

    return Curriculum(problems, spec.curriculum, measure, seed=spec.seed)


def _optimizer(spec: RLSpec, model: torch.nn.Module, is_glm: bool) -> torch.optim.Optimizer:
    """torch's AdamW (decay on matrices only), or Muon + AdamW (model/muon.py) for our model at ZeRO 0."""
    o = spec.optim
    if o.name == "muon":
        if not is_glm or spec.zero_stage:
            raise ValueError(
                "optim.name 'muon' needs an arcflow (GLM) policy and zero_stage 0; use optim.name 'adamw'"
            )
        from model.muon import OptimConfig, build_optimizer

        return build_optimizer(model, OptimConfig(**{k: getattr(o, k) for k in OptimConfig.model_fields}))
    named = sorted((n, p) for n, p in model.named_parameters() if p.requires_grad)
    groups = [
        {"params": [p for _, p in named if p.ndim >= 2], "weight_decay": o.weight_decay},
        {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.adam_betas, eps=o.adam_eps, foreach=False)


def _batch_rows(rows: list[dict[str, Any]], pad: int, device: torch.device) -> tuple[torch.Tensor, list[int]]:
    """prompt + completion per row, right-padded -> ids [B, S], lengths."""
    seqs = [list(r["prompt_ids"]) + list(r["tokens"]) for r in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return ids.to(device), [len(s) for s in seqs]


def _loss_mask(rows: list[dict[str, Any]], width: int, truncated: str) -> torch.Tensor:
    """[B, width-1] 1 where the target (token t+1) is a completion token that carries loss: every completion
    token, or those the row's ``loss_mask`` marks (an agentic episode's own turns, never its observations)."""
    mask = torch.zeros(len(rows), width - 1)
    for i, r in enumerate(rows):
        if r["truncated"] and truncated == "mask":
            continue
        p, n = len(r["prompt_ids"]), len(r["tokens"])
        own = r.get("loss_mask")
        if own is not None and len(own):
            if len(own) != n:
                raise ValueError(
                    f"row {r.get('problem_id')!r}: loss_mask has {len(own)} entries for {n} tokens"
                )
            mask[i, p - 1 : p - 1 + n] = torch.tensor(list(own), dtype=mask.dtype)
        else:
            mask[i, p - 1 : p - 1 + n] = 1.0
    return mask


def run(spec: RLSpec) -> list[dict[str, Any]]:
    """Run GRPO as the spec says; returns the metrics rows (on rank 0; other ranks return [])."""
    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from model.train.main import _single_process_env, _skip_op_builds

    _single_process_env()
    torch.set_num_threads(spec.threads)
    import deepspeed

    if not cuda:
        _skip_op_builds()
    from data_pipes.reasoning.rewards import RewardsConfig, Scorer
    from model.rl import collect as col
    from model.rl.grpo import group_advantages, policy_loss, token_logprobs, token_weights
    from model.rl.rollout import SamplingParams, load_policy
    from model.rl.strategies import make_strategy
    from model.train import checkpoint

    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo", verbose=False)
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")

    policy = load_policy(spec.policy.path, spec.policy.gguf_file)
    model = policy.model
    torch.manual_seed(spec.seed)
    if spec.precision == "bf16":
        model.to(torch.bfloat16)
    if policy.is_glm:
        for router in model.routers():
            router.count_load = False  # no balance update during RL
            if spec.precision == "bf16":
                router.float()
    model.to(device)
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    tok = policy.tokenizer
    pad = tok.pad_token_id or 0
    train = _read_problems(spec.data.train)
    val = _read_problems(spec.data.val)[: spec.val.limit]
    # what this run's rollouts are made from: a persisted batch with another key is never reused
    rollout_digest = col.rollout_digest(
        spec.model_dump(mode="json"), col.policy_identity(spec.policy.path, spec.policy.gguf_file), train, val
    )
    scorer = Scorer(RewardsConfig(**spec.rewards))
    # how a sample is made and scored: one completion (single_turn) or an episode through the tools (agentic)
    strategy = make_strategy(spec.rollout.strategy, scorer, spec.agent, spec.rollout.thinking)
    served = spec.rollout.engine if spec.rollout.engine.name == "openai" else None
    if served is not None:  # samples from the user's vLLM/SGLang server (model/rl/openai_engine.py)
        from model.rl.openai_engine import OpenAIEngine, OpenAISingleTurnRollout

        strategy = OpenAISingleTurnRollout(scorer, OpenAIEngine.from_spec(served), spec.rollout.thinking)
    prompts = [strategy.prompt(tok, p) for p in train]
    val_prompts = [strategy.prompt(tok, p) for p in val]
    stops = policy.stop_ids(spec.rollout.stop)

    optimizer = _optimizer(spec, model, policy.is_glm)
    micro = spec.grpo.micro_batch
    ds_config = {
        "train_batch_size": micro * world,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": 1,
        "zero_optimization": {"stage": spec.zero_stage},
        "gradient_clipping": spec.optim.clip if spec.zero_stage > 0 else 0.0,
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }
    if spec.precision == "bf16" and spec.zero_stage > 0:
        ds_config["bf16"] = {"enabled": True}
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    torch.set_num_threads(spec.threads)
    module = engine.module
    policy.model = module
    params = [p for p in module.parameters() if p.requires_grad]

    ckpt_dir = spec.checkpoint.dir
    metrics_path = spec.metrics or os.path.join(ckpt_dir, "metrics.parquet")
    step, streak, saved_rows, summary = 0, 0, [], {}
    resumed = checkpoint.load(engine, ckpt_dir)
    if resumed is not None:
        tag, client = resumed
        if client.get("spec") != _spec_digest(spec):
            raise ValueError(
                f"{ckpt_dir}/{tag} was written by a run with other policy/data/rollout/grpo/reward settings; use a "
                "fresh checkpoint.dir, or restore the spec it was written with"
            )
        if client.get("rollouts", rollout_digest) != rollout_digest:
            raise ValueError(
                f"{ckpt_dir}/{tag} was written by a run from other starting weights or problems (rollout digest "
                f"{client['rollouts']}, this run's {rollout_digest}); use a fresh checkpoint.dir and rollouts_dir"
            )
        step, streak, summary = int(client["step"]), int(client["streak"]), dict(client["summary"])
        with open(os.path.join(ckpt_dir, tag, "metrics.json"), encoding="utf-8") as fh:
            saved_rows = json.load(fh)
    log = _Log(metrics_path, saved_rows, rank == 0)

    def _sample(
        rows: list[dict[str, Any]],
        row_prompts: list[list[int]],
        temperature: float,
        k: int,
        seed_of: Any,
        max_new: int,
    ) -> list[int]:
        """Correct samples per row (k each at ``temperature``; greedy at 0), rows split over the ranks."""
        sp = SamplingParams(max_new, temperature, spec.rollout.top_p if temperature > 0 else 1.0, stops)
        mine = list(range(rank, len(rows), world))
        samples = strategy.run(
            policy, [rows[i] for i in mine], [row_prompts[i] for i in mine], sp, k, [seed_of(i) for i in mine],
            spec.rollout.batch,
        )  # fmt: skip
        local = {i: 0 for i in mine}
        for smp in samples:
            local[mine[smp.prompt_index]] += int(smp.result.passed)
        merged: dict[int, int] = {}
        for part in _gather(local):
            merged.update(part)
        return [merged[i] for i in range(len(rows))]

    def validate(temperature: float = 0.0) -> float | None:
        """Pass rate on the validation problems (greedy at temperature 0), over every rank."""
        if not val:
            return None
        max_new = spec.val.max_new_tokens or spec.rollout.max_new_tokens
        seed_of = lambda i: col.completion_seed(spec.seed, -1, 0, i)  # noqa: E731
        return sum(_sample(val, val_prompts, temperature, 1, seed_of, max_new)) / len(val)

    def measure(indices: list[int], k: int) -> list[int]:
        """Correct samples of k per training problem with the current policy (the curriculum's pools)."""
        seed_of = lambda j: col.completion_seed(spec.seed, -2, k, indices[j])  # noqa: E731
        rows, row_prompts = [train[i] for i in indices], [prompts[i] for i in indices]
        return _sample(rows, row_prompts, temp.temperature, k, seed_of, spec.rollout.max_new_tokens)

    temp = _temperature(spec, validate)
    sampler = _sampler(spec, train, measure)
    if resumed is not None:
        sampler.load_state_dict(client["sampler"])
        temp.load_state_dict(client["temperature"])

    def serve(at: int) -> None:
        """The OpenAI engine: the current policy to the server's folder (and its reload endpoint)."""
        if served is None:
            return
        if rank == 0:
            from model.rl.openai_engine import publish_weights

            folder = served.weights_dir or os.path.join(ckpt_dir, "served")
            export = lambda out: _export(policy, module, out, spec.precision)  # noqa: E731
            publish_weights(export, folder, at, served.reload_url, served.timeout_s)
        dist.barrier()

    serve(step)
    if "val_before" not in summary:
        summary["val_before"] = validate()
    if rank == 0:
        print(
            f"[grpo] world {world}, {len(train)} train / {len(val)} val problems, policy {policy.source}, "
            + (f"resumed at step {step}" if resumed else "from the start")
            + f", validation pass rate {summary['val_before']}",
            flush=True,
        )

    def save(at: int) -> None:
        client = {
            "step": at, "streak": streak, "summary": summary, "sampler": sampler.state_dict(),
            "temperature": temp.state_dict(), "spec": _spec_digest(spec), "rollouts": rollout_digest,
        }  # fmt: skip
        tag = checkpoint.save(engine, ckpt_dir, at, client)
        dist.barrier()
        if rank == 0:
            from data_pipes.io.atomic import atomic_write_text

            atomic_write_text(os.path.join(ckpt_dir, tag, "metrics.json"), json.dumps(log.rows))
            checkpoint.mark_latest(ckpt_dir, tag)
            checkpoint.prune(ckpt_dir, spec.checkpoint.keep)
        dist.barrier()

    from model.muon import set_lr

    last = min(spec.steps, spec.stop_after) if spec.stop_after else spec.steps
    while step < last:
        step_no = step + 1
        started = time.perf_counter()
        key = col.batch_key(rollout_digest, step_no)
        loaded = col.load_rollouts(spec.rollouts_dir, step_no, key)
        if loaded is not None:
            ro, sampler_state = loaded
            sampler.load_state_dict(sampler_state)
        else:
            sp = SamplingParams(spec.rollout.max_new_tokens, temp.temperature, spec.rollout.top_p, stops)
            ro = col.collect_step(
                step=step_no, policy=policy, problems=train, prompts=prompts, sampler=sampler,
                score=scorer.score_batch, sampling=sp, group_size=spec.rollout.group_size,
                need=spec.rollout.prompts_per_step, oversample=spec.rollout.oversample,
                max_rounds=spec.rollout.max_rounds, batch_rows=spec.rollout.batch, seed=spec.seed,
                truncated=spec.rollout.truncated, truncated_reward=spec.rollout.truncated_reward,
                rank=rank, world=world, gather=_gather, strategy=strategy,
            )  # fmt: skip
            # before the batch is saved: a rerun once the endpoint is fixed samples the step again
            failed = all_error_rewards(ro.rows)
            if failed:
                raise RewardFailedError(reward_failure_message(step_no, failed))
            if rank == 0:
                col.save_rollouts(spec.rollouts_dir, step_no, ro, sampler.state_dict(), key)
            dist.barrier()
        trained = time.perf_counter()
        stats = no_update_stats()
        if ro.kept_groups:
            streak = 0
            stats = _train_on(
                ro, spec, engine, module, reference, policy.is_glm, params, pad, device, rank, world,
                group_advantages, policy_loss, token_logprobs, token_weights, set_lr,
            )  # fmt: skip
        else:
            streak += 1
            if streak >= spec.grpo.max_filtered_steps:
                raise RuntimeError(
                    f"step {step_no}: every sampled group had equal rewards for {streak} steps in a row (all "
                    "right or all wrong): the problems are too easy or too hard for this policy. Pick problems "
                    "the starting policy solves sometimes (pass@k between about 5% and 60%), raise "
                    "rollout.group_size or rollout.max_rounds, or use the curriculum"
                )
        train_s = time.perf_counter() - trained
        serve(step_no)
        rewards = [r["reward"] for r in ro.rows]
        # the policy's own tokens (an agentic episode's observations are not its response)
        lens = [sum(r["loss_mask"]) if r.get("loss_mask") else len(r["tokens"]) for r in ro.rows]
        reward_mean = sum(rewards) / max(len(rewards), 1)
        temp_before = ro.temperature
        stage = getattr(sampler, "stage", None)
        if hasattr(sampler, "observe"):
            sampler.observe(step_no, reward_mean)
        temp.observe(step_no, reward_mean)
        step = step_no
        val_now = None
        if spec.val.every and step % spec.val.every == 0 and step < spec.steps:
            val_now = validate()
        log.add(
            {
                "step": step, "reward": reward_mean,
                "pass_rate": sum(int(r["passed"]) for r in ro.rows) / max(len(ro.rows), 1),
                "temperature": temp_before, "groups": ro.n_groups, "kept_groups": len(ro.kept_groups), "stage": stage,
                "filtered_share": ro.filtered_groups / max(ro.n_groups, 1), "rounds": ro.rounds,
                "response_len": sum(lens) / max(len(lens), 1),
                "truncated_share": sum(int(r["truncated"]) for r in ro.rows) / max(len(ro.rows), 1),
                "reward_errors": sum(1 for r in ro.rows if r["error"]), "val_pass_rate": val_now, **stats,
                "lr": spec.optim.lr, "reused_rollouts": ro.reused,
                "rollout_s": ro.timings.get("rollout_s"), "reward_s": ro.timings.get("reward_s"),
                "train_s": train_s, "gen_tok_s": ro.timings.get("gen_tokens", 0.0)
                / max(ro.timings.get("rollout_s", 0.0), 1e-9) if not ro.reused else None,
                "step_s": time.perf_counter() - started,
            }
        )  # fmt: skip
        if spec.checkpoint.every and step % spec.checkpoint.every == 0 and step < spec.steps:
            save(step)
    if step >= spec.steps:
        summary["val_after"] = validate()
        summary["steps"] = step
        summary["temperature_events"] = temp.events
        if hasattr(sampler, "report"):
            summary["curriculum"] = sampler.report()
            summary["curriculum_pass_rates"] = sampler.pass_rate_rows()
        if checkpoint.latest_tag(ckpt_dir) != checkpoint.tag_of(step):
            save(step)
        if rank == 0:
            if spec.checkpoint.export:
                _export(policy, module, spec.checkpoint.export, spec.precision)
            _write_summary(spec, summary, scorer, train, strategy)
        log.save()
    dist.barrier()
    return log.rows if rank == 0 else []


def _train_on(
    ro: Any, spec: RLSpec, engine: Any, module: torch.nn.Module, reference: torch.nn.Module, is_glm: bool,
    params: list[torch.nn.Parameter], pad: int, device: torch.device, rank: int, world: int,
    group_advantages: Any, policy_loss: Any, token_logprobs: Any, token_weights: Any, set_lr: Any,
) -> dict[str, float]:  # fmt: skip
    """The optimizer steps of one rollout batch (``grpo.updates`` mini-batches of the kept groups)."""
    g = spec.grpo
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in ro.rows:
        if r["kept"]:
            groups.setdefault(r["group"], []).append(r)
    order = sorted(groups)
    rewards = torch.tensor([[r["reward"] for r in groups[k]] for k in order], dtype=torch.float64)
    adv = group_advantages(rewards, g.scale_std)
    for i, k in enumerate(order):
        for j, r in enumerate(groups[k]):
            r["advantage"] = float(adv[i, j])
    chunks = [order[i :: g.updates] for i in range(g.updates)]  # mini-batches of groups
    chunks = [c for c in chunks if c]
    micro = g.micro_batch
    totals = {"loss": 0.0, "kl_to_start": 0.0, "clip_frac": 0.0, "grad_norm": 0.0}
    old: dict[tuple[int, int], torch.Tensor] = {}
    if len(chunks) > 1:  # the behaviour policy's log-probs, before the first update
        with torch.no_grad():
            mine_all = [
                r for chunk in chunks for i, k in enumerate(chunk) if i % world == rank for r in groups[k]
            ]
            for s in range(0, len(mine_all), micro):
                part = mine_all[s : s + micro]
                ids, lens = _batch_rows(part, pad, device)
                lp = token_logprobs(module, ids, lens, is_glm)
                for r, row_lp in zip(part, lp, strict=True):
                    old[(r["group"], r["sample"])] = row_lp
    for chunk in chunks:
        rows = [r for k in chunk for r in groups[k]]
        masks = [
            _loss_mask([r], len(r["prompt_ids"]) + len(r["tokens"]), spec.rollout.truncated) for r in rows
        ]
        n_tokens = int(sum(float(m.sum()) for m in masks))
        n_seqs = sum(1 for m in masks if float(m.sum()) > 0)
        mine = [r for i, k in enumerate(chunk) for r in groups[k] if i % world == rank]
        per_rank = [sum(len(groups[k]) for i, k in enumerate(chunk) if i % world == q) for q in range(world)]
        n_micro = max(1, math.ceil(max(per_rank) / micro))
        if engine.train_batch_size() != n_micro * micro * world:
            engine.set_train_batch_size(n_micro * micro * world)
        set_lr(engine.optimizer, spec.optim.lr)
        sums = [0.0, 0.0, 0.0]
        grad_norm = 0.0
        for j in range(n_micro):
            part = mine[j * micro : (j + 1) * micro]
            dummy = not part
            if dummy:  # this rank has fewer rows: a zero-weight pass keeps the collective steps aligned
                part = rows[:1]
            ids, lens = _batch_rows(part, pad, device)
            lp = token_logprobs(engine, ids, lens, is_glm)
            mask = _loss_mask(part, ids.shape[1], spec.rollout.truncated).to(device)
            if dummy:
                mask = mask * 0
            w = token_weights(mask, g.aggregation, n_seqs, n_tokens)
            with torch.no_grad():
                ref = token_logprobs(reference, ids, lens, is_glm)
            if old:
                old_lp = torch.stack([_pad_to(old[(r["group"], r["sample"])], lp.shape[1]) for r in part]).to(
                    device
                )
            else:
                old_lp = lp.detach()
            a = torch.tensor([r["advantage"] for r in part], dtype=lp.dtype, device=device)
            parts = policy_loss(
                lp, old_lp, a, w, eps_low=g.eps_low, eps_high=g.eps_high, ref_logp=ref, kl_coef=g.kl_coef
            )
            engine.backward(parts.loss * world, scale_wrt_gas=False)
            with torch.no_grad():
                from model.rl.grpo import k3_kl

                tm = token_weights(mask, "token_mean", n_seqs, n_tokens)
                sums[0] += parts.pg
                sums[1] += float((tm * k3_kl(lp.detach(), ref)).sum())
                sums[2] += parts.clipped
            if j == n_micro - 1 and spec.zero_stage == 0:
                grad_norm = _clip(params, spec.optim.clip)
            engine.step()
        if spec.zero_stage > 0:
            grad_norm = float(engine.get_global_grad_norm() or 0.0)
        loss, kl, clipped = _all_sum(sums, device)
        if not math.isfinite(loss):
            raise FloatingPointError(f"GRPO loss {loss} is not finite; lower optim.lr")
        totals["loss"] += loss / len(chunks)
        totals["kl_to_start"] += kl / len(chunks)
        totals["clip_frac"] += clipped / len(chunks)
        totals["grad_norm"] = max(totals["grad_norm"], grad_norm)
    return totals


def _pad_to(t: torch.Tensor, n: int) -> torch.Tensor:
    return t[:n] if t.shape[0] >= n else torch.cat([t, t.new_zeros(n - t.shape[0])])


def _clip(params: list[torch.nn.Parameter], max_norm: float) -> float:
    from model.train.main import _clip as clip

    return clip(params, max_norm)


class _Log:
    """Metrics rows: appended to ``metrics.jsonl`` as they come, ``metrics.parquet`` at the end."""

    def __init__(self, parquet_path: str, rows: list[dict[str, Any]], active: bool) -> None:
        self.path, self.rows, self.active = parquet_path, list(rows), active
        self.jsonl = os.path.splitext(parquet_path)[0] + ".jsonl"
        if active:
            os.makedirs(os.path.dirname(os.path.abspath(parquet_path)), exist_ok=True)
            with open(self.jsonl, "w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in self.rows)

    def add(self, row: dict[str, Any]) -> None:
        if self.active:
            self.rows.append(row)
            with open(self.jsonl, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
            print(
                f"[grpo] step {row['step']} reward {row['reward']:.4f} pass {row['pass_rate']:.3f} "
                f"kept {row['kept_groups']}/{row['groups']} len {row['response_len']:.1f}",
                flush=True,
            )

    def save(self) -> None:
        if self.active:
            import pyarrow as pa
            import pyarrow.parquet as pq

            from data_pipes.io.atomic import atomic_path

            with atomic_path(self.path) as tmp:
                pq.write_table(pa.Table.from_pylist(self.rows), tmp)


def _export(policy: Any, module: torch.nn.Module, out: str, precision: str) -> None:
    """The final policy as an HF folder (weights, config, tokenizer with its chat template)."""
    os.makedirs(out, exist_ok=True)
    if policy.is_glm:
        from model.export import save_hf

        save_hf(module, out, dtype=torch.bfloat16 if precision == "bf16" else None)
    else:
        module.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)


class RewardFailedError(RuntimeError):
    """A reward raised on every one of its calls in a step (an unreachable judge, bad options)."""


def _reward_error(error: str, name: str, names: list[str]) -> str | None:
    """The part of a row's error text (the scorer's "name: message; other: message") that is ``name``'s, or None."""
    if error.startswith(f"{name}: "):
        start = len(name) + 2
    elif f"; {name}: " in error:
        start = error.index(f"; {name}: ") + len(name) + 4
    else:
        return None
    ends = [error.find(f"; {o}: ", start) for o in names if o != name]
    return error[start : min([e for e in ends if e >= 0], default=len(error))]


def all_error_rewards(rows: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
    """(reward, calls, first error) of every reward component that raised on all of its calls in a step's rows (a
    row calls each reward in its ``components``); a reward with some good calls is not in it (its errors are
    counted, as always)."""
    calls: dict[str, int] = {}
    errors: dict[str, int] = {}
    first: dict[str, str] = {}
    for r in rows:
        names = list(json.loads(r.get("components") or "{}"))
        for name in names:
            calls[name] = calls.get(name, 0) + 1
            message = _reward_error(r.get("error") or "", name, names)
            if message is not None:
                errors[name] = errors.get(name, 0) + 1
                first.setdefault(name, message)
    return [(n, calls[n], first[n]) for n in sorted(calls) if errors.get(n, 0) == calls[n]]


def reward_failure_message(step: int, failed: list[tuple[str, int, str]]) -> str:
    """One line (the launcher reports the ranks' last error line): each failed reward, its count and first error."""
    parts = [
        # "] " would cut the line where the launcher reads the ranks' error ("[Errno 111] Connection refused")
        f"reward {name!r} raised on all {n} of its calls (first error: "
        + " ".join(message.split()).replace("[", "(").replace("]", ")")[:300]
        + ")"
        for name, n, message in failed
    ]
    return (
        f"step {step}: {'; '.join(parts)}: every sample would score 0 from it and the run learn nothing. Check "
        "that the reward's endpoint is up and reachable from the ranks (rewards.options.<reward>.base_url, model, "
        "api_key_env), or fix its options in rewards.options, or drop it from rewards.weights"
    )


def no_update_stats() -> dict[str, float | None]:
    """The training metrics of a step whose groups were all filtered (no update): nothing was optimised (loss,
    clip share and gradient norm 0) and the KL to the start was not measured (None, not 0: the policy has moved)."""
    return {"loss": 0.0, "kl_to_start": None, "clip_frac": 0.0, "grad_norm": 0.0}


def _reward_entry(role: str) -> dict[str, Any]:
    return {"role": role, "scored": 0, "passed": 0, "penalised": 0, "errors": 0, "reward_sum": 0.0,
            "not_applicable": 0, "reason": ""}  # fmt: skip


def _write_summary(
    spec: RLSpec, summary: dict[str, Any], scorer: Any, train: list[dict[str, Any]], strategy: Any
) -> None:
    """rl_summary.json beside the checkpoints: validation before/after and, per reward (each row's task reward and
    every weighted one), rows scored, passed (task), penalised, errors and mean value over every persisted rollout
    (so a resumed run reports the same figures as an uninterrupted one); a weighted reward that does not apply to a
    row (its ``check`` reason, e.g. ``code`` without tests) counts as ``not_applicable`` with that reason."""
    import pyarrow.parquet as pq

    from model.rl.collect import rollout_path

    per_reward: dict[str, dict[str, Any]] = {}
    weighted = list(getattr(getattr(scorer, "config", None), "weights", None) or {})
    check = getattr(scorer, "weighted_check", None)
    for s in range(1, int(summary.get("steps", 0)) + 1):
        path = rollout_path(spec.rollouts_dir, s)
        if not os.path.isfile(path):
            continue
        for r in pq.read_table(
            path, columns=["problem", "reward", "passed", "error", "components"]
        ).to_pylist():
            task = strategy.task_reward(train[r["problem"]])
            error = r["error"] or ""
            components = json.loads(r["components"] or "{}") or {task: r["reward"]}
            for name in weighted:
                if name not in components and name != task:  # the row lacks what this reward reads
                    e = per_reward.setdefault(name, _reward_entry("weighted"))
                    e["not_applicable"] += 1
                    e["reason"] = (check(name, train[r["problem"]]) if check else None) or e["reason"]
            for name, value in components.items():
                e = per_reward.setdefault(name, _reward_entry("task" if name == task else "weighted"))
                e["scored"] += 1
                e["passed"] += int(r["passed"]) if name == task else 0  # pass/fail: the task reward's
                e["penalised"] += int(value < 0)  # a penalty fired (language mixing, repetition, format)
                # the scorer's error text is "name: message; other: message", one part per reward that raised
                e["errors"] += int(error.startswith(f"{name}: ") or f"; {name}: " in error)
                e["reward_sum"] += value
    summary = {
        **summary,
        "rewards": [
            {"reward": k, "role": v["role"], "scored": v["scored"],
             "passed": v["passed"] if v["role"] == "task" else None, "penalised": v["penalised"],
             "errors": v["errors"], "mean_reward": round(v["reward_sum"] / max(v["scored"], 1), 6),
             "not_applicable": v["not_applicable"], "not_applicable_reason": v["reason"]}
            for k, v in sorted(per_reward.items(), key=lambda kv: (kv[1]["role"] != "task", kv[0]))
        ],
    }  # fmt: skip
    if hasattr(scorer, "close"):
        scorer.close()
    strategy.close()
    from data_pipes.io.atomic import atomic_write_text

    atomic_write_text(
        os.path.join(spec.checkpoint.dir, SUMMARY), json.dumps(summary, indent=1, sort_keys=True)
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    args = [a for a in args if not a.startswith("--local_rank")]
    if len(args) != 1:
        print("usage: python -m model.rl.main <spec.json>", file=sys.stderr)
        return 2
    spec = load_spec(args[0])
    try:
        run(spec)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
