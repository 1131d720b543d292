"""The teacher protocol: requests in, responses out; a failure is a response with ``error`` set, never a
raise."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

SYSTEM_PROMPT = (
    "Solve the problem. Think step by step inside <think> and </think>, then write the final answer "
    "on the last line as 'Answer: <answer>'. For code, put the complete solution in one ```python block "
    "after </think>."
)


@dataclass(frozen=True)
class GenRequest:
    """One sample to draw. ``key`` is ``(problem id, sample index)``; ``problem`` is the problem row (the
    procedural teacher reads it, the model teachers only see ``messages``)."""

    key: tuple[str, int]
    messages: list[dict[str, str]]
    temperature: float = 0.7
    max_tokens: int = 1024
    seed: int = 0
    problem: dict[str, str] = field(default_factory=dict)


@dataclass
class GenResponse:
    """What the teacher said. ``finish_reason`` is ``stop`` or ``length`` (truncated) or ``error``."""

    key: tuple[str, int]
    text: str = ""
    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["key"] = list(self.key)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenResponse:
        return cls(**{**data, "key": (str(data["key"][0]), int(data["key"][1]))})


OnResult = Callable[[GenResponse], None]


class Teacher(Protocol):
    """A backend. ``name`` goes into records' ``teacher`` column; ``generate`` calls ``on_result`` as each
    response arrives (so callers can persist it at once) and returns all of them in request order."""

    name: str

    def generate(
        self, requests: Sequence[GenRequest], on_result: OnResult | None = None
    ) -> list[GenResponse]: ...

    def close(self) -> None: ...


def generate_each(
    requests: Sequence[GenRequest],
    answer: Callable[[GenRequest], GenResponse],
    on_error: Callable[[GenRequest, Exception], GenResponse],
    on_result: OnResult | None = None,
) -> list[GenResponse]:
    """The loop of an in-process teacher: answer each request in turn, time it, turn an exception into the
    response ``on_error`` makes (a counted teacher error, never a crash), and report each as it is done."""
    out = []
    for req in requests:
        started = time.perf_counter()
        try:
            resp = answer(req)
        except Exception as exc:  # noqa: BLE001 - whatever the teacher cannot answer is counted by the caller
            resp = on_error(req, exc)
        resp.seconds = time.perf_counter() - started
        if on_result is not None:
            on_result(resp)
        out.append(resp)
    return out


def build_messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
