"""Fixture state built in the background: a test module's heavy, mostly single-core setup, started in its own
process (``python -m MODULE FOLDER RESULT``, which writes RESULT as a pickle) when the session starts, while the
other tests run.

Tests marked ``background_build("name")`` read ``BUILDS[name]``'s result through :func:`build_result`, which starts
the build if it was not yet (a single test file run on its own) and waits for it. tests/conftest.py starts the
builds the selected tests read at the session's start, at a lower CPU priority (as the shared default runs), and
runs their readers late; what still runs at the session's end is killed.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# name -> the module whose `python -m MODULE FOLDER RESULT` builds it
BUILDS = {
    "trace": "tests.flows._trace_build",
    "train_kinds": "tests.tasks._train_build",
    "smollm2": "tests.data_pipes.reasoning._smollm2_build",
    "zero": "tests.model.train._zero_build",
    "datatrove": "tests.data_pipes.web._datatrove_build",
    "grpo": "tests.tasks._grpo_build",
}
NICE = ["nice", "-n", "10"]
TIMEOUT_S = 1800.0

_LOCK = threading.Lock()
_STARTED: dict[str, tuple[subprocess.Popen, Path, Path]] = {}  # name -> (process, result file, log file)


def start_builds(factory: pytest.TempPathFactory, *names: str) -> None:
    """Start the named builds (once per session), without waiting."""
    with _LOCK:
        for name in names:
            if name in _STARTED:
                continue
            folder = factory.mktemp(f"background-{name}")
            result, log = folder / "result.pkl", folder / "build.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [*NICE, sys.executable, "-m", BUILDS[name], str(folder / "build"), str(result)],
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            _STARTED[name] = (proc, result, log)


def build_result(factory: pytest.TempPathFactory, name: str) -> dict:
    """The named build's result, started if it was not yet and waited for; a failed build fails the reader with
    the tail of its log."""
    start_builds(factory, name)
    proc, result, log = _STARTED[name]
    try:
        code = proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        _kill(proc)
        tail = log.read_text()[-3000:]
        raise AssertionError(f"the {name} build did not end in {TIMEOUT_S:.0f} s:\n{tail}") from exc
    if code != 0 or not result.exists():
        raise AssertionError(f"the {name} build failed ({code}):\n{log.read_text()[-3000:]}")
    return pickle.loads(result.read_bytes())  # written by the build, a process of this session


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def stop_builds() -> None:
    """At the session's end: kill the builds still running (their process groups)."""
    with _LOCK:
        for proc, _result, _log in _STARTED.values():
            if proc.poll() is None:
                _kill(proc)
