"""Progress of `arcflow run`: on a terminal, one Rich bar per node, fed by the engine's progress events (phase,
done, total); otherwise (output to a file, a scheduler's log) plain lines on ``plain``: each phase when it starts
and ends, and its count every ``PLAIN_EVERY_S`` seconds in between."""

from __future__ import annotations

import threading
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tasks.base import ProgressEvent

PLAIN_EVERY_S = 30.0


class RichProgress:
    def __init__(self, console: Console, nodes: list[str], plain: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self.tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()
        self.plain = None if console.is_terminal else (plain or console)
        self._said: dict[
            tuple[str, str], tuple[float, int]
        ] = {}  # (node, phase) -> (when, done) last printed

    def update(self, event: ProgressEvent) -> None:
        """One bar per node: the current phase's count, named when the kind has several phases."""
        node = event.node
        label = node if event.phase == "shards" else f"{node} · {event.phase}"
        if self.plain is not None:
            self._line(label, event)
            return
        with self._lock:
            if node not in self.tasks:
                self.tasks[node] = self.progress.add_task(label, total=event.total)
            self.progress.update(self.tasks[node], description=label, completed=event.done, total=event.total)

    def _line(self, label: str, event: ProgressEvent) -> None:
        key, now = (event.node, event.phase), time.monotonic()
        finished = event.done >= event.total
        with self._lock:
            last = self._said.get(key)
            if last is not None and (
                last[1] == event.done or (not finished and now - last[0] < PLAIN_EVERY_S)
            ):
                return
            self._said[key] = (now, event.done)
        stamp, out = time.strftime("%H:%M:%S"), self.plain
        if out is not None:
            out.print(
                f"{stamp} {label}: {event.done}/{event.total} {event.unit}", highlight=False, soft_wrap=True
            )

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)
