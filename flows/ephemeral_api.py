"""Prefect's ephemeral API for `arcflow run`, started by arcflow with its output in a log file, not the terminal.

When no Prefect API is configured and no `arcflow server` runs, Prefect starts a throwaway API server as a child
process (``uvicorn``) the first time a client needs it, and stops it (SIGTERM) at interpreter exit. That child
writes to the stderr it inherits. At SIGTERM its services (task run recorder, event persister, the periodic
background tasks) are cancelled wherever they are; one cancelled inside a database call makes SQLAlchemy's pool log
``Exception during reset or similar`` with an ``asyncio.CancelledError`` traceback, the event persister logs
``Error flushing events``. Whether a service is inside such a call at that instant is a matter of timing (more
likely on a busy machine), so a run that succeeded could end with a traceback on the terminal now and then. No
order of closing clients on our side prevents it: it happens in the server's own shutdown, after the run's events
were delivered.

:func:`start` starts that same server (Prefect's ``SubprocessASGIServer``, which every client of this process then
reuses) before the flow, with the child's stdout and stderr on ``$PREFECT_HOME/arcflow-ephemeral-api.log``: its
start, its errors and its shutdown are kept there, and the terminal shows only what the run itself says. With
``-v`` the server's output stays on the terminal, as before.

Before it starts, ``PREFECT_HOME`` and the SQLite file of Prefect's database are checked (a file where the folder
should be, a folder that cannot be written, a folder at the database's path): that is an environment error, said
as such (`arcflow run` exits 2), not a start that times out. A server process that exits while it starts (uvicorn
exits 3 on any startup failure, which Prefect takes for a port taken and retries until its timeout) ends the wait
early, and the message quotes the last error lines of the log.

The server ends with the `arcflow run` that started it, even one killed with SIGKILL (no atexit runs then): it is
started through flows/api_watchdog.py, which stops it once its parent is gone. Each server started is recorded in
``$PREFECT_HOME/arcflow-ephemeral-api/<pid>.json`` (with its run's pid) until the run exits; a run that starts finds
any recorded server whose run is gone, should one still run, and stops it (:func:`stop_stale_servers`, noted in the
log). `arcflow server` (flows/local_server.py) is another process, started otherwise, and outlives every run.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flows.local_server import prefect_home

LOG_NAME = "arcflow-ephemeral-api.log"
_ROTATE_BYTES = 10 * 1024 * 1024  # above this, the log is moved to <name>.1 before a run appends to it


class EphemeralApiError(RuntimeError):
    """Prefect's ephemeral API did not start; the message names its log and quotes its last errors.
    ``exit_code``: what `arcflow run` exits with (1: the run failed; 2: the environment is unusable)."""

    exit_code = 1


class UnusableHomeError(EphemeralApiError):
    """``PREFECT_HOME`` (or the SQLite database Prefect's API would use) cannot be written: found before the API
    is started, as nothing would start there."""

    exit_code = 2


def log_path() -> Path:
    return prefect_home() / LOG_NAME


def uses_ephemeral_api() -> bool:
    """Whether this process's Prefect clients would start the ephemeral API (no API URL in the environment or the
    active profile, ephemeral mode enabled), decided by Prefect's own settings."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return not settings.api.url and bool(settings.server.ephemeral.enabled)


def check_home() -> None:
    """Raise :class:`UnusableHomeError` when ``PREFECT_HOME`` is not a folder this process can write (it is created
    when missing), or when the SQLite file of Prefect's configured database cannot be opened for writing (a folder
    at its path, its folder missing or not writable). A database that is not a SQLite file is not checked."""
    home = prefect_home()
    reason = _unwritable_folder(home, create=True)
    if reason:
        raise UnusableHomeError(
            f"PREFECT_HOME {home} is not a writable folder ({reason}); set PREFECT_HOME to a writable folder"
        )
    db = _sqlite_file()
    if db is None:
        return
    if db.is_dir():
        reason = "a folder is at that path"
    elif db.exists() and not os.access(db, os.R_OK | os.W_OK):
        reason = "the file is not readable and writable by this user"
    else:
        reason = _unwritable_folder(db.parent, create=False)
        reason = f"its folder {db.parent}: {reason}" if reason else None
    if reason:
        raise UnusableHomeError(
            f"Prefect's database {db} cannot be opened for writing ({reason}); remove or fix it, or point "
            f"PREFECT_API_DATABASE_CONNECTION_URL (or PREFECT_HOME) at a writable place"
        )


