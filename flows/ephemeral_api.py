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
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.local_server import prefect_home

LOG_NAME = "arcflow-ephemeral-api.log"
_ROTATE_BYTES = 10 * 1024 * 1024  # above this, the log is moved to <name>.1 before a run appends to it


class EphemeralApiError(RuntimeError):
    """Prefect's ephemeral API did not start; the message names its log."""


def log_path() -> Path:
    return prefect_home() / LOG_NAME


def uses_ephemeral_api() -> bool:
    """Whether this process's Prefect clients would start the ephemeral API (no API URL in the environment or the
    active profile, ephemeral mode enabled), decided by Prefect's own settings."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    return not settings.api.url and bool(settings.server.ephemeral.enabled)


def start(verbose: bool = False) -> Path | None:
    """Start Prefect's ephemeral API now, its output in :func:`log_path` (on the terminal with ``verbose``).
    Returns the log's path, or None when nothing was started here (an API is configured, or ``verbose``)."""
    if not uses_ephemeral_api():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's clients use (keyed by port None)
    if server.running:
        return None
    if verbose:
        server.start()
        return None
    path = log_path()
    try:
        with _output_to(path):
            server.start()
    except Exception as exc:  # noqa: BLE001 - Prefect raises RuntimeError (timeout) or an HTTP error
        raise EphemeralApiError(
            f"Prefect's ephemeral API did not start: {exc}. Its output is in {path}; a busy machine may need a "
            f"longer PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a persistent one with "
            f"`arcflow server start`"
        ) from exc
    return path


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
