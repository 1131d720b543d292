"""Session-wide test plumbing: the shared runs of the default pipeline go in the background.

Tests marked ``default_runs("A", ...)`` read the session's shared runs of the default pipeline
(tests/flows/_determinism.py: ``A`` the clean CLI run, ``W`` a deployment worker's run, ``C`` the kill -9 and
resume run). Those runs are the suite's heaviest work, and most of the other tests keep only one of CI's two cores
busy. So when the session starts, the runs that the selected tests read are started in background threads (their
processes at a lower CPU priority, so that they take the idle core and yield to the tests), and the tests that read
them are moved to the end of the session; by then the runs are done, or nearly. At the session's end whatever of
them still runs is stopped.

Tests marked ``background_build("name")`` read fixture state that a module of theirs builds in its own process
(tests/_background.py): the same here, those builds start with the session and their readers run late.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

# the order in which the shared runs start (they all start at once; the first is the one most tests read)
_RUN_ORDER = ("A", "W", "C")


def _runs_read(items: list[pytest.Item]) -> list[str]:
    names = {name for item in items for mark in item.iter_markers("default_runs") for name in mark.args}
    unknown = names - set(_RUN_ORDER)
    if unknown:
        raise pytest.UsageError(
            f"default_runs names {sorted(unknown)}; the shared runs are {list(_RUN_ORDER)}"
        )
    return [name for name in _RUN_ORDER if name in names]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "background_build(*names): reads fixture state built in its own process (tests/_background.py), started "
        "in the background when the session starts; such tests run late",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The readers of background builds late, and the readers of the shared default runs last (a stable sort:
    every other test keeps its place)."""

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("default_runs") is not None:
            return 2
        return 1 if item.get_closest_marker("background_build") is not None else 0

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def _shared_default_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Start the shared default runs that the selected tests read, in the background; stop them at the end."""
    names = _runs_read(request.session.items)
    if not names:
        yield
        return
    from tests.flows._determinism import start_default_runs, stop_default_runs

    start_default_runs(tmp_path_factory, *names)
    try:
        yield
    finally:
        stop_default_runs()


@pytest.fixture(scope="session", autouse=True)
def _background_builds(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Start the background builds (tests/_background.py) that the selected tests read; kill them at the end."""
    from tests._background import BUILDS, start_builds, stop_builds

    items = request.session.items
    names = {name for item in items for mark in item.iter_markers("background_build") for name in mark.args}
    unknown = names - set(BUILDS)
    if unknown:
        raise pytest.UsageError(f"background_build names {sorted(unknown)}; the builds are {sorted(BUILDS)}")
    start_builds(tmp_path_factory, *sorted(names))
    try:
        yield
    finally:
        stop_builds()


@pytest.fixture(scope="session", autouse=True)
def _shared_prefect_server() -> Iterator[None]:
    """At the session's end, stop the Prefect harness server that test modules share (tests/_prefect_home.py:
    shared_prefect_harness), if one was started."""
    yield
    from tests._prefect_home import stop_shared_server

    stop_shared_server()
