"""The agent loop: a teacher plays the agent, a simulated user plays the other side, real tools answer.

All trajectories of a shard advance in lock-step, one assistant turn each per round, so a model teacher gets
one batched ``generate`` call per round. After each assistant turn:

* tool calls (GLM-4.5 XML template) run against the real tools; each result is an ``observation`` message
  wrapped in ``<tool_response>``; a failing tool answers ``error: ...`` (a teacher that knows only user and
  assistant turns reads observations as user turns; the ``checkpoint`` teacher reads them as observations);
* no tool call and a final ``Answer:`` line: the trajectory is terminal;
* otherwise it is a question to the user: the simulated user answers from the task's scripted reply, then
  asks for the final answer; it also ends the dialogue when the agent is done.

A malformed tool call, a teacher error or ``max_turns`` assistant turns without an answer stop the loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from data_pipes.reasoning.answers import final_answer
from data_pipes.reasoning.teachers.base import GenRequest
from data_pipes.reasoning.tool_calls import ToolCallError, format_tool_response, parse_tool_calls
from data_pipes.reasoning.tools import Tool, ToolError

SYSTEM = (
    "You are an agent with tools. To call one, write\n<tool_call>name\n<arg_key>key</arg_key>\n"
    "<arg_value>value</arg_value>\n</tool_call>\n(strings verbatim, other values as JSON). Tool results come "
    "back in <tool_response>. Ask the user when the task lacks information. When done, end with a line "
    "'Answer: <answer>'.\n\nTools:\n{tools}"
)
NUDGE = "Please give your final answer."


@dataclass
class ToolEvent:
    name: str
    ok: bool
    detail: str


@dataclass
class Trajectory:
    task: dict[str, str]
    messages: list[dict[str, str]]
    turns: int = 0
    terminal: bool = False
    final: str | None = None
    bad_call: str | None = None
    teacher_error: str | None = None
    tool_events: list[ToolEvent] = field(default_factory=list)
    replies_used: int = 0

    @property
    def active(self) -> bool:
        return not (self.terminal or self.bad_call or self.teacher_error)


def system_prompt(tools: dict[str, Tool]) -> str:
    return SYSTEM.format(tools="\n".join(json.dumps(t.schema(), sort_keys=True) for t in tools.values()))


def for_teacher(messages: list[dict[str, str]], teacher: Any = None) -> list[dict[str, str]]:
    """The conversation as ``teacher`` reads it. A teacher that knows the ``observation`` role of
    docs/CHAT_CONTRACT.md (its ``observation_role`` is True: the ``checkpoint`` teacher, our own model, trained on
    records with that role and prompted through the same chat template) sees tool results as observation turns, as
    SFT records and agentic RL have them; any other (HTTP APIs, HF models, the scripted agent know only system,
    user and assistant) sees them as user turns."""
    if getattr(teacher, "observation_role", False):
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    return [
        {"role": "user" if m["role"] == "observation" else m["role"], "content": m["content"]}
        for m in messages
    ]


_for_teacher = for_teacher  # the old private name


def _user_reply(traj: Trajectory) -> str:
    meta = json.loads(traj.task.get("meta") or "{}")
    reply = ((meta.get("agent") or {}).get("clarify") or {}).get("reply")
    if reply and traj.replies_used == 0:
        traj.replies_used += 1
        return str(reply)
    return NUDGE


def _run_tool(traj: Trajectory, tools: dict[str, Tool], name: str, args: dict[str, Any]) -> str:
    if name not in tools:
        traj.tool_events.append(ToolEvent(name, False, "unknown tool"))
        return f"error: unknown tool {name!r}; tools: {', '.join(tools)}"
    try:
        out = tools[name](args)
    except ToolError as exc:
        traj.tool_events.append(ToolEvent(name, False, str(exc)[:300]))
        return f"error: {exc}"
    traj.tool_events.append(ToolEvent(name, True, ""))
    return out


def advance_turn(traj: Trajectory, text: str, tools: dict[str, Tool], schemas: dict[str, dict]) -> None:
    """One assistant turn ``text`` into ``traj``: its tool calls run (an observation each), or its answer ends
    the trajectory, or the simulated user replies; a malformed call sets ``bad_call`` (the loop's rules, shared
    by ``agent_trajectories`` and agentic RL)."""
    traj.turns += 1
    traj.messages.append({"role": "assistant", "content": text})
    try:
        calls = parse_tool_calls(text, schemas)
    except ToolCallError as exc:
        traj.bad_call = str(exc)
        return
    if calls:
        for call in calls:
            out = _run_tool(traj, tools, call.name, call.arguments)
            traj.messages.append({"role": "observation", "content": format_tool_response(out)})
        return
    answer = final_answer(text) if "answer" in text.lower() else None
    if answer is not None:
        traj.terminal, traj.final = True, answer
        return
    traj.messages.append({"role": "user", "content": _user_reply(traj)})


_advance = advance_turn  # the old private name


def run_agent(
    tasks: list[dict[str, str]],
    teacher: Any,
    tools: dict[str, Tool],
    max_turns: int = 8,
    temperature: float = 0.7,
    max_tokens: int = 1024,
    seed: int = 0,
) -> list[Trajectory]:
    """One trajectory per task (in task order)."""
    sys_msg = {"role": "system", "content": system_prompt(tools)}
    schemas = {name: t.parameters for name, t in tools.items()}
    trajs = [Trajectory(t, [sys_msg, {"role": "user", "content": t["prompt"]}]) for t in tasks]
    for turn in range(max_turns):
        active = [tr for tr in trajs if tr.active]
        if not active:
            break
        requests = [
            GenRequest(
                (tr.task["id"], turn),
                for_teacher(tr.messages, teacher),
                temperature,
                max_tokens,
                seed + turn,
                tr.task,
            )
            for tr in active
        ]
        for tr, resp in zip(active, teacher.generate(requests), strict=True):
            if resp.error or resp.finish_reason == "error":
                tr.teacher_error = resp.error or "teacher error"
            elif resp.finish_reason == "length":
                tr.teacher_error = "truncated response"
            else:
                advance_turn(tr, resp.text, tools, schemas)
    return trajs