def _unwritable_folder(folder: Path, create: bool) -> str | None:
    """Why ``folder`` cannot take a new file (tried for real: permissions, read-only mounts), or None."""
    if folder.exists() and not folder.is_dir():
        return "a file is at that path, not a folder"
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        elif not folder.is_dir():
            return "it does not exist"
        with tempfile.TemporaryFile(dir=folder, prefix=".arcflow-write-check-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _sqlite_file() -> Path | None:
    """The file of Prefect's configured SQLite database, or None (another database, or SQLite in memory)."""
    from prefect.settings import get_current_settings
    from sqlalchemy.engine import make_url

    secret = get_current_settings().server.database.connection_url
    if secret is None:
        return None
    try:
        url = make_url(secret.get_secret_value())
    except Exception:  # noqa: BLE001 - an unparsable URL is Prefect's to report
        return None
    name = url.database or ""
    if url.get_backend_name() != "sqlite" or not name or "memory" in name or name.startswith("file:"):
        return None
    return Path(name).expanduser()


def start(verbose: bool = False) -> Path | None:
    """Start Prefect's ephemeral API now, its output in :func:`log_path` (on the terminal with ``verbose``).
    Returns the log's path, or None when nothing was started here (an API is configured, or ``verbose``).
    ``PREFECT_HOME`` and the database are checked first (:func:`check_home`); a server process that exits while
    it starts ends the wait at once, with the log's last error lines in the message."""
    if not uses_ephemeral_api():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's clients use (keyed by port None)
    if server.running:
        return None
    check_home()
    stop_stale_servers()
    _guard(server)
    if verbose:
        try:
            _start_watched(server)
        except Exception as exc:  # noqa: BLE001 - Prefect raises RuntimeError (timeout) or an HTTP error
            raise EphemeralApiError(
                f"Prefect's ephemeral API did not start: {_first_line(exc)}; its output is above"
            ) from exc
        return None
    path = log_path()
    offset = path.stat().st_size if path.is_file() else 0
    try:
        with _output_to(path):
            offset = 0 if path.stat().st_size < offset else offset  # moved aside just now
            _start_watched(server)
    except _ServerExited as exc:
        raise EphemeralApiError(
            f"Prefect's ephemeral API exited with code {exc.code} while starting{_log_errors(path, offset)}. "
            f"Its output is in {path}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - Prefect raises RuntimeError (timeout) or an HTTP error
        raise EphemeralApiError(
            f"Prefect's ephemeral API did not start: {_first_line(exc)}{_log_errors(path, offset)}. Its output "
            f"is in {path}; a busy machine may need a longer PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or "
            f"start a persistent one with `arcflow server start`"
        ) from exc
    return path


RECORDS_NAME = "arcflow-ephemeral-api"  # the folder in PREFECT_HOME of the records of running servers
_GUARD_LOCK = threading.Lock()
_OWN_RECORDS: list[Path] = []  # the records this process wrote, removed at its exit


def records_dir() -> Path:
    return prefect_home() / RECORDS_NAME


def _guard(server: Any) -> None:
    """Make ``server`` (Prefect's ``SubprocessASGIServer``) start its uvicorn process through flows/api_watchdog.py,
    so that the process ends when this one is gone (even after SIGKILL), and record each process it starts in
    :func:`records_dir` (removed at this process's exit). Prefect's own command and environment are kept: while its
    ``_run_uvicorn_command`` runs, the ``subprocess`` of its module is one whose ``Popen`` puts the watchdog in
    front of ``-m uvicorn``."""
    from prefect.server.api import server as prefect_server

    original = type(server)._run_uvicorn_command

    def run() -> subprocess.Popen[Any]:
        with _GUARD_LOCK:
            saved = prefect_server.subprocess
            prefect_server.subprocess = _WatchedSubprocess()  # type: ignore[assignment]
            try:
                proc = original(server)
            finally:
                prefect_server.subprocess = saved
        _record(proc.pid, server.port)
        return proc

    server._run_uvicorn_command = run  # this instance only: other servers of this process start as Prefect's
    atexit.register(_forget_own_records)  # registered before Prefect's stop (at start), so it runs after it


class _WatchedSubprocess:
    """The ``subprocess`` module, but ``Popen`` of ``python -m uvicorn ...`` runs
    ``python -P <flows/api_watchdog.py> <this pid> -m uvicorn ...``: the file by its path, with neither its folder
    nor the working directory on ``sys.path`` (``-P``; it needs only the standard library), so another checkout's
    ``flows`` in the working directory can neither replace it nor shadow a module of the server."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(args: Any, **kwargs: Any) -> subprocess.Popen[Any]:  # noqa: N802 - the module's name
        args = list(args)
        if args[1:3] == ["-m", "uvicorn"]:
            args = [
                args[0],
                "-P",
                str(Path(__file__).with_name("api_watchdog.py")),
                str(os.getpid()),
                *args[1:],
            ]
        return subprocess.Popen(args, **kwargs)


def _started(pid: int) -> float | None:
    """When process ``pid`` started (psutil's create_time), or None when it does not run (or is a zombie)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc.create_time()
    except psutil.Error:
        return None


def _alive(pid: int, started: float) -> bool:
    now = _started(pid)
    return now is not None and abs(now - started) < 0.01  # the same process, not a later one with its pid


def _record(pid: int, port: int | None) -> None:
    """Write ``<records_dir>/<pid>.json``: the server's pid and start time, this process's (its driver), its port."""
    started, driver = _started(pid), _started(os.getpid())
    if started is None or driver is None:
        return  # it exited already: nothing to find later
    folder = records_dir()
    path = folder / f"{pid}.json"
    record = {
        "pid": pid,
        "started": started,
        "driver_pid": os.getpid(),
        "driver_started": driver,
        "port": port,
    }
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
        _OWN_RECORDS.append(path)


def _forget_own_records() -> None:
    for path in _OWN_RECORDS:
        with contextlib.suppress(OSError):
            path.unlink()
    _OWN_RECORDS.clear()


def stop_stale_servers(grace_s: float = 5.0) -> list[int]:
    """Stop the ephemeral API servers recorded in :func:`records_dir` whose `arcflow run` is gone (killed before
    the server's watchdog could act, or a watchdog that failed), and drop the records of servers that ended.
    A server whose run still runs (another run on this ``PREFECT_HOME``) is left alone. A stopped server gets
    SIGTERM, then SIGKILL after ``grace_s``; each is noted in the log. Returns the pids stopped."""
    import psutil

    stopped: list[int] = []
    for path in sorted(records_dir().glob("*.json")):
        try:
            record = json.loads(path.read_text())
            pid, started = int(record["pid"]), float(record["started"])
            driver, driver_started = int(record["driver_pid"]), float(record["driver_started"])
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if _alive(pid, started) and _alive(driver, driver_started):
            continue  # its run is going on
        if _alive(pid, started):
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                proc.terminate()
                try:
                    proc.wait(grace_s)
                except psutil.TimeoutExpired:
                    proc.kill()
                    proc.wait(grace_s)
            stopped.append(pid)
            _note(
                f"stopped Prefect's ephemeral API (pid {pid}, port {record.get('port')}) left running by "
                f"arcflow run pid {driver}, which is gone"
            )
        with contextlib.suppress(OSError):
            path.unlink()
    return stopped


def _note(line: str) -> None:
    """Append one line (stamped, with this process's pid) to the ephemeral API's log."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    with contextlib.suppress(OSError), open(log_path(), "a", encoding="utf-8") as fh:
        fh.write(f"== {stamp} arcflow (pid {os.getpid()}): {line}\n")


class _ServerExited(RuntimeError):
    def __init__(self, code: int) -> None:
        super().__init__(f"the server process exited with code {code}")
        self.code = code


def _start_watched(server: Any, poll_s: float = 0.1, max_startup_failures: int = 2) -> None:
    """``server.start()``, ended early when its process exits for good. Prefect's own wait polls the health
    endpoint until its timeout even after the child died, and starts the child again (on another port) whenever it
    exits with code 3, which uvicorn uses for any startup failure (a port taken, but also a database that cannot
    be opened), so a broken start repeats until the timeout. Prefect's start runs in a thread; this one watches the
    child: after an exit with another code, or ``max_startup_failures`` exits with code 3, it stops the server
    (which ends that thread's loop) and raises :class:`_ServerExited`."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            server.start()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failed.append(exc)

    context = contextvars.copy_context()  # Prefect's settings context, as server.start() would see it here
    thread = threading.Thread(
        target=context.run, args=(run,), name="arcflow-ephemeral-api-start", daemon=True
    )
    thread.start()
    exited: dict[int, Any] = {}  # the processes seen to exit with code 3 (held, so their ids stay unique)
    while thread.is_alive():
        thread.join(poll_s)
        proc = server.server_process
        code = proc.poll() if proc is not None and thread.is_alive() else None
        if code is None:
            continue
        if code == 3:
            exited[id(proc)] = proc
            if len(exited) < max_startup_failures:
                continue
        thread.join(1.0)  # it may have seen the health check pass just before
        if thread.is_alive() or failed:
            with contextlib.suppress(Exception):
                server.stop()  # the thread's loop ends on the stopped server
            thread.join(5.0)
            raise _ServerExited(code)
    if failed:
        raise failed[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# an exception's last line (``sqlite3.OperationalError: unable to open database file``) or a log line at ERROR
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b|\b(ERROR|CRITICAL)\b")


def _log_errors(path: Path, offset: int, keep: int = 3, width: int = 300) -> str:
    """The last lines of this start's part of the log (from ``offset``) that look like errors (else its last
    lines), quoted for a message; empty when the log cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith("== ")]
    errors = [ln for ln in lines if _ERROR_LINE.search(ln) and not ln.endswith("(most recent call last):")]
    quoted = [ln if len(ln) <= width else ln[: width - 1] + "…" for ln in (errors or lines)[-keep:]]
    return f"; its log ends with: {' | '.join(quoted).rstrip('.')}" if quoted else ""


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Point this process's stdout and stderr (file descriptors 1 and 2) at ``path`` (appended) while the block
    runs, so a child started inside it inherits the file; both are restored after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.stat().st_size > _ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        os.write(fd, f"== {stamp} arcflow run (pid {os.getpid()}): Prefect's ephemeral API\n".encode())
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)
