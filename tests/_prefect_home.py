"""A Prefect home whose SQLite database is already migrated, for tests that start Prefect's API in a fresh home.

A Prefect API (the ephemeral one of `arcflow run`, or `prefect server start`) that finds no database creates it and
runs all of Prefect's migrations first: 5 to 7 seconds on CI's machine, paid again by every test that gives its
CLI runs a home of its own. :func:`seed_prefect_home` copies in a database that the real migration command
(``prefect server database upgrade -y``) built once per test process, in an empty home of its own, and never used
since: the API then finds a current schema and starts at once. Everything else is the real Prefect as before: the
API still checks the schema at start, and every table is empty.

:func:`prefect_test_harness` is Prefect's own test harness (a server on a database in a new temporary folder) with
that folder holding a copy of the same migrated database when the server starts.

Tests of a home or database that cannot be used (tests/flows/test_ephemeral_api.py) do not seed theirs; there, and
in the build of the template itself, Prefect still migrates a new database.
"""

from __future__ import annotations

import atexit
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
