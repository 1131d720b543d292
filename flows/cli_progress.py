"""Rich progress bars for `arcflow run`: one bar per node, fed by the engine's shard progress."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn


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

    def update(self, node: str, done: int, total: int) -> None:
        with self._lock:
            if node not in self.tasks:
                self.tasks[node] = self.progress.add_task(node, total=total)
            self.progress.update(self.tasks[node], completed=done, total=total)

    def __enter__(self) -> RichProgress:
        self.progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)
