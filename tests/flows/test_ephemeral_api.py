"""flows/ephemeral_api.py: a child started while the ephemeral API starts writes to the log file, not the terminal,
and this process's own stdout and stderr are restored after. (The whole path, a real `arcflow run` on Prefect's
ephemeral API, is in tests/flows/test_cli_run.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows import ephemeral_api

CHILD = "import sys; print('child out', flush=True); print('child err', file=sys.stderr, flush=True)"


def test_a_child_started_inside_writes_to_the_log_and_the_terminal_is_restored(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "home" / ephemeral_api.LOG_NAME
    with ephemeral_api._output_to(log):
        child = subprocess.Popen([sys.executable, "-c", CHILD])  # inherits stdout and stderr, as uvicorn does
    # waited for after the block, as the server runs on after it: its output still goes to the log
    assert child.wait(timeout=60) == 0
    print("parent out")
    print("parent err", file=sys.stderr)

    text = log.read_text()
    assert text.startswith("== ") and "Prefect's ephemeral API" in text.splitlines()[0]
    assert "child out" in text and "child err" in text
    assert "parent" not in text
    out, errs = capfd.readouterr()
    assert "parent out" in out and "parent err" in errs
    assert "child" not in out + errs


def test_the_log_is_appended_to_and_moved_aside_when_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / ephemeral_api.LOG_NAME
    with ephemeral_api._output_to(log):
        pass
    with ephemeral_api._output_to(log):
        pass
    assert log.read_text().count("== ") == 2

    monkeypatch.setattr(ephemeral_api, "_ROTATE_BYTES", 10)
    with ephemeral_api._output_to(log):
        pass
    assert log.read_text().count("== ") == 1
    assert log.with_name(log.name + ".1").read_text().count("== ") == 2
