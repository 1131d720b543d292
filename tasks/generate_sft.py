"""`generate_sft`: teacher traces for problems, verified and rejection-sampled into chat / SFT records.

Accounting: the rows *in* are the samples drawn (``samples_per_prompt`` per problem, plus the extra draws for
hard prompts), not the problems: each drawn sample leaves as exactly one record (kept) or one dropped row with
its reason (``sft_teacher_error``, ``sft_truncated``, ``sft_too_short``, ``sft_duplicate``, ``sft_incorrect``,
``sft_over_k``, ``sft_bottom_length``). The number of problems is in each shard's ``extra``.

Generation is resumable: responses are appended to ``_work/generations-<shard>.jsonl`` as they arrive, and a
rerun requests only what is missing. With ``drop_bottom_length_frac`` set, a first pass (``ctx.map``)
generates and measures every prompt so the length cut-off is global; the second pass reads the cache.
"""

from __future__ import annotations

import logging
import os
import time
from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.io.digests import file_digests
from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.reasoning import pass_rates
from data_pipes.reasoning.gen_cache import GenCache, cache_path
from data_pipes.reasoning.problem_table import check_problem_columns
from data_pipes.reasoning.records import (
    CHAT_SCHEMA,
    DROPPED_SCHEMA,
    chat_record,
    dropped_row,
    frame,
    pick_mode,
)
from data_pipes.reasoning.rejection import in_bottom, judge, length_cutoff, mean_kept_length
from data_pipes.reasoning.sampling import SamplingPlan, collect
from data_pipes.reasoning.teachers.config import TeacherConfig, checkpoint_input, make_teacher
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.registry import register

log = logging.getLogger(__name__)


class GenerateSftParams(KindParams):
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="the backend and its sampling")
    samples_per_prompt: int = Field(1, ge=1, description="k: samples drawn per problem")
    keep_per_prompt: int = Field(1, ge=1, description="keep up to this many correct samples per problem")
    hard_prompt_extra_samples: int = Field(
        0, ge=0, description="extra draws for prompts below hard_pass_rate"
    )
    hard_pass_rate: float = Field(0.5, ge=0, le=1, description="a prompt is hard below this pass rate")
    drop_bottom_length_frac: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="drop this share of prompts with the shortest mean kept response (GLM-4.5 uses 0.5)",
    )
    thinking_ratio: float = Field(0.5, ge=0, le=1, description="share of records in the thinking format")
    min_response_chars: int = Field(8, ge=0, description="shorter responses are dropped")
    sandbox_timeout_s: float = Field(10.0, gt=0, description="per code problem")
    sandbox_memory_mb: int = Field(1024, ge=64, description="address-space limit of the code sandbox")
    seed: int = Field(0, description="added to the node seed (sampling seeds and the mode mix)")


