"""Rich progress bars for `arcflow run`: one bar per node, fed by the engine's progress events (phase, done, total)."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tasks.base import ProgressEvent


class RichProgress:
    def __init__(self, console: Console, nodes: list[str]) -> None:
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

    def update(self, event: ProgressEvent) -> None:
        """One bar per node: the current phase's count, named when the kind has several phases."""
        node = event.node
        label = node if event.phase == "shards" else f"{node} · {event.phase}"
        with self._lock:
            if node not in self.tasks:
                self.tasks[node] = self.progress.add_task(label, total=event.total)
            self.progress.update(self.tasks[node], description=label, completed=event.done, total=event.total)

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)
