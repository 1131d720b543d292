"""Same pipeline, same bytes: the default pipeline in other folders, at 1, 2 and 3 workers, and after kill -9.

Every run here is the real default pipeline (all its nodes, through the CLI, Prefect and a Dask LocalCluster), made
smaller with ``--set`` overrides of its corpus sizes so that CI can afford several runs. Each run happens in its own
clone of this repository (``project_history`` reads the clone's git history; the CLI runs the clone's code), with
its own store and Prefect home. Three runs go at the same time (much of a run is start-up and waiting, so this
costs far less than three runs in a row):

* folder A, 1 worker: the clean reference;
* folder B, 2 workers: every node's fingerprint and content hash equal A's;
* folder C, 3 workers: a fresh run is killed (SIGKILL to its whole process group: the CLI, its Dask workers and
  Prefect's server) at several points in different nodes, resumed each time, and finally completes: every node's
  fingerprint and content hash equal A's, and no temporary file is left.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.flows._determinism import ROOT, count_files, differences, run_cli, run_cli_until, store_hashes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

# The default pipeline at a size CI can run several times: fewer demo documents in smaller shards (more shards
# to resume), fewer commits, problems and agent tasks. Every node still runs.
SMALL = [
    "nodes.demo.params.max_items_per_part=30",
    "nodes.demo.params.items_per_shard=10",
    "nodes.project_history.params.max_commits=20",
    "nodes.problems.params.reasoning_gym.0.size=12",
    "nodes.problems.params.reasoning_gym.1.size=8",
    "nodes.problems.params.reasoning_gym.2.size=8",
    "nodes.problems.params.reasoning_gym.3.size=6",
    "nodes.problems.params.problems_per_shard=10",
    "nodes.agent.params.generate={calculator: 3, python: 2, files: 2, search: 3}",
]


@dataclass
class Checkout:
    folder: Path
    workdir: Path
    prefect_home: Path
    workers: int
    seconds: float = 0.0
    failure: str = ""
    killed: list[str] = field(default_factory=list)

    @property
    def pipeline(self) -> Path:
        return self.folder / "pipeline.yaml"

    @property
    def overrides(self) -> list[str]:
        # inline_s=0: every node's shard work goes to the Dask cluster, so the worker count really varies
        return [
            *SMALL,
            f"workdir={self.workdir}",
            f"executor.n_workers={self.workers}",
            "executor.inline_s=0",
        ]


def _checkout(source: Path, name: str, workers: int) -> Checkout:
    """A clone of ``source`` beside it, with its own store and Prefect home."""
    folder = source.parent / name
    subprocess.run(["git", "clone", "--quiet", str(source), str(folder)], check=True, capture_output=True)
    shutil.copyfile(source / "pipeline.yaml", folder / "pipeline.yaml")
    return Checkout(folder, source.parent / f"{name}-store", source.parent / f"{name}-prefect", workers)


def _run(checkout: Checkout) -> Checkout:
    started = time.monotonic()
    done = run_cli(
        checkout.pipeline, checkout.overrides, cwd=checkout.folder, prefect_home=checkout.prefect_home
    )
    checkout.seconds += time.monotonic() - started
    if done.returncode != 0:
        checkout.failure = done.stdout[-3000:] + done.stderr[-3000:]
    return checkout


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
            ):
                break  # this attempt ran to the end before the point was reached
            checkout.killed.append(what)
    except (AssertionError, TimeoutError) as exc:
        checkout.failure = str(exc)
        return checkout
    checkout.seconds += time.monotonic() - started
    return _run(checkout)  # the final resume (a fully cached run if the last attempt completed)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Checkout]:
    """Runs A (1 worker), B (2 workers) and C (3 workers, killed and resumed) of the same commit, at once."""
    source = tmp_path_factory.mktemp("determinism") / "source"
    try:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(source)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot clone {ROOT} (not a git checkout?): {exc}")
    shutil.copyfile(ROOT / "pipeline.yaml", source / "pipeline.yaml")  # the pipeline as it is here
    a, b, c = _checkout(source, "A", 1), _checkout(source, "B", 2), _checkout(source, "C", 3)
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = [pool.submit(_run, a), pool.submit(_run, b), pool.submit(_kill_and_resume, c)]
        for future in done:
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
    print(f"killed at: {c.killed}; attempts and final resume took {c.seconds:.0f} s")
    got = store_hashes(c.workdir)
    assert differences(reference, got, a.workdir, c.workdir) == [], f"killed at: {c.killed}"
    leftovers = [p for p in (c.workdir / "outputs").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