@register
class GenerateSft(Kind):
    name: ClassVar[str] = "generate_sft"
    Params = GenerateSftParams
    # problems, plus the checkpoint whose model teaches (teacher kind `checkpoint`: expert distillation)
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS, DataType.CHECKPOINT)
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {
        DataType.DOCUMENTS: (1, None),
        DataType.CHECKPOINT: (0, 1),
    }
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = None
    output_type: ClassVar[DataType] = DataType.CHAT
    packages = ("reasoning-gym", "math-verify", "httpx", "polars")
    description = "teacher traces, verified and rejection-sampled into thinking / direct chat records"

    def check_params(self, params: GenerateSftParams) -> list[tuple[tuple[str | int, ...], str]]:
        errors = [(("teacher", *path), msg) for path, msg in params.teacher.problems()]
        if params.keep_per_prompt > params.samples_per_prompt + params.hard_prompt_extra_samples:
            errors.append((("keep_per_prompt",), "more than the samples drawn per prompt"))
        return errors

    def check_inputs(
        self, params: GenerateSftParams, inputs: list[str]
    ) -> list[tuple[tuple[str | int, ...], str]]:  # type: ignore[override]
        name = params.teacher.checkpoint
        if params.teacher.kind == "checkpoint" and name is not None and name not in inputs:
            return [
                (("teacher", "checkpoint"), f"{name!r} is not an input of this node; its inputs are {inputs}")
            ]
        return []

    def signature(self, params: GenerateSftParams) -> str:
        """For a local model: the model files' contents and the transformers / torch versions."""
        if params.teacher.kind != "hf":
            return ""
        from importlib.metadata import PackageNotFoundError, version

        from data_pipes.reasoning.teachers.hf import resolve_model_path

        parts = []
        for dist in ("transformers", "torch"):
            try:
                parts.append(f"{dist}={version(dist)}")
            except PackageNotFoundError:
                parts.append(f"{dist}=missing")
        try:
            root = resolve_model_path(params.teacher.model_path or "")
            names = sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n)))
            for name, digest in zip(names, file_digests([os.path.join(root, n) for n in names]), strict=True):
                parts.append(f"{name}:{digest}")  # contents, never mtimes or the folder's path
        except OSError as exc:
            parts.append(repr(exc))
        return ";".join(parts)

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: GenerateSftParams = ctx.params  # type: ignore[assignment]
        teacher = checkpoint_input(params.teacher, ctx.inputs, ctx.node_id)  # (folder, node) or (None, "")
        tasks = []
        for inp in ctx.inputs:
            if inp.data_type != DataType.DOCUMENTS:
                continue
            for path in inp.shards:
                payload = {"path": path, "cutoff": None, "teacher": teacher}
                tasks.append(ShardTask(len(tasks), payload, label=f"{inp.name}:{path}"))
        return tasks

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: GenerateSftParams = ctx.params  # type: ignore[assignment]
        tasks = self.plan_shards(ctx)
        if params.drop_bottom_length_frac > 0 and tasks:
            measured = ctx.map(_Measure(params, ctx.out_dir, ctx.seed), tasks, phase="measure")
            cutoff = length_cutoff(
                [tuple(x) for part in measured for x in part], params.drop_bottom_length_frac
            )
            tasks = [ShardTask(t.index, {**t.payload, "cutoff": cutoff}, t.label) for t in tasks]
        results = ctx.run_shards(tasks, phase="generate")
        self.summarize(ctx, results)
        return results

    def run_shard(self, params: GenerateSftParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        problems, judged = _generate(params, task, out_dir, seed)
        teacher = make_teacher(params.teacher, 0, *task.payload["teacher"]).name
        sampling = {
            "temperature": params.teacher.temperature,
            "max_tokens": params.teacher.max_tokens,
            "samples_per_prompt": params.samples_per_prompt,
        }
        kept, dropped, stats = [], [], {}
        for prob in problems:
            js = judged[prob["id"]]
            mean = mean_kept_length(js)
            cut = mean is not None and in_bottom(mean, prob["id"], task.payload["cutoff"])
            for j in js:
                reason = "sft_bottom_length" if cut and j.reason is None else j.reason
                if reason is None:
                    mode = pick_mode(seed + params.seed, prob["id"], j.index, params.thinking_ratio)
                    kept.append(chat_record(prob, j, mode, teacher, sampling))
                else:
                    dropped.append(dropped_row(prob, j, teacher, reason))
            correct = sum(bool((j.verdict or {}).get("ok")) for j in js)
            pass_rates.add(
                stats,
                prob.get("source") or "",
                prob["domain"],
                prob["difficulty"],
                problems=1,
                samples=len(js),
                correct=correct,
                solved=int(correct > 0),
                records=sum(1 for r in kept if r["problem_id"] == prob["id"]),
                teacher_errors=sum(j.reason == "sft_teacher_error" for j in js),
            )
        rows_in = sum(len(js) for js in judged.values())
        return write_shard(
            out_dir,
            task.index,
            frame(kept, CHAT_SCHEMA),
            rows_in=rows_in,
            dropped=frame(dropped, DROPPED_SCHEMA),
            started=started,
            extra={
                "problems": len(problems),
                "pass_rates": stats,
                "gen_seconds": round(sum(j.response.seconds for js in judged.values() for j in js), 3),
            },
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        params: GenerateSftParams = ctx.params  # type: ignore[assignment]
        rows = pass_rates.table(pass_rates.merge(r.extra.get("pass_rates", {}) for r in results))
        if not rows:
            return
        teacher = make_teacher(
            params.teacher, 0, *checkpoint_input(params.teacher, ctx.inputs, ctx.node_id)
        ).name
        note = (
            "\n\nRows in are drawn samples (k per problem plus hard-prompt extras); each is kept as one "
            "record or dropped with its reason."
        )
        ctx.add_report("SFT pass rates", table=rows, markdown=pass_rates.markdown(rows, teacher) + note)
        for dataset, errors in pass_rates.unsupported(rows).items():
            log.warning(
                "node %r: teacher %s cannot do dataset %r: all %d of its samples were teacher errors "
                "(e.g. no solver); none of its problems gives a record",
                ctx.node_id,
                teacher,
                dataset,
                errors,
            )


def _generate(params: GenerateSftParams, task: ShardTask, out_dir: str, seed: int):
    """Problems of the shard and their judged samples (generating what the cache lacks)."""
    data = pl.read_parquet(task.payload["path"])
    check_problem_columns(data.columns, task.payload["path"])
    problems = data.to_dicts()
    plan = SamplingPlan(
        params.samples_per_prompt,
        params.hard_prompt_extra_samples,
        params.hard_pass_rate,
        params.teacher.temperature,
        params.teacher.max_tokens,
        seed + params.seed,
        params.sandbox_timeout_s,
        params.sandbox_memory_mb,
    )
    cache = GenCache(cache_path(out_dir, task.index))
    teacher = make_teacher(params.teacher, seed + task.index, *task.payload["teacher"])
    try:
        samples, _requested = collect(problems, plan, teacher, cache)
    finally:
        cache.close()
        teacher.close()
    judged = {pid: judge(s, params.keep_per_prompt, params.min_response_chars) for pid, s in samples.items()}
    return problems, judged


class _Measure:
    """First pass of the length filter: generate a shard, return (mean kept length, problem id) per prompt."""

    def __init__(self, params: GenerateSftParams, out_dir: str, seed: int) -> None:
        self.params, self.out_dir, self.seed = params, out_dir, seed

    def __call__(self, task: ShardTask) -> list[tuple[float, str]]:
        _problems, judged = _generate(self.params, task, self.out_dir, self.seed)
        return [(m, pid) for pid, js in judged.items() if (m := mean_kept_length(js)) is not None]
