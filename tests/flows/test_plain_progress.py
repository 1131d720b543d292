"""`arcflow run` with its output not on a terminal (a file, a scheduler's log): plain progress lines on stderr, each
phase when it starts and ends and its count every PLAIN_EVERY_S seconds between, instead of nothing until the end."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from flows import cli_progress
from flows.cli_progress import RichProgress
from tasks.base import ProgressEvent


def test_plain_lines_when_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    stdout = Console(file=out, force_terminal=False)
    with RichProgress(stdout, ["dedup"], plain=Console(file=err, force_terminal=False, width=200)) as bars:
        bars.update(ProgressEvent("dedup", "hash", 0, 4))
        bars.update(ProgressEvent("dedup", "hash", 1, 4))  # within PLAIN_EVERY_S of the start: not said
        monkeypatch.setattr(cli_progress, "PLAIN_EVERY_S", 0.0)
        bars.update(ProgressEvent("dedup", "hash", 2, 4))  # the interval passed: said
        bars.update(ProgressEvent("dedup", "hash", 2, 4))  # the same count again: not repeated
        bars.update(ProgressEvent("dedup", "hash", 4, 4))
        bars.update(ProgressEvent("dedup", "shards", 3, 3, unit="shards"))
    lines = [line.split(" ", 1)[1] for line in err.getvalue().splitlines()]
    assert lines == [
        "dedup · hash: 0/4 shards",
        "dedup · hash: 2/4 shards",
        "dedup · hash: 4/4 shards",
        "dedup: 3/3 shards",
    ]
    assert out.getvalue() == ""  # the run's own output (its summary) stays apart on stdout
