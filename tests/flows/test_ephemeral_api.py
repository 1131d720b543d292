"""flows/ephemeral_api.py: a child started while the ephemeral API starts writes to the log file, not the terminal,
and this process's own stdout and stderr are restored after; an unusable PREFECT_HOME or database is an environment
error found before the start (exit 2, with or without -v); a server that exits while starting ends the wait at once
with the log's error lines. (The whole path, a real `arcflow run` on Prefect's
ephemeral API, is in tests/flows/test_cli_run.py.)"""

from __future__ import annotations

import os
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


REPO = Path(__file__).resolve().parents[2]


def _arcflow_run(tmp_path: Path, extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`arcflow run` on a pipeline that is never reached: the checks come before Prefect runs anything."""
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(
        f"name: t\nworkdir: {tmp_path / '.arcflow'}\n"
        "nodes:\n  raw:\n    uses: files\n    params: {paths: [data]}\n"
    )
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "a.txt").write_text("some text\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "-f", str(pipeline), *args],
        cwd=REPO,
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.timeout(300)
@pytest.mark.parametrize("verbose", [False, True])
def test_a_file_as_prefect_home_is_an_environment_error(tmp_path: Path, verbose: bool) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    run = _arcflow_run(tmp_path, {"PREFECT_HOME": str(home)}, *(["-v"] if verbose else []))
    assert run.returncode == 2, run.stdout + run.stderr
    assert (
        f"PREFECT_HOME {home} is not a writable folder (a file is at that path, not a folder); set PREFECT_HOME "
        "to a writable folder"
    ) in " ".join(run.stderr.split()), run.stderr
    assert "Traceback" not in run.stderr and "STARTUP_TIMEOUT" not in run.stderr, run.stderr
    assert not (tmp_path / ".arcflow" / "runs").exists()  # nothing ran


def test_check_home_names_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, temporary_settings

    home = tmp_path / "new" / "home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    db = tmp_path / "db" / "prefect.db"
    with temporary_settings({PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{db}"}):
        # a missing home is created; the database's folder is not
        with pytest.raises(ephemeral_api.UnusableHomeError, match=r"its folder .*/db: it does not exist"):
            ephemeral_api.check_home()
        assert home.is_dir() and not list(home.iterdir())  # the write check left nothing behind
        db.mkdir(parents=True)  # a folder where the database file should be
        with pytest.raises(ephemeral_api.UnusableHomeError, match="a folder is at that path") as caught:
            ephemeral_api.check_home()
        assert caught.value.exit_code == 2 and str(db) in str(caught.value)
        db.rmdir()
        ephemeral_api.check_home()  # a writable folder and no file yet: fine
    if os.geteuid() != 0:  # root writes to any folder: a read-only one is checked only as another user
        home.chmod(0o555)
        try:
            with pytest.raises(ephemeral_api.UnusableHomeError, match="is not a writable folder"):
                ephemeral_api.check_home()
        finally:
            home.chmod(0o755)


@pytest.mark.timeout(300)
def test_a_server_that_exits_while_starting_ends_the_wait_with_the_log_s_error(tmp_path: Path) -> None:
    # a database the up-front check does not cover (not a SQLite file): nothing listens on port 9, so the API's
    # startup fails and uvicorn exits 3, which Prefect alone would retry on another port until its timeout (180 s)
    run = _arcflow_run(
        tmp_path,
        {
            "PREFECT_HOME": str(tmp_path / "home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://u:p@127.0.0.1:9/db",
            "PREFECT_API_DATABASE_CONNECTION_TIMEOUT": "2",
        },
    )
    assert run.returncode == 1, run.stdout + run.stderr
    text = " ".join(run.stderr.split())
    assert "Prefect's ephemeral API exited with code 3 while starting; its log ends with: " in text, text
    assert "ConnectionRefusedError" in text and "Application startup failed" in text, text
    assert f"Its output is in {tmp_path / 'home' / ephemeral_api.LOG_NAME}" in text, text
    assert "STARTUP_TIMEOUT" not in text and "Traceback" not in text, text
    assert "Timed out" not in text  # it did not wait for Prefect's timeout
