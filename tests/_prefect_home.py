"""A Prefect home whose SQLite database is already migrated, for tests that start Prefect's API in a fresh home.

A Prefect API (the ephemeral one of `arcflow run`, or `prefect server start`) that finds no database creates it and
runs all of Prefect's migrations first: 5 to 7 seconds on CI's machine, paid again by every test that gives its
CLI runs a home of its own. :func:`seed_prefect_home` copies in a database that the real migration command
(``prefect server database upgrade -y``) built once per test process, in an empty home of its own, and never used
since: the API then finds a current schema and starts at once. Everything else is the real Prefect as before: the
API still checks the schema at start, and every table is empty.

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
from pathlib import Path

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
