"""benchmarks/scale.py and web_e2e.py as a user of a fresh clone meets them: shared corpora that are not where the
default says give one line naming the missing file and `--corpora` (no traceback); `arcflow` and `dask` are found
next to the running interpreter, then in the clone's .venv, then on PATH, else a clear error; `--strong` prints each
run once (the series' table comes at the end)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import scale
from tests.test_scale_paired import BASE, BIG

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "script", [["benchmarks/scale.py", "--generate-only", "--sizes", "1000"], ["benchmarks/web_e2e.py"]]
)
def test_missing_corpora_say_the_file_and_the_option(tmp_path: Path, script: list[str]) -> None:
    missing = tmp_path / "no-corpora"
    done = subprocess.run(
        [sys.executable, *script, "--corpora", str(missing), "--cache", str(tmp_path / "cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert str(missing / "web_python_docs.parquet") in lines[0] and "--corpora DIR" in lines[0], lines[0]


def _script(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_executables_next_to_the_interpreter_then_the_venv_then_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_bin, clone, on_path = tmp_path / "env" / "bin", tmp_path / "clone", tmp_path / "path-bin"
    mine = _script(env_bin, "arcflow")
    monkeypatch.setattr(scale, "ROOT", clone)
    monkeypatch.setattr(scale.sys, "executable", str(env_bin / "python"))
    monkeypatch.setenv("PATH", str(on_path))
    venv = _script(clone / ".venv" / "bin", "arcflow")
    found = _script(on_path, "arcflow")
    assert scale.executable("arcflow") == mine

    mine.unlink()
    assert scale.executable("arcflow") == venv
    venv.unlink()
    assert scale.executable("arcflow") == found
    found.chmod(0o644)  # not executable: not taken
    with pytest.raises(SystemExit) as exc:
        scale.executable("arcflow")
    message = str(exc.value)
    assert "no `arcflow` executable next to" in message and str(env_bin / "python") in message
    assert str(clone / ".venv" / "bin") in message and "on PATH" in message


def test_a_strong_run_is_printed_once(capsys: pytest.CaptureFixture[str]) -> None:
    scale._print_strong([BASE, BIG], only=2)  # what --strong prints after its 2-worker run
    out = capsys.readouterr().out
    heads = [line for line in out.splitlines() if " workers, " in line]
    assert len(heads) == 1 and heads[0].startswith("   2 workers, 1,500 docs"), out
    assert "speed-up" in heads[0]  # still against the series' one-worker run

    scale._print_strong([BASE, BIG])  # every run, as before, where no run is named
    heads = [line for line in capsys.readouterr().out.splitlines() if " workers, " in line]
    assert [h.split(" workers")[0].strip() for h in heads] == ["1", "2"]
