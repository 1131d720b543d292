"""Same pipeline, same bytes: the default pipeline in other folders, at 1, 2 and 3 workers, from the CLI and from a
deployment worker, and after kill -9.

Every run here is the real default pipeline (all its nodes, the training stages included, through Prefect and a
Dask LocalCluster), made smaller with the ``--set`` overrides of ``SMALL_DEFAULT`` (tests/flows/_pipeline_util.py)
so that CI can afford several runs. They are the session's shared runs (``default_runs`` in
tests/flows/_determinism.py: made once, in the background while the other tests run, and read by the deployment
test and the README's run-then-cached test too). Each happens in its own clone of this repository
(``project_history`` reads the clone's git history; the run imports the clone's code), with its own store and
Prefect home:

* folder A, `arcflow run`, 1 worker: the clean reference;
* folder W, a flow run of an `arcflow deploy` deployment on a Prefect process worker, 2 workers: every node's
  fingerprint and content hash equal A's;
* folder C, `arcflow run`, 3 workers: a fresh run is killed (SIGKILL to its whole process group: the CLI, its Dask
  workers, the DeepSpeed launcher and its rank, and Prefect's server) at several points in different nodes,
  resumed each time, and finally completes: every node's fingerprint and content hash equal A's (the trained
  checkpoints' weights included), and no temporary file is left.
"""

from __future__ import annotations

import pytest

from tests.flows._determinism import KILL_POINTS, default_runs, differences, store_hashes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Every node's (fingerprint, content hash) in run A, the clean CLI run."""
    from flows.validate import load_pipeline

    a = default_runs(tmp_path_factory, "A")["A"]
    assert not a.failure, a.failure
    hashes = store_hashes(a.workdir)
    assert set(hashes) == set(load_pipeline(str(a.pipeline)).nodes)  # every node of the default pipeline
    return hashes


@pytest.mark.default_runs("A", "W")
def test_other_folder_and_other_worker_count_give_the_same_fingerprints_and_bytes(
    tmp_path_factory: pytest.TempPathFactory, reference: dict[str, tuple[str, str]]
) -> None:
    runs = default_runs(tmp_path_factory, "A", "W")
    a, w = runs["A"], runs["W"]
    assert not w.failure, w.failure
    assert (w.folder != a.folder, w.workers, a.workers) == (True, 2, 1)
    got = store_hashes(w.workdir)
    assert differences(reference, got, a.workdir, w.workdir) == []
    assert len(got) == len(reference) >= 30


@pytest.mark.default_runs("A", "C")
def test_kill_9_and_resume_gives_the_clean_runs_bytes(
    tmp_path_factory: pytest.TempPathFactory, reference: dict[str, tuple[str, str]]
) -> None:
    runs = default_runs(tmp_path_factory, "A", "C")
    a, c = runs["A"], runs["C"]
    assert not c.failure, c.failure
    assert len(c.killed) >= 2, f"only {c.killed} of {[p[0] for p in KILL_POINTS]} were caught"
    assert KILL_POINTS[-1][0] in c.killed, f"no kill while training; killed at: {c.killed}"
    print(f"killed at: {c.killed}; attempts and final resume took {c.seconds:.0f} s")
    got = store_hashes(c.workdir)
    assert differences(reference, got, a.workdir, c.workdir) == [], f"killed at: {c.killed}"
    leftovers = [p for p in (c.workdir / "outputs").rglob("*") if ".tmp-" in p.name]
    assert leftovers == []
