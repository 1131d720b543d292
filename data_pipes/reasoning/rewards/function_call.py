"""``function_call``: step-wise exact match of tool calls in the GLM-4.5 XML template (seed §3.4).

A problem row is one step of a tool-use conversation: ``prompt`` holds the conversation so far and ``answer``
the call(s) the assistant must make next, written in the template (``tool_calls.format_tool_call``); or
``meta.tool_calls`` holds them as ``[{"name": ..., "arguments": {...}}]``. ``meta.tools`` (the tool schemas:
``{"name", "parameters"}`` or OpenAI's ``{"function": {...}}``) types the arguments, so ``"42"`` and ``42``
differ exactly as the tool says.

The reward is 1 only when the visible part of the completion (after ``</think>``) parses (format), holds the
same calls in the same order (names) with equal arguments (parameters), and, with ``strict_format``, nothing
but white space after the last ``</tool_call>``; else 0 with the first mismatch in ``detail``. A multi-step
trajectory is scored step by step with :func:`step_rewards`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from data_pipes.reasoning.answers import split_think
from data_pipes.reasoning.rewards.base import Problem, Reward, RewardResult, problem_meta, register
from data_pipes.reasoning.tool_calls import CALL_END, CALL_START, ToolCall, ToolCallError, parse_tool_calls


class FunctionCallOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    strict_format: bool = Field(True, description="no text may follow the last </tool_call>")


def tool_schemas(meta: dict[str, Any]) -> dict[str, dict]:
    """``{tool name: schema}`` from ``meta.tools`` (a list, or its JSON text)."""
    import json

    tools = meta.get("tools") or []
    if isinstance(tools, str):
        tools = json.loads(tools or "[]")
    out = {}
    for tool in tools:
        spec = tool.get("function", tool) if isinstance(tool, dict) else {}
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            out[spec["name"]] = spec
    return out


def gold_calls(problem: Problem) -> list[ToolCall]:
    """The calls the step expects; ToolCallError when the row's gold is itself malformed."""
    meta = problem_meta(problem)
    listed = meta.get("tool_calls")
    if isinstance(listed, list):
        return [ToolCall(str(c["name"]), dict(c.get("arguments") or {})) for c in listed]
    return parse_tool_calls(str(problem.get("answer") or ""), tool_schemas(meta))


def match_step(
    gold: Sequence[ToolCall], completion: str, schemas: dict[str, dict], strict_format: bool = True
) -> tuple[bool, str]:
    """(exact match, why not) of one assistant turn against the gold calls of that step."""
    _trace, visible = split_think(completion)
    try:
        calls = parse_tool_calls(visible, schemas)
    except ToolCallError as exc:
        return False, f"format: {exc}"
    if strict_format and CALL_START in visible and visible[visible.rfind(CALL_END) + len(CALL_END) :].strip():
        return False, "format: text after the last </tool_call>"
    if len(calls) != len(gold):
        return False, f"calls: {len(calls)} made, {len(gold)} expected"
    for i, (got, want) in enumerate(zip(calls, gold, strict=True)):
        if got.name != want.name:
            return False, f"call {i}: name {got.name!r}, expected {want.name!r}"
        if got.arguments != want.arguments:
            keys = sorted(set(got.arguments) ^ set(want.arguments)) or sorted(
                k for k in want.arguments if got.arguments.get(k) != want.arguments[k]
            )
            return False, f"call {i} ({want.name}): parameters differ at {keys[:5]}"
    return True, f"{len(gold)} call(s) match"


def step_rewards(
    gold_steps: Sequence[Sequence[ToolCall]],
    turns: Sequence[str],
    schemas: dict[str, dict] | None = None,
    strict_format: bool = True,
) -> list[float]:
    """1.0 or 0.0 per step of a trajectory: turn ``i`` against the gold calls of step ``i`` (a missing turn is
    0)."""
    out = []
    for i, gold in enumerate(gold_steps):
        ok = i < len(turns) and match_step(gold, turns[i], schemas or {}, strict_format)[0]
        out.append(float(ok))
    return out


@register
class FunctionCallReward(Reward):
    name = "function_call"
    description = "1 only if the turn's tool calls match the gold step exactly (format, names, parameters)"
    Options = FunctionCallOptions
    options: FunctionCallOptions

    def check(self, problem: Problem) -> str | None:
        try:
            calls = gold_calls(problem)
        except (ToolCallError, KeyError, TypeError, ValueError):
            return "reward_function_call_bad_gold"
        return None if calls else "reward_function_call_no_gold"

    def score(self, problem: Problem, completion: str) -> RewardResult:
        ok, detail = match_step(
            gold_calls(problem), completion, tool_schemas(problem_meta(problem)), self.options.strict_format
        )
        return RewardResult(float(ok), ok, detail)
