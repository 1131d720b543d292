"""`agent_trajectories`: multi-turn tool-use conversations (docs/AGENT.md) as chat records.

Tasks come from problem-table inputs (a `problems` node; arithmetic items are solved with the calculator) and
from the kind's own generator of tool-requiring tasks (calculator, python, files, search). Document inputs
(any input whose shards have no ``prompt`` column) build the BM25 index of the ``search`` tool. A teacher
plays the agent (the offline scripted agent for ``teacher.kind: procedural``, else the HTTP / HF backends of
`generate_sft`), a simulated user the other side, and real tools answer. The judge keeps trajectories that end
with an answer and pass their checks.

Accounting: one task in, one record kept or one row dropped with its reason (``agent_teacher_error``,
``agent_bad_tool_call``, ``agent_no_terminal``, ``agent_tool_error``, ``agent_check_failed``).
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from typing import ClassVar

import polars as pl
import pyarrow.parquet as pq
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.reasoning import agent_tasks as gen
from data_pipes.reasoning.agent_judge import load_judge
from data_pipes.reasoning.agent_loop import Trajectory, run_agent
from data_pipes.reasoning.agent_script import ScriptedAgent
from data_pipes.reasoning.problem_table import check_problem_columns
from data_pipes.reasoning.records import CHAT_SCHEMA, frame
from data_pipes.reasoning.teachers.config import TeacherConfig, checkpoint_input, make_teacher
from data_pipes.reasoning.tools import Tool, calculator_tool, file_tools, python_tool, search_tool
from data_pipes.reasoning.tools_search import BM25Index
from tasks.base import DataType, Kind, KindParams, RunContext, ShardTask
from tasks.param_error import ParamError
from tasks.registry import register

DROPPED_SCHEMA: dict[str, pl.DataType] = {
    c: pl.String()
    for c in ("id", "problem_id", "source", "difficulty", "teacher", "reason", "detail", "messages")
}
TASK_KINDS = ("calculator", "python", "files", "search")


class GenerateCounts(KindParams):
    calculator: int = Field(8, ge=0, description="arithmetic tasks (a share need a clarifying question)")
    python: int = Field(8, ge=0, description="'what does function F of module M return' tasks")
    files: int = Field(8, ge=0, description="workspace file tasks")
    search: int = Field(
        8, ge=0, description="'find the page that mentions W' tasks (needs a documents input)"
    )


class AgentParams(KindParams):
    generate: GenerateCounts = Field(default_factory=GenerateCounts, description="generated tasks per kind")
    clarify_share: float = Field(
        0.25, ge=0, le=1, description="share of calculator tasks missing their numbers"
    )
    tasks_per_shard: int = Field(32, ge=1, description="generated tasks per shard")
    teacher: TeacherConfig = Field(
        default_factory=TeacherConfig, description="procedural = the scripted agent"
    )
    scripted_fault_rate: float = Field(0.0, ge=0, le=1, description="scripted agent: share of faulty tasks")
    max_turns: int = Field(8, ge=1, description="assistant turns before a trajectory counts as unfinished")
    judge: str = Field("rules", description="registered judge name or module:function")
    sandbox_timeout_s: float = Field(5.0, gt=0, description="the python tool's wall limit")
    sandbox_memory_mb: int = Field(512, ge=64, description="the python tool's address-space limit")
    search_k: int = Field(3, ge=1, description="results per search")


@register
class AgentTrajectories(Kind):
    name: ClassVar[str] = "agent_trajectories"
    Params = AgentParams
    # documents / problems, plus the checkpoint whose model plays the agent (teacher kind `checkpoint`)
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.DOCUMENTS, DataType.CHECKPOINT)
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {DataType.CHECKPOINT: (0, 1)}
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[int | None] = None
    output_type: ClassVar[DataType] = DataType.CHAT
    packages = ("polars", "httpx")
    description = "tool-use agent trajectories (calculator, python sandbox, search, files), judged"

    def check_params(self, params: AgentParams) -> list[tuple[tuple[str | int, ...], str]]:
        errors = [(("teacher", *path), msg) for path, msg in params.teacher.problems()]
        try:
            load_judge(params.judge)
        except (ValueError, ImportError) as exc:
            errors.append((("judge",), str(exc)))
        return errors

    def check_inputs(self, params: AgentParams, inputs: list[str]) -> list[tuple[tuple[str | int, ...], str]]:  # type: ignore[override]
        name = params.teacher.checkpoint
        if params.teacher.kind == "checkpoint" and name is not None and name not in inputs:
            return [
                (("teacher", "checkpoint"), f"{name!r} is not an input of this node; its inputs are {inputs}")
            ]
        return []

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: AgentParams = ctx.params  # type: ignore[assignment]
        workspace = os.path.join(ctx.out_dir, "_work", "workspace")
        gen.build_workspace(workspace, ctx.seed)
        docs, problems = [], []
        teacher = checkpoint_input(params.teacher, ctx.inputs, ctx.node_id)  # (folder, node) or (None, "")
        for inp in ctx.inputs:
            if inp.data_type != DataType.DOCUMENTS:
                continue
            for path in inp.shards:
                (problems if "prompt" in pq.read_schema(path).names else docs).append(path)
        if params.generate.search and not docs:
            raise ParamError(
                ctx.node_id,
                ("generate", "search"),
                f"generate.search={params.generate.search} needs a documents input for the search index",
                "add one to `inputs:` or set generate.search: 0",
            )
        tasks = [
            ShardTask(
                i, {"problems": p, "docs": docs, "workspace": workspace, "teacher": teacher}, f"problems {p}"
            )
            for i, p in enumerate(problems)
        ]
        items = [(k, i) for k in TASK_KINDS for i in range(getattr(params.generate, k))]
        for start in range(0, len(items), params.tasks_per_shard):
            chunk = items[start : start + params.tasks_per_shard]
            tasks.append(
                ShardTask(
                    len(tasks),
                    {"items": chunk, "docs": docs, "workspace": workspace, "teacher": teacher},
                    f"generated {start}..",
                )
            )
        results = ctx.run_shards(tasks)
        self.summarize(ctx, results)
        return results

    def run_shard(self, params: AgentParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        index = _index(tuple(task.payload["docs"])) if task.payload["docs"] else None
        rows = _task_rows(params, task.payload, index, seed)
        tools = _tools(params, task.payload["workspace"], index)
        teacher = (
            ScriptedAgent(params.scripted_fault_rate, seed)
            if params.teacher.kind == "procedural"
            else make_teacher(params.teacher, seed + task.index, *task.payload["teacher"])
        )
        try:
            trajs = run_agent(
                rows,
                teacher,
                tools,
                params.max_turns,
                params.teacher.temperature,
                params.teacher.max_tokens,
                seed,
            )
        finally:
            teacher.close()
        judge = load_judge(params.judge)
        schemas = json.dumps([t.schema() for t in tools.values()], sort_keys=True)
        kept, dropped, stats = [], [], {}
        for tr in trajs:
            verdict = judge(tr)
            key = f"{tr.task['source']}|{tr.task['difficulty']}"
            stats.setdefault(key, Counter())["tasks"] += 1
            stats[key][verdict.reason or "kept"] += 1
            if verdict.ok:
                kept.append(_record(tr, teacher.name, schemas, params.judge, verdict.detail))
            else:
                dropped.append(
                    _dropped(tr, teacher.name, verdict.reason or "agent_check_failed", verdict.detail)
                )
        return write_shard(
            out_dir,
            task.index,
            frame(kept, CHAT_SCHEMA),
            rows_in=len(trajs),
            dropped=frame(dropped, DROPPED_SCHEMA),
            started=started,
            extra={"by_task": {k: dict(v) for k, v in stats.items()}},
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        merged: dict[str, Counter] = {}
        for r in results:
            for key, counts in r.extra.get("by_task", {}).items():
                merged.setdefault(key, Counter()).update(counts)
        table = []
        for key, c in sorted(merged.items()):
            source, difficulty = key.split("|", 1)
            row = {
                "source": source,
                "difficulty": difficulty,
                "tasks": c["tasks"],
                "kept": c["kept"],
                "pass_rate": round(c["kept"] / c["tasks"], 3) if c["tasks"] else 0.0,
            }
            row.update({k: v for k, v in sorted(c.items()) if k.startswith("agent_")})
            table.append(row)
        if table:
            ctx.add_report("Agent trajectories", table=table)


@functools.lru_cache(maxsize=4)
def _index(paths: tuple[str, ...]) -> BM25Index:
    docs = []
    for path in paths:
        cols = [c for c in ("id", "url", "text") if c in pq.read_schema(path).names]
        data = pl.read_parquet(path, columns=cols)
        for row in data.iter_rows(named=True):
            docs.append((str(row.get("id", "")), str(row.get("url") or ""), str(row.get("text") or "")))
    return BM25Index(docs)


def _task_rows(params: AgentParams, payload: dict, index: BM25Index | None, seed: int) -> list[dict]:
    if "problems" in payload:
        data = pl.read_parquet(payload["problems"])
        check_problem_columns(data.columns, payload["problems"])
        return data.to_dicts()
    rows = []
    for kind, i in payload["items"]:
        if kind == "calculator":
            rows.append(gen.calculator_task(i, seed, params.clarify_share))
        elif kind == "python":
            rows.append(gen.python_task(i, seed))
        elif kind == "files":
            rows.append(gen.files_task(i, seed))
        elif index is not None and (row := gen.search_task(i, seed, index)) is not None:
            rows.append(row)
    return rows


def _tools(params: AgentParams, workspace: str, index: BM25Index | None) -> dict[str, Tool]:
    tools = [
        calculator_tool(),
        python_tool(params.sandbox_timeout_s, params.sandbox_memory_mb),
        *file_tools(workspace),
    ]
    if index is not None:
        tools.append(search_tool(index, params.search_k))
    return {t.name: t for t in tools}


def _mode(tr: Trajectory) -> str:
    firsts = [m["content"] for m in tr.messages if m["role"] == "assistant"][:1]
    return "thinking" if firsts and firsts[0].lstrip().startswith("<think>") else "direct"


def _record(tr: Trajectory, teacher: str, schemas: str, judge: str, detail: str) -> dict:
    mode = _mode(tr)
    meta = {
        "turns": tr.turns,
        "tool_calls": len(tr.tool_events),
        "tool_errors": sum(not e.ok for e in tr.tool_events),
        "judge": judge,
        "verdict": detail,
        "final": tr.final,
        "source": tr.task["source"],
    }
    return {
        "id": f"{tr.task['id']}#0:{mode}",
        "messages": tr.messages,
        "mode": mode,
        "tools": schemas,
        "problem_id": tr.task["id"],
        "domain": "agent",
        "difficulty": tr.task["difficulty"],
        "teacher": teacher,
        "verified": True,
        "meta": json.dumps(meta, sort_keys=True),
    }


def _dropped(tr: Trajectory, teacher: str, reason: str, detail: str) -> dict:
    return {
        "id": f"{tr.task['id']}#0",
        "problem_id": tr.task["id"],
        "source": tr.task["source"],
        "difficulty": tr.task["difficulty"],
        "teacher": teacher,
        "reason": reason,
        "detail": detail,
        "messages": json.dumps(tr.messages),
    }
