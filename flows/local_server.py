"""A persistent local Prefect server (API and UI) that `arcflow run` finds and reuses.

`arcflow server start` launches `prefect server start` on loopback as a background process and records it in
``<state dir>/server.json`` (pid, port, URLs, log file). The state dir is ``$ARCFLOW_SERVER_HOME`` when set (a
project folder, say), else ``$PREFECT_HOME/arcflow-server`` (``~/.prefect/arcflow-server``). The server keeps its
database where Prefect keeps it (``$PREFECT_HOME/prefect.db``), so runs stay in the UI across restarts.

`arcflow run`, `arcflow deploy` and `run --deployment` call :func:`detect` when no Prefect API is configured
(``PREFECT_API_URL`` neither in the environment nor in the active Prefect profile): a recorded server whose process
is alive and whose ``/api/health`` answers is used, so a run skips the ~10 s start of Prefect's ephemeral API and
shows up in the UI. Nothing here imports Prefect: detection must cost milliseconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

DEFAULT_PORT = 4200
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerState:
    pid: int
    port: int
    api_url: str
    ui_url: str
    log: str
    started_at: str
    prefect_home: str
    runner_pid: int = 0  # the warm runner (flows/warm_runner.py); 0 when none


class ServerError(RuntimeError):
    """The local server could not be started or stopped; the message says why and what to do."""


def prefect_home() -> Path:
    return Path(os.path.expanduser(os.environ.get("PREFECT_HOME", "~/.prefect")))


def state_dir() -> Path:
    home = os.environ.get("ARCFLOW_SERVER_HOME")
    return Path(os.path.expanduser(home)) if home else prefect_home() / "arcflow-server"


def _state_file() -> Path:
    return state_dir() / "server.json"


def read_state() -> ServerState | None:
    try:
        data = json.loads(_state_file().read_text())
        return ServerState(**data)
    except (OSError, ValueError, TypeError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def running(timeout: float = 1.0) -> ServerState | None:
    """The recorded server, if its process is alive and its API answers."""
    state = read_state()
    if state is None or not _alive(state.pid) or not healthy(state.api_url, timeout):
        return None
    return state


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile (read without importing Prefect)."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    path = Path(
        os.path.expanduser(os.environ.get("PREFECT_PROFILES_PATH", str(prefect_home() / "profiles.toml")))
    )
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    value = profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")
    return str(value) if value else None


def detect() -> ServerState | None:
    """Point this process at the local server when no API is configured and the server is up. Returns the
    server used, or None (an API is configured already, or no local server runs)."""
    if configured_api_url():
        return None
    state = running(timeout=0.5)
    if state is not None:
        os.environ["PREFECT_API_URL"] = state.api_url
        os.environ.setdefault("PREFECT_UI_URL", state.ui_url)
    return state


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # a listener, not TIME_WAIT leftovers, means in use
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def start(port: int = DEFAULT_PORT, timeout_s: float = 180.0, ui: bool = True) -> tuple[ServerState, bool]:
    """Start the server unless it runs already. Returns (state, started_now)."""
    current = running()
    if current is not None:
        if not (current.runner_pid and _alive(current.runner_pid)):  # the runner died: a new one
            current = replace(current, runner_pid=_start_runner(state_dir(), current))
            _state_file().write_text(json.dumps(asdict(current), indent=1))
        return current, False
    if not _port_free(port):
        raise ServerError(
            f"port {port} on {HOST} is in use by another program; pass --port to use another one "
            f"(or point PREFECT_API_URL at the server already listening there)"
        )
    sdir = state_dir()
    sdir.mkdir(parents=True, exist_ok=True)
    log_path = sdir / "server.log"
    env = dict(os.environ)
    env.pop("PREFECT_API_URL", None)  # the server must not try to report to another API
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env["PREFECT_SERVER_UI_ENABLED"] = "true" if ui else "false"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(sdir),
            start_new_session=True,  # outlives this command; `arcflow server stop` ends its process group
        )
    api = f"http://{HOST}:{port}/api"
    state = ServerState(
        pid=proc.pid,
        port=port,
        api_url=api,
        ui_url=f"http://{HOST}:{port}",
        log=str(log_path),
        started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        prefect_home=str(prefect_home()),
    )
    deadline = time.monotonic() + timeout_s
    while not healthy(api):
        if proc.poll() is not None:
            raise ServerError(f"prefect server exited with code {proc.returncode}; see {log_path}")
        if time.monotonic() > deadline:
            _stop_pid(proc.pid)
            raise ServerError(
                f"prefect server did not answer on {api} within {timeout_s:.0f}s; see {log_path}"
            )
        time.sleep(0.5)
    state = replace(state, runner_pid=_start_runner(sdir, state))
    _state_file().write_text(json.dumps(asdict(state), indent=1))
    return state, True


def _start_runner(sdir: Path, state: ServerState) -> int:
    """The warm runner that takes `arcflow run` commands (flows/warm_runner.py), reporting to this server."""
    env = dict(os.environ)
    env.update(PREFECT_API_URL=state.api_url, PREFECT_UI_URL=state.ui_url, PREFECT_HOME=state.prefect_home)
    with open(sdir / "runner.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.warm_runner", str(sdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(sdir),
            start_new_session=True,
        )
    return proc.pid


def _stop_pid(pid: int, timeout_s: float = 20.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                done, _status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not our child (started by an earlier command): poll it
                done = 0 if _alive(pid) else pid
            if done:
                return
            time.sleep(0.2)


def _is_process(pid: int, *words: bytes) -> bool:
    """Guards against a recycled pid: the recorded process's command line must still hold ``words``."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust the record
    return all(w in cmdline for w in words)


def _is_prefect_server(pid: int) -> bool:
    return _is_process(pid, b"prefect", b"server")


def stop() -> ServerState | None:
    """Stop the recorded server (its whole process group) and forget it. Returns what was stopped."""
    state = read_state()
    if state is None:
        return None
    if _alive(state.pid) and _is_prefect_server(state.pid):
        _stop_pid(state.pid)
    if state.runner_pid and _alive(state.runner_pid) and _is_process(state.runner_pid, b"flows.warm_runner"):
        _stop_pid(state.runner_pid)
    _state_file().unlink(missing_ok=True)
    # the runner's socket too: a runner stopped by signal cannot remove it itself
    (state_dir() / "runner.sock").unlink(missing_ok=True)
    return state
