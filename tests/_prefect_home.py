"""A Prefect home whose SQLite database is already migrated, for tests that start Prefect's API in a fresh home.

A Prefect API (the ephemeral one of `arcflow run`, or `prefect server start`) that finds no database creates it and
runs all of Prefect's migrations first: 5 to 7 seconds on CI's machine, paid again by every test that gives its
CLI runs a home of its own. :func:`seed_prefect_home` copies in a database that the real migration command
(``prefect server database upgrade -y``) built once per test process, in an empty home of its own, and never used
since: the API then finds a current schema and starts at once. Everything else is the real Prefect as before: the
API still checks the schema at start, and every table is empty.

:func:`prefect_test_harness` is Prefect's own test harness (a server on a database in a new temporary folder) with
that folder holding a copy of the same migrated database when the server starts.

:func:`shared_prefect_harness` is the same harness on a server that the test modules of a group share for the
session (started by the first, stopped at the session's end by tests/conftest.py), for modules that read back
only what they made.

Tests of a home or database that cannot be used (tests/flows/test_ephemeral_api.py) do not seed theirs; there, and
in the build of the template itself, Prefect still migrates a new database.
"""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

DB_NAME = "prefect.db"

_LOCK = threading.Lock()
_TEMPLATE: list[Path] = []  # the migrated database of this process, once built


def _template() -> Path:
    with _LOCK:
        if _TEMPLATE:
            return _TEMPLATE[0]
        home = Path(tempfile.mkdtemp(prefix="arcflow-test-prefect-home-"))
        atexit.register(shutil.rmtree, home, True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        db = home / DB_NAME
        if done.returncode != 0 or not db.is_file():
            raise RuntimeError(
                f"prefect server database upgrade failed ({done.returncode}): {done.stderr[-2000:]}"
            )
        _TEMPLATE.append(db)
        return db


def seed_prefect_home(home: Path) -> Path:
    """Make ``home`` (created if missing) a Prefect home holding an empty, migrated database; returns ``home``. A
    home that has a database already (a later CLI run of the same test) is left as it is."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / DB_NAME).exists():
        shutil.copyfile(_template(), home / DB_NAME)
    return home


@contextmanager
def prefect_test_harness(server_startup_timeout: int | None = 30) -> Iterator[None]:
    """``prefect.testing.utilities.prefect_test_harness``, its server started on a copy of the migrated database.
    The harness makes a temporary folder (``mkdtemp``) and points the server at ``prefect-test.db`` in it; here
    that folder gets the copy as it is made (should a later Prefect name the file otherwise, the copy is unused
    and the server migrates its own database, as before)."""
    from prefect.testing import utilities

    template = _template()
    make_folder = utilities.mkdtemp

    def seeded_folder(*args: object, **kwargs: object) -> str:
        folder = make_folder(*args, **kwargs)  # type: ignore[call-overload]
        shutil.copyfile(template, Path(folder) / "prefect-test.db")
        return folder

    with ExitStack() as stack:
        with mock.patch.object(utilities, "mkdtemp", seeded_folder):  # only while the harness starts
            stack.enter_context(utilities.prefect_test_harness(server_startup_timeout))
        yield


_SHARED_LOCK = threading.Lock()
# the harness servers that modules share, by group, once started: (server, database URL)
_SHARED: dict[str, tuple[object, str]] = {}


def _shared_server(group: str, startup_timeout: int) -> tuple[object, str]:
    """The session's shared harness server of ``group``: started once, on its own copy of the migrated database."""
    import prefect.settings
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import _find_available_port

    with _SHARED_LOCK:
        if group in _SHARED:
            return _SHARED[group]
        folder = Path(tempfile.mkdtemp(prefix="arcflow-test-prefect-shared-"))
        atexit.register(shutil.rmtree, folder, True)
        shutil.copyfile(_template(), folder / "prefect-test.db")
        url = "sqlite+aiosqlite:///" + str(folder / "prefect-test.db")
        # the server process takes its settings (this database) from the settings current when it starts
        with prefect.settings.temporary_settings(
            {prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL: url}
        ):
            server = SubprocessASGIServer(port=_find_available_port())
            server.start(timeout=startup_timeout)
        _SHARED[group] = (server, url)
        return _SHARED[group]


@contextmanager
def shared_prefect_harness(server_startup_timeout: int = 120, group: str = "own-reads") -> Iterator[None]:
    """:func:`prefect_test_harness` on one server shared by the test modules that use this, started by the first
    of them and left running until the session ends, instead of a server of their own each (about 5 s each to
    start on CI's machine). The same settings, database interface and default-server registration as Prefect's
    harness while the context lasts, and its drain of the log and event workers at the end; the server stays up.

    The database is shared within a ``group``: what one module writes, the next sees. ``own-reads``: modules that
    read back only the ids, keys or names they made, or the latest flow run they just started (a deployment's
    schedule adds flow runs that Prefect sorts as started at their expected time, so none is made there);
    ``deployments``: modules that create deployments and work pools under names of their own and read them by
    name."""
    import prefect.context
    import prefect.settings
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.server.database.dependencies import temporary_database_interface
    from prefect.utilities.asyncutils import run_coro_as_sync

    server, url = _shared_server(group, server_startup_timeout)
    with ExitStack() as stack:
        stack.enter_context(temporary_database_interface())
        stack.enter_context(
            prefect.settings.temporary_settings(
                {prefect.settings.PREFECT_SERVER_DATABASE_CONNECTION_URL: url}
            )
        )
        prior = SubprocessASGIServer._instances.get(None)
        SubprocessASGIServer._instances[None] = server  # what code asking for the default server finds

        def restore() -> None:
            if prior is not None:
                SubprocessASGIServer._instances[None] = prior
            else:
                SubprocessASGIServer._instances.pop(None, None)

        stack.callback(restore)
        stack.enter_context(
            prefect.settings.temporary_settings({prefect.settings.PREFECT_API_URL: server.api_url})  # type: ignore[attr-defined]
        )
        stack.enter_context(
            prefect.context._temporary_global_settings_context(prefect.context.get_settings_context())
        )
        yield

        async def drain_workers() -> None:  # as Prefect's harness: no log or event left for the next module
            try:
                result = APILogWorker.instance().drain()
                if inspect.isawaitable(result):
                    await result
            except RuntimeError:
                pass  # never started
            result = EventsWorker.drain_all()
            if inspect.isawaitable(result):
                await result

        run_coro_as_sync(drain_workers())


def stop_shared_server() -> None:
    """Stop the shared harness servers that were started (tests/conftest.py, at the session's end, while its
    output is still open for the servers' last log lines)."""
    with _SHARED_LOCK:
        while _SHARED:
            server, _url = _SHARED.popitem()[1]
            server.stop()  # type: ignore[attr-defined]
