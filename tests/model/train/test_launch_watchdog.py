"""The launch watchdog (model/train/launch_watchdog.py): a launcher started through it from a worker thread of a
driver process, with a rank of its own, is gone with that rank within seconds of a `kill -9` of the driver (they
were reparented to init and kept running before); its exit code passes through; ``launch_command`` puts it in
front of the launcher's argv when given the pid to watch. The launcher here is a small Python program that starts a
sleeping "rank" child, as DeepSpeed's launcher starts its ranks (the real launcher is too slow to start for a unit
test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from model.train.launch import launch_command

REPO = Path(__file__).resolve().parents[3]
LAUNCHER = """
import subprocess, sys, time
rank = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open(sys.argv[1] + ".tmp", "w") as fh:
    fh.write(f"{__import__('os').getpid()} {rank.pid}")
__import__('os').replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""
DRIVER = """
import os, subprocess, sys, threading, time
from model.train.launch import _watched
argv = _watched([sys.executable, "-c", sys.argv[1], sys.argv[2]], sys.executable, os.getpid())
threading.Thread(target=lambda: subprocess.Popen(argv).wait(), daemon=True).start()
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for an init that does not reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.timeout(60)
def test_a_killed_driver_takes_the_launcher_and_its_ranks_with_it(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, LAUNCHER, str(pids_file)], cwd=REPO)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not pids_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        launcher, rank = (int(p) for p in pids_file.read_text().split())
        pids = [launcher, rank]
        assert os.getpgid(rank) == os.getpgid(launcher) == launcher  # a process group of their own
        assert _alive(launcher) and _alive(rank)
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in pids if _alive(p)], "launcher or rank outlived the killed driver"
    finally:
        driver.kill()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_exit_code_passes_through_and_launch_command_wraps() -> None:
    watchdog = REPO / "model" / "train" / "launch_watchdog.py"
    for code in (0, 3):
        argv = [sys.executable, "-P", str(watchdog), str(os.getpid()), "--", sys.executable, "-c"]
        assert subprocess.run([*argv, f"raise SystemExit({code})"], timeout=30).returncode == code
    plan = launch_command("/w/spec.json", 2, master_port=29999, watch_parent=1234)
    assert plan.argv[:6] == [sys.executable, "-P", str(watchdog), "1234", "--", sys.executable]
    assert plan.argv[6:8] == ["-m", "deepspeed.launcher.runner"] and plan.argv[-1] == "/w/spec.json"
    assert launch_command("/w/spec.json", 2, master_port=29999).argv[1:3] == [
        "-m",
        "deepspeed.launcher.runner",
    ]
