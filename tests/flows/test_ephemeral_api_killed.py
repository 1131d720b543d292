"""Prefect's ephemeral API ends with the `arcflow run` that started it: a run killed with SIGKILL (its process alone,
not its group) leaves no server behind (flows/api_watchdog.py); a server recorded for a run that is gone is stopped
by the next run's start (flows/ephemeral_api.py, stop_stale_servers), one whose run still runs is left alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from _pipeline_util import write_corpus, write_pipeline
from test_resume import _arcflow, _plugin

from flows import ephemeral_api


def _is_api(proc: psutil.Process) -> bool:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return "uvicorn" in cmd and "prefect.server.api.server:create_app" in cmd


def _api_answers(records: Path) -> bool:
    """Whether the server recorded in ``records`` (the run's, once it started one) answers /api/health."""
    for record in records.glob("*.json"):
        port = json.loads(record.read_text())["port"]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False
    return False


def _gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes of ``procs`` still running (zombies aside) after waiting up to ``timeout`` seconds."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.timeout(120)
def test_kill_9_of_the_run_leaves_no_ephemeral_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_corpus(tmp_path, n_files=20)
    site = _plugin(tmp_path)
    write_pipeline(
        tmp_path,
        {
            "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.01}},
            "upper": {"uses": "slow_upper_test", "inputs": ["raw"]},
        },
    )
    records = tmp_path / "prefect_home" / ephemeral_api.RECORDS_NAME
    victim = _arcflow(tmp_path, site, slow_s="1")  # its own session: the test kills its process only
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while not _api_answers(records):  # the run's API is up (its slow node takes 20 s more)
            assert victim.poll() is None, victim.stdout.read().decode() if victim.stdout else ""
            assert time.monotonic() < deadline, "the run's ephemeral API did not start"
            time.sleep(0.1)
        tree = psutil.Process(victim.pid).children(recursive=True)
        api = [p for p in tree if _is_api(p)]
        assert len(api) == 1, [p.cmdline() for p in tree]
        assert any(arg.endswith("flows/api_watchdog.py") for arg in api[0].cmdline()), api[0].cmdline()
        assert [json.loads(r.read_text())["pid"] for r in records.glob("*.json")] == [api[0].pid]

        os.kill(victim.pid, signal.SIGKILL)  # the driver alone, as `kill -9 <pid>` does
        victim.wait(30)
        survivors = _gone(api, timeout=15)
        assert not survivors, f"the ephemeral API outlived its run: {[p.cmdline() for p in survivors]}"
        # a record left by the killed run names a server that is gone: the next start drops it, stops nothing
        monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect_home"))
        assert ephemeral_api.stop_stale_servers() == []
        assert not list(records.glob("*.json"))
    finally:  # nothing of this test's run outlives it, whatever failed above
        if victim.poll() is None:
            victim.kill()
            victim.wait(30)
        for proc in tree:
            try:
                proc.kill()
            except psutil.Error:
                pass


def test_a_recorded_server_of_a_dead_run_is_stopped_and_one_of_a_live_run_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    folder = ephemeral_api.records_dir()
    folder.mkdir(parents=True)
    # stand-ins for servers (any process: a record names it by pid and start time) and a run that has exited
    stale, kept = (subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2))
    dead_run = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_started = psutil.Process(dead_run.pid).create_time()
    dead_run.wait(30)
    try:

        def record(server: subprocess.Popen[bytes], driver: int, driver_started: float) -> None:
            started = psutil.Process(server.pid).create_time()
            (folder / f"{server.pid}.json").write_text(
                json.dumps(
                    {
                        "pid": server.pid,
                        "started": started,
                        "driver_pid": driver,
                        "driver_started": driver_started,
                        "port": 8123,
                    }
                )
            )

        record(stale, dead_run.pid, dead_started)
        record(kept, os.getpid(), psutil.Process().create_time())
        (folder / "12345678.json").write_text("{not json")

        assert ephemeral_api.stop_stale_servers(grace_s=5) == [stale.pid]
        stale.wait(10)  # reaped already by the stop (it is this process's child here)
        assert not psutil.pid_exists(stale.pid)
        assert kept.poll() is None
        assert sorted(p.name for p in folder.glob("*.json")) == [f"{kept.pid}.json"]
        log = ephemeral_api.log_path().read_text()
        assert f"stopped Prefect's ephemeral API (pid {stale.pid}, port 8123)" in log
        assert f"arcflow run pid {dead_run.pid}, which is gone" in log
    finally:
        for proc in (stale, kept):
            proc.kill()
            proc.wait(10)
