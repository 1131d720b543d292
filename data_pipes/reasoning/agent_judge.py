"""Judging agent trajectories: which are kept, and the drop reason of the others. Pluggable.

A judge is ``judge(trajectory) -> AgentVerdict``. ``load_judge`` takes a registered name (``rules``, the
default; ``terminal`` keeps every terminal trajectory with well-formed calls) or ``module:function`` (an LLM
judge, a stricter rubric). The rule-based judge checks, in order:

``agent_teacher_error`` the teacher failed (timeout, garbage, no plan for the task);
``agent_bad_tool_call`` a tool call that does not parse (every call must);
``agent_no_terminal``   no final answer within ``max_turns``;
``agent_tool_error``    a tool error that no later successful call recovered from;
``agent_check_failed``  the final answer is wrong, or the task's tool was never used successfully.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from data_pipes.reasoning.agent_loop import Trajectory

REQUIRED_TOOL = {"calculator": "calculator", "python": "python", "files": "read_file", "search": "search"}


@dataclass(frozen=True)
class AgentVerdict:
    ok: bool
    reason: str | None = None  # the drop reason when not ok
    detail: str = ""


Judge = Callable[[Trajectory], AgentVerdict]


def structural(traj: Trajectory) -> AgentVerdict | None:
    """The checks every judge starts with: a failure verdict, or None when the trajectory is well formed."""
    if traj.teacher_error:
        return AgentVerdict(False, "agent_teacher_error", traj.teacher_error[:300])
    if traj.bad_call:
        return AgentVerdict(False, "agent_bad_tool_call", traj.bad_call[:300])
    if not traj.terminal:
        return AgentVerdict(False, "agent_no_terminal", f"no final answer after {traj.turns} turns")
    last_error = max((i for i, e in enumerate(traj.tool_events) if not e.ok), default=None)
    if last_error is not None and not any(e.ok for e in traj.tool_events[last_error + 1 :]):
        ev = traj.tool_events[last_error]
        return AgentVerdict(False, "agent_tool_error", f"{ev.name}: {ev.detail}"[:300])
    return None


def _same(gold: str, answer: str) -> bool:
    g, a = gold.strip().strip("`").casefold(), answer.strip().strip("`").rstrip(".").casefold()
    try:
        return abs(float(g) - float(a)) <= 1e-9 * max(1.0, abs(float(g)))
    except ValueError:
        return g == a


def check_answer(traj: Trajectory) -> AgentVerdict:
    task = traj.task
    spec = (json.loads(task.get("meta") or "{}")).get("agent")
    if spec is None:  # a problem-table row from `problems`: its own verifier
        from data_pipes.reasoning.verify import verify_response

        v = verify_response(task, traj.messages[-1]["content"])
        return AgentVerdict(v.ok, None if v.ok else "agent_check_failed", v.detail[:300])
    tool = REQUIRED_TOOL.get(spec.get("task", ""))
    if tool and not any(e.ok and e.name == tool for e in traj.tool_events):
        return AgentVerdict(False, "agent_check_failed", f"the task needs {tool!r}, never used successfully")
    ok = _same(task["answer"], traj.final or "")
    detail = f"gold={task['answer'][:80]!r} answer={(traj.final or '')[:80]!r}"
    return AgentVerdict(ok, None if ok else "agent_check_failed", detail)


def rules_judge(traj: Trajectory) -> AgentVerdict:
    return structural(traj) or check_answer(traj)


def terminal_judge(traj: Trajectory) -> AgentVerdict:
    return structural(traj) or AgentVerdict(True, None, "terminal")


JUDGES: dict[str, Judge] = {"rules": rules_judge, "terminal": terminal_judge}


def load_judge(spec: str) -> Judge:
    """A registered name or ``package.module:function``."""
    if spec in JUDGES:
        return JUDGES[spec]
    if ":" not in spec:
        raise ValueError(f"unknown judge {spec!r}: use one of {sorted(JUDGES)} or 'module:function'")
    module, _, attr = spec.partition(":")
    fn = getattr(importlib.import_module(module), attr, None)
    if not callable(fn):
        raise ValueError(f"judge {spec!r}: {module} has no callable {attr!r}")
    return fn
