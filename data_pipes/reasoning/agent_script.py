"""`ScriptedAgent`: a teacher (``teachers.base.Teacher`` protocol) that plays the agent offline.

It plans the tool calls a task needs, reads their observations from the conversation and answers from them,
so the default pipeline makes real trajectories (real tools, real observations) with no model. Each turn is a
pure function of the task and the messages so far. ``fault_rate`` makes a seeded share of tasks go wrong on
purpose (wrong answer, malformed call, an unrecovered or a recovered tool error, never finishing), to exercise
the checks; it is 0 by default.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence

from data_pipes.reasoning.teachers.base import GenRequest, GenResponse, OnResult, generate_each
from data_pipes.reasoning.tool_calls import format_tool_call, strip_tool_response

FAULTS = ("wrong_answer", "bad_tool_call", "tool_error", "tool_error_recovered", "no_terminal")
_URL = re.compile(r"^\[1\] id=(\S*) url=(\S*)", re.M)


def _unit(*parts: object) -> float:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:13], 16) / float(1 << 52)


def _say(think: str, action: str) -> str:
    return f"<think>\n{think}\n</think>\n\n{action}"


class ScriptedAgent:
    name = "scripted"

    def __init__(self, fault_rate: float = 0.0, seed: int = 0) -> None:
        self.fault_rate, self.seed = fault_rate, seed

    def fault(self, task_id: str) -> str | None:
        if _unit("fault", self.seed, task_id) >= self.fault_rate:
            return None
        return FAULTS[int(_unit("which", self.seed, task_id) * len(FAULTS))]

    def generate(
        self, requests: Sequence[GenRequest], on_result: OnResult | None = None
    ) -> list[GenResponse]:
        # a task it has no plan for is a teacher error, counted by the caller
        return generate_each(
            requests,
            lambda req: GenResponse(req.key, self.step(req.problem, req.messages)),
            lambda req, exc: GenResponse(req.key, "", "error", error=f"agent_no_plan: {exc}"),
            on_result,
        )

    def close(self) -> None:
        pass

    # ---- one turn --------------------------------------------------------------------------------
    def step(self, task: dict, messages: list[dict]) -> str:
        spec = json.loads(task.get("meta") or "{}")
        plan = spec.get("agent") or _from_problem(spec)
        obs = [strip_tool_response(m["content"]) for m in messages if is_observation(m)]
        users = [m["content"] for m in messages if m["role"] == "user" and not is_observation(m)]
        fault = self.fault(task["id"])
        if fault == "no_terminal":
            return _say("Let me look around first.", format_tool_call("list_files", {"path": "."}))
        if fault == "bad_tool_call" and not obs:
            return _say(
                "I will use a tool.", "<tool_call>calculator\n<arg_key>expression</arg_key>\n</tool_call>"
            )
        if fault in ("tool_error", "tool_error_recovered") and not obs:
            return _say("Let me try the calculator.", format_tool_call("calculator", {"expression": "1 / 0"}))
        if fault == "tool_error":
            return _say("The tool failed; I will guess.", "Answer: unknown")
        if fault == "tool_error_recovered":
            obs = obs[1:]
        steps = {"calculator": _calculator, "python": _python, "files": _files, "search": _search}
        kind = plan.get("task")
        if kind not in steps:
            raise ValueError(f"no plan for task kind {kind!r}")
        text = steps[kind](plan, obs, users)
        if fault == "wrong_answer" and "\nAnswer: " in text:
            head, value = text.rsplit("\nAnswer: ", 1)
            text = f"{head}\nAnswer: {value}0"
        return text


def is_observation(message: dict) -> bool:
    """Observations reach model teachers as user turns (OpenAI servers know no ``observation`` role)."""
    return message["role"] == "observation" or message["content"].lstrip().startswith("<tool_response>")


def _from_problem(spec: dict) -> dict:
    """A problem-table row from `problems` (reasoning-gym arithmetic): the calculator on its expression."""
    expr = ((spec.get("entry") or {}).get("metadata") or {}).get("expression")
    if not expr:
        raise ValueError(f"generator {spec.get('generator')!r} has no expression for the calculator")
    return {"task": "calculator", "expression": expr}


def _calculator(plan: dict, obs: list[str], users: list[str]) -> str:
    if plan.get("clarify") and len(users) < 2:
        return "I can work that out. What did one notebook cost, and how much was shipping?"
    if not obs:
        return _say(
            "This needs exact arithmetic; I will use the calculator.",
            format_tool_call("calculator", {"expression": plan["expression"]}),
        )
    return _say(f"The calculator returned {obs[-1]}.", f"The result is {obs[-1]}.\nAnswer: {obs[-1]}")


def _python(plan: dict, obs: list[str], users: list[str]) -> str:
    if not obs:
        return _say(
            f"I should read {plan['module']} first.", format_tool_call("read_file", {"path": plan["module"]})
        )
    if len(obs) == 1:
        code = f"{obs[0].rstrip()}\n\n\nprint({plan['function']}({plan['arg']}))\n"
        return _say("Now run it in the sandbox.", format_tool_call("python", {"code": code}))
    return _say(
        f"The program printed {obs[-1]}.",
        f"`{plan['function']}({plan['arg']})` returns {obs[-1]}.\nAnswer: {obs[-1]}",
    )


def _files(plan: dict, obs: list[str], users: list[str]) -> str:
    if not obs:
        return _say(
            "Let me see what is in the data folder.", format_tool_call("list_files", {"path": "data"})
        )
    if len(obs) == 1:
        return _say("The file is there; read it.", format_tool_call("read_file", {"path": plan["file"]}))
    n = len(obs[-1].splitlines())
    return _say(f"I count {n} lines.", f"The note has {n} lines.\nAnswer: {n}")


def _search(plan: dict, obs: list[str], users: list[str]) -> str:
    if not obs:
        return _say("Search the index for the word.", format_tool_call("search", {"query": plan["term"]}))
    m = _URL.search(obs[-1])
    if not m:
        return _say("Nothing found.", "Answer: not found")
    value = m.group(2) if plan.get("field") == "url" else m.group(1)
    return _say("The first hit is the page.", f"The page is {value}.\nAnswer: {value}")
