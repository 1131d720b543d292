"""Errors of the orchestrator. A pipeline problem names the file, line and YAML path, and suggests the fix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str  # dotted YAML path, e.g. nodes.clean.params.min_words
    message: str
    hint: str = ""

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class SpecError(Exception):
    """The pipeline is invalid; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.render() for p in problems))


class SelectionError(KeyError):
    """A bad ``--node`` / ``--from`` / ``--to``: an unknown node (with a "did you mean") or flags that conflict.
    A KeyError for the callers that catch one; ``str()`` is the message itself, without KeyError's quotes."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreLockedError(RuntimeError):
    pass


class MissingInputError(RuntimeError):
    pass


class NodeFailedError(RuntimeError):
    pass


class AllQuarantinedError(RuntimeError):
    """A node read rows and quarantined every one of them: its output is unusable, so the run fails there."""
