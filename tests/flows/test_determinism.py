"""Same pipeline, same bytes: the default pipeline in other folders, at 1, 2 and 3 workers, and after kill -9.

Every run here is the real default pipeline (all its nodes, the training stages included, through the CLI, Prefect
and a Dask LocalCluster), made smaller with the ``--set`` overrides of ``SMALL_DEFAULT`` (tests/flows/
_pipeline_util.py) so that CI can afford several runs. Each run happens in its own clone of this repository
(``project_history`` reads the clone's git history; the CLI runs the clone's code), with its own store and Prefect
home. Three runs go at the same time (much of a run is start-up and waiting, so this costs far less than three
runs in a row):

* folder A, 1 worker: the clean reference, the session's shared default run (``default_run``: the deployment
  test and the README's run-then-cached test read the same run);
* folder B, 2 workers: every node's fingerprint and content hash equal A's;
* folder C, 3 workers: a fresh run is killed (SIGKILL to its whole process group: the CLI, its Dask workers, the
  DeepSpeed launcher and its rank, and Prefect's server) at several points in different nodes, resumed each time,
  and finally completes: every node's fingerprint and content hash equal A's (the trained checkpoints' weights
  included), and no temporary file is left.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.flows._determinism import (
    RUN_TIMEOUT_S,
    Checkout,
    clone_of,
    count_files,
    default_run,
    differences,
    run_checkout,
    run_cli_until,
    source_clone,
    store_hashes,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def _unfinished_with(store: Path, pattern: str, at_least: int) -> bool:
    """Some output of ``store`` has no manifest yet and at least ``at_least`` files matching ``pattern``."""
    outputs = store / "outputs"
    if not outputs.is_dir():
        return False
    return any(
        not (out / "manifest.json").exists() and count_files(out, pattern) >= at_least
        for out in outputs.iterdir()
    )


KILL_POINTS: list[tuple[str, str, int]] = [
    # (what, files that show it, how many): in DAG order, each in another node and phase
    ("a source in the middle of its shards", "_markers/part-*", 2),
    ("SemDedup while it embeds (before k-means)", "_work/emb-*", 2),
    ("packing while it tokenizes", "_work/tokens-*", 1),
    # a complete DeepSpeed state (`latest` is written last) of a stage still training: the rerun resumes from it
    ("a training stage after its first checkpoint", "_train/ckpt/latest", 1),
]


def _kill_and_resume(checkout: Checkout) -> Checkout:
    """Kill a fresh run at each point of ``KILL_POINTS`` it reaches, resuming after each kill; then run to the end."""
    started = time.monotonic()
    try:
        for what, pattern, count in KILL_POINTS:
            condition: Callable[[], bool] = functools.partial(
                _unfinished_with, checkout.workdir, pattern, count
            )
            if not run_cli_until(
                checkout.pipeline,
                checkout.overrides,
                condition,
                cwd=checkout.folder,
                prefect_home=checkout.prefect_home,
                timeout_s=RUN_TIMEOUT_S,
            ):
                break  # this attempt ran to the end before the point was reached
            checkout.killed.append(what)
    except (AssertionError, TimeoutError) as exc:
        checkout.failure = str(exc)
        return checkout
    checkout.seconds += time.monotonic() - started
    return run_checkout(checkout)  # the final resume (a fully cached run if the last attempt completed)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Checkout]:
    """Runs A (1 worker, the shared default run), B (2 workers) and C (3 workers, killed and resumed) of the same
    commit, at once."""
    source = source_clone(tmp_path_factory)
    b, c = clone_of(source, "B", 2), clone_of(source, "C", 3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = [
            pool.submit(default_run, tmp_path_factory),
            pool.submit(run_checkout, b),
            pool.submit(_kill_and_resume, c),
        ]
        a = done[0].result()
        for future in done[1:]:
            future.result()
    return {"A": a, "B": b, "C": c}


@pytest.fixture(scope="session")
def reference(runs: dict[str, Checkout]) -> dict[str, tuple[str, str]]:
    from flows.validate import load_pipeline

    a = runs["A"]
    assert not a.failure, a.failure
    hashes = store_hashes(a.workdir)
    assert set(hashes) == set(load_pipeline(str(a.pipeline)).nodes)  # every node of the default pipeline
    return hashes


def test_other_folder_and_other_worker_count_give_the_same_fingerprints_and_bytes(
    runs: dict[str, Checkout], reference: dict[str, tuple[str, str]]
) -> None:
    a, b = runs["A"], runs["B"]
    assert not b.failure, b.failure
    got = store_hashes(b.workdir)
    assert differences(reference, got, a.workdir, b.workdir) == []
    assert len(got) == len(reference) >= 30


def test_kill_9_and_resume_gives_the_clean_runs_bytes(
    runs: dict[str, Checkout], reference: dict[str, tuple[str, str]]
) -> None:
    a, c = runs["A"], runs["C"]
    assert not c.failure, c.failure
    assert len(c.killed) >= 2, f"only {c.killed} of {[p[0] for p in KILL_POINTS]} were caught"
    assert KILL_POINTS[-1][0] in c.killed, f"no kill while training; killed at: {c.killed}"
    print(f"killed at: {c.killed}; attempts and final resume took {c.seconds:.0f} s")
    got = store_hashes(c.workdir)
    assert differences(reference, got, a.workdir, c.workdir) == [], f"killed at: {c.killed}"
    leftovers = [p for p in (c.workdir / "outputs").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
