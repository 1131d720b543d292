"""Helpers for determinism tests: what a store holds per node, compared across stores, and pipeline runs via the CLI.

``store_hashes(workdir)`` is the comparison key: ``{node: (fingerprint, content_hash)}`` of the last good run
recorded in the store's refs, checked against each node's manifest. ``differences(a, b, ...)`` explains a mismatch
down to the output files that differ (from each output's ``files.json``). Other tests (a deployment worker's run
against a CLI run, for instance) use these too.

``default_runs(tmp_path_factory, "A", "W", "C")`` are the session's shared runs of the default pipeline (shrunk by
``SMALL_DEFAULT``), each in its own clone of this repository at HEAD with the working tree's pipeline.yaml: ``A``
the clean CLI run (1 Dask worker), ``W`` a deployment's flow run on a Prefect process worker (2 Dask workers),
``C`` a CLI run (3 Dask workers) killed with kill -9 at several points and resumed. Each is made once per session
and read by every test that needs it (the determinism test, the deployment-worker test, the README's
run-then-cached test). tests/conftest.py starts the ones the selected tests read (marker ``default_runs``) in the
background at the session's start, at a lower CPU priority, and runs their readers last, so that they go on while
the rest of the suite runs. ``clone_of(source_clone(...), ...)`` gives other clones of the same commit.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests._prefect_home import seed_prefect_home
from tests.flows._pipeline_util import SMALL_DEFAULT

ROOT = Path(__file__).resolve().parents[2]


def store_hashes(workdir: str | Path, pipeline: str | None = None) -> dict[str, tuple[str, str]]:
    """``{node: (fingerprint, content_hash)}`` of the last good run of ``pipeline`` in the store at ``workdir``
    (the store's only pipeline when None). Every referenced output must be complete (its manifest present and
    agreeing with the ref)."""
    refs_dir = Path(workdir) / "refs"
    if pipeline is None:
        names = sorted(p.stem for p in refs_dir.glob("*.json"))
        if len(names) != 1:
            raise ValueError(f"{refs_dir} holds refs of {names or 'no pipeline'}; name the pipeline")
        pipeline = names[0]
    refs = json.loads((refs_dir / f"{pipeline}.json").read_text())
    out: dict[str, tuple[str, str]] = {}
    for node, ref in sorted(refs.items()):
        manifest_path = Path(workdir) / "outputs" / ref["fingerprint"] / "manifest.json"
        if not manifest_path.exists():
            raise AssertionError(f"{node}: ref names {ref['fingerprint'][:16]}, which has no manifest")
        manifest = json.loads(manifest_path.read_text())
        if manifest["content_hash"] != ref["content_hash"]:
            raise AssertionError(f"{node}: ref and manifest disagree on the content hash")
        out[node] = (ref["fingerprint"], manifest["content_hash"])
    return out


def output_file_hashes(workdir: str | Path, fingerprint: str) -> dict[str, str]:
    """``{relative path: sha256}`` of one output's files, as its ``files.json`` recorded them."""
    path = Path(workdir) / "outputs" / fingerprint / "files.json"
    return json.loads(path.read_text()) if path.exists() else {}


def differences(
    a: dict[str, tuple[str, str]],
    b: dict[str, tuple[str, str]],
    workdir_a: str | Path | None = None,
    workdir_b: str | Path | None = None,
) -> list[str]:
    """One line per node whose fingerprint or content hash differs (or that only one side has); with the two
    workdirs, the output files that differ are named too."""
    lines = []
    for node in sorted(set(a) | set(b)):
        if node not in a or node not in b:
            lines.append(f"{node}: only in {'the first' if node in a else 'the second'} store")
            continue
        (fa, ca), (fb, cb) = a[node], b[node]
        if fa != fb:
            lines.append(f"{node}: fingerprint {fa[:12]} != {fb[:12]}")
        if ca != cb:
            line = f"{node}: content hash {ca[:12]} != {cb[:12]}"
            if workdir_a is not None and workdir_b is not None:
                files_a, files_b = output_file_hashes(workdir_a, fa), output_file_hashes(workdir_b, fb)
                diff = sorted(f for f in set(files_a) | set(files_b) if files_a.get(f) != files_b.get(f))
                line += f" (files: {', '.join(diff[:8])}{' ...' if len(diff) > 8 else ''})"
            lines.append(line)
    return lines


def cli_env(prefect_home: str | Path) -> dict[str, str]:
    """The environment of a CLI run in tests: its own Prefect home (ephemeral API; its database already migrated,
    tests/_prefect_home.py), no analytics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    home = seed_prefect_home(Path(prefect_home))
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(home))
    return env


def cli_command(pipeline_file: str | Path, overrides: list[str], *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "flows.cli", "run", "-f", str(pipeline_file), *extra]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def run_cli(
    pipeline_file: str | Path,
    overrides: list[str],
    *,
    cwd: str | Path,
    prefect_home: str | Path,
    timeout_s: float = 900,
    prefix: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``arcflow run -f PIPELINE --set ...`` from ``cwd``, to the end. Past ``timeout_s`` its whole process group
    (the CLI, its Dask workers, the training launcher, Prefect's server) is killed and ``TimeoutExpired`` raised.
    With a ``prefix`` (``SHARED_NICE``: a shared run) the command runs behind it and is tracked, so that the
    session's end can stop it."""
    cmd = cli_command(pipeline_file, overrides)
    with subprocess.Popen(
        [*(prefix or []), *cmd],
        cwd=cwd,
        env=cli_env(prefect_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        if prefix is not None:
            _track(proc)
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            _reap_group(proc.pid)
            raise subprocess.TimeoutExpired(cmd, timeout_s, output=stdout, stderr=stderr) from exc
        finally:
            _untrack(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def run_cli_until(
    pipeline_file: str | Path,
    overrides: list[str],
    kill_when: Callable[[], bool],
    *,
    cwd: str | Path,
    prefect_home: str | Path,
    timeout_s: float = 900,
    poll_s: float = 0.05,
    prefix: list[str] | None = None,
) -> bool:
    """Start the run and SIGKILL its whole process group (the CLI, its Dask workers, Prefect's server) the
    moment ``kill_when()`` holds. Returns True if it was killed, False if it ended first (its exit status must
    then be 0). ``prefix`` as for :func:`run_cli`."""
    log = open(Path(cwd) / f"run-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*(prefix or []), *cli_command(pipeline_file, overrides)],
        cwd=cwd,
        env=cli_env(prefect_home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if prefix is not None:
        _track(proc)
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
            if _STOPPING.is_set():
                os.killpg(proc.pid, signal.SIGKILL)
                raise TimeoutError("the test session ended before the run")
            if kill_when():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                _reap_group(proc.pid)
                return True
            if time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise TimeoutError(f"the run did not end in {timeout_s} s (log {log.name})")
            time.sleep(poll_s)
    finally:
        log.close()
        _untrack(proc)
    if proc.returncode != 0:
        raise AssertionError(f"the run failed with {proc.returncode}: {Path(log.name).read_text()[-3000:]}")
    return False


def _reap_group(pgid: int, wait_s: float = 10.0) -> None:
    """Wait until no process of the killed group is left (its Dask workers die with it)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def count_files(folder: Path, pattern: str) -> int:
    """How many files under ``folder`` match ``pattern`` (0 when it does not exist)."""
    return sum(1 for _ in folder.glob(pattern)) if folder.is_dir() else 0


# ---- clones of this repository and the session's shared runs of the default pipeline ------------------------------
@dataclass
class Checkout:
    """A clone of this repository with its own store and Prefect home, run with ``workers`` Dask workers.
    ``states`` holds (node, state) of a deployment run's task runs (run ``W``)."""

    folder: Path
    workdir: Path
    prefect_home: Path
    workers: int
    seconds: float = 0.0
    failure: str = ""
    output: str = ""
    killed: list[str] = field(default_factory=list)
    states: list[tuple[str, str]] = field(default_factory=list)

    @property
    def pipeline(self) -> Path:
        return self.folder / "pipeline.yaml"

    @property
    def overrides(self) -> list[str]:
        return [*SMALL_DEFAULT, f"workdir={self.workdir}", *executor_overrides(self.workers)]


def executor_overrides(workers: int) -> list[str]:
    # inline_s=0: every node's shard work goes to the Dask cluster, so the worker count really varies
    return [f"executor.n_workers={workers}", "executor.inline_s=0"]


def clone_of(source: Path, name: str, workers: int) -> Checkout:
    """A clone of ``source`` beside it (the same commit, its pipeline.yaml copied), with its own store and Prefect
    home."""
    folder = source.parent / name
    subprocess.run(["git", "clone", "--quiet", str(source), str(folder)], check=True, capture_output=True)
    shutil.copyfile(source / "pipeline.yaml", folder / "pipeline.yaml")
    return Checkout(folder, source.parent / f"{name}-store", source.parent / f"{name}-prefect", workers)


# a run of SMALL_DEFAULT takes minutes; far longer only on a heavily shared machine, or in the background (nice)
# while the rest of the suite runs
RUN_TIMEOUT_S = 3600.0
# the shared runs go in the background while the other tests run: they take the idle core, and yield to the tests
SHARED_NICE = ["nice", "-n", "10"]


def run_checkout(checkout: Checkout, prefix: list[str] | None = None) -> Checkout:
    """``arcflow run`` of the checkout's pipeline to the end; ``failure`` holds the output's tail if it failed or
    ran past ``RUN_TIMEOUT_S``."""
    started = time.monotonic()
    try:
        done = run_cli(
            checkout.pipeline,
            checkout.overrides,
            cwd=checkout.folder,
            prefect_home=checkout.prefect_home,
            timeout_s=RUN_TIMEOUT_S,
            prefix=prefix,
        )
    except subprocess.TimeoutExpired as exc:
        out = [
            x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
            for x in (exc.stdout, exc.stderr)
        ]
        checkout.failure = f"the run did not end in {RUN_TIMEOUT_S:.0f} s: {out[0][-3000:]}{out[1][-3000:]}"
        return checkout
    finally:
        checkout.seconds += time.monotonic() - started
    checkout.output = done.stdout + done.stderr
    if done.returncode != 0:
        checkout.failure = done.stdout[-3000:] + done.stderr[-3000:]
    return checkout


KILL_POINTS: list[tuple[str, str, int]] = [
    # (what, files that show it, how many): in DAG order, each in another node and phase
    ("a source in the middle of its shards", "_markers/part-*", 2),
    ("SemDedup while it embeds (before k-means)", "_work/emb-*", 2),
    ("packing while it tokenizes", "_work/tokens-*", 1),
    # a complete DeepSpeed state (`latest` is written last) of a stage still training: the rerun resumes from it
    ("a training stage after its first checkpoint", "_train/ckpt/latest", 1),
]


def _unfinished_with(store: Path, pattern: str, at_least: int) -> bool:
    """Some output of ``store`` has no manifest yet and at least ``at_least`` files matching ``pattern``."""
    outputs = store / "outputs"
    if not outputs.is_dir():
        return False
    return any(
        not (out / "manifest.json").exists() and count_files(out, pattern) >= at_least
        for out in outputs.iterdir()
    )


def kill_and_resume(checkout: Checkout, prefix: list[str] | None = None) -> Checkout:
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
                prefix=prefix,
            ):
                break  # this attempt ran to the end before the point was reached
            checkout.killed.append(what)
    except (AssertionError, TimeoutError) as exc:
        checkout.failure = str(exc)
        return checkout
    checkout.seconds += time.monotonic() - started
    return run_checkout(
        checkout, prefix
    )  # the final resume (a fully cached run if the last attempt completed)


def run_on_worker(checkout: Checkout, prefix: list[str] | None = None) -> Checkout:
    """The checkout's pipeline as a flow run of a deployment on a Prefect process worker: a real `prefect server`
    (its own home, a free port), `arcflow deploy` from the checkout, a worker started elsewhere, `arcflow run
    --deployment <pipeline>-adhoc` with the checkout's overrides; ``states`` gets the flow run's task runs. The CLI
    and the worker's flow runs import the checkout's code (PYTHONPATH)."""
    from tests.flows._prefect_stack import (
        Stack,
        environment,
        free_port,
        start_run,
        start_server,
        task_runs,
        wait_final,
    )

    started = time.monotonic()
    root = checkout.folder.parent / f"{checkout.folder.name}-server"
    root.mkdir(parents=True, exist_ok=True)
    checkout.prefect_home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    stack = Stack(root, environment(checkout.prefect_home, port), prefix=list(prefix or []), on_start=_track)
    stack.env["PYTHONPATH"] = str(checkout.folder)
    try:
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.validate import load_pipeline

        start_server(stack, port, timeout=600)
        name = load_pipeline(str(checkout.pipeline)).spec.name
        stack.cli(
            [sys.executable, "-m", "flows.cli", "deploy", "-f", str(checkout.pipeline), "--pool", "det-pool"],
            cwd=checkout.folder,
            timeout=600,
        )
        stack.start(
            "worker", [sys.executable, "-m", "prefect", "worker", "start", "--pool", "det-pool"], cwd=root
        )
        sets = [a for o in checkout.overrides for a in ("--set", o)]
        run_id = start_run(
            stack, ["--deployment", f"{name}-adhoc", "-f", str(checkout.pipeline), *sets], timeout=600
        )
        with (
            temporary_settings({PREFECT_API_URL: stack.env["PREFECT_API_URL"]}),
            get_client(sync_client=True) as client,
        ):
            run = wait_final(client, stack, run_id, timeout=RUN_TIMEOUT_S)
            checkout.states = task_runs(client, run_id)
        if run.state.type.value != "COMPLETED":
            checkout.failure = f"the deployment run ended {run.state}\n{stack.log_tail('worker', 200)}"
    except Exception as exc:  # recorded once, for every reader
        checkout.failure = f"the deployment run failed: {exc!r}"
    finally:
        stack.stop()
        for proc in stack.procs.values():
            _untrack(proc)
        checkout.seconds += time.monotonic() - started
    return checkout


_SESSION: dict[str, object] = {}
_SESSION_LOCK = threading.Lock()
_FUTURES: dict[str, Future[Checkout]] = {}
_POOL = ThreadPoolExecutor(max_workers=3, thread_name_prefix="default-run")
_LIVE: dict[int, subprocess.Popen] = {}  # process groups of the shared runs still running
_STOPPING = threading.Event()


def _track(proc: subprocess.Popen) -> None:
    with _SESSION_LOCK:
        _LIVE[proc.pid] = proc
    if _STOPPING.is_set():  # the session is ending: a run must not start anything new
        _kill_group(proc.pid)


def _untrack(proc: subprocess.Popen) -> None:
    with _SESSION_LOCK:
        _LIVE.pop(proc.pid, None)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _source(factory: pytest.TempPathFactory) -> Path | str:
    """This session's clone of the repository at HEAD, with the working tree's pipeline.yaml, or why there is
    none."""
    with _SESSION_LOCK:
        if "source" not in _SESSION:
            source = factory.mktemp("default-pipeline") / "source"
            try:
                subprocess.run(
                    ["git", "clone", "--quiet", str(ROOT), str(source)], check=True, capture_output=True
                )
            except (OSError, subprocess.CalledProcessError) as exc:
                _SESSION["source"] = f"cannot clone {ROOT} (not a git checkout?): {exc}"
            else:
                shutil.copyfile(
                    ROOT / "pipeline.yaml", source / "pipeline.yaml"
                )  # the pipeline as it is here
                _SESSION["source"] = source
        found = _SESSION["source"]
    assert isinstance(found, (Path, str))
    return found


def source_clone(factory: pytest.TempPathFactory) -> Path:
    """This session's clone of the repository at HEAD, with the working tree's pipeline.yaml (skips the test when
    the repository cannot be cloned)."""
    found = _source(factory)
    if isinstance(found, str):
        pytest.skip(found)
    return found


def _run_a(source: Path) -> Checkout:
    checkout = Checkout(source.parent / "A", source.parent / "A-store", source.parent / "A-prefect", 1)
    try:
        return run_checkout(clone_of(source, "A", 1), SHARED_NICE)
    except (OSError, subprocess.SubprocessError) as exc:  # recorded once: later callers see it too
        checkout.failure = f"the shared default run could not start: {exc!r}"
        return checkout


def _run_w(source: Path) -> Checkout:
    checkout = Checkout(source.parent / "W", source.parent / "W-store", source.parent / "W-prefect", 2)
    try:
        return run_on_worker(clone_of(source, "W", 2), SHARED_NICE)
    except (OSError, subprocess.SubprocessError) as exc:
        checkout.failure = f"the shared deployment run could not start: {exc!r}"
        return checkout


def _run_c(source: Path) -> Checkout:
    checkout = Checkout(source.parent / "C", source.parent / "C-store", source.parent / "C-prefect", 3)
    try:
        return kill_and_resume(clone_of(source, "C", 3), SHARED_NICE)
    except (OSError, subprocess.SubprocessError) as exc:
        checkout.failure = f"the shared kill -9 run could not start: {exc!r}"
        return checkout


# The session's shared runs of the default pipeline (SMALL_DEFAULT), each in its own clone of HEAD:
#   A: `arcflow run` (the CLI), 1 Dask worker: the clean reference;
#   W: a flow run of a deployment on a Prefect process worker, 2 Dask workers;
#   C: `arcflow run`, 3 Dask workers, killed with kill -9 at the points of KILL_POINTS and resumed each time.
SHARED_RUNS: dict[str, Callable[[Path], Checkout]] = {"A": _run_a, "W": _run_w, "C": _run_c}


def start_default_runs(factory: pytest.TempPathFactory, *names: str) -> None:
    """Start the named shared runs (once per session) in background threads, at once; returns without waiting.
    tests/conftest.py calls this at the session's start for every run a selected test reads (marker
    ``default_runs``), so they go on while the other tests run."""
    source = _source(factory)
    if isinstance(source, str):
        return  # default_runs skips the readers
    with _SESSION_LOCK:
        for name in names:
            if name not in _FUTURES and not _STOPPING.is_set():
                _FUTURES[name] = _POOL.submit(SHARED_RUNS[name], source)


def default_runs(factory: pytest.TempPathFactory, *names: str) -> dict[str, Checkout]:
    """The named shared runs (see ``SHARED_RUNS``), started if they were not yet (all at once) and waited for.
    Readers must not change their stores' outputs (copy a store first to recompute in it)."""
    source_clone(factory)  # skips when there is nothing to clone
    start_default_runs(factory, *names)
    return {name: _FUTURES[name].result() for name in names}


def default_run(factory: pytest.TempPathFactory) -> Checkout:
    """The session's clean CLI run of the default pipeline (run ``A``: ``SMALL_DEFAULT``, 1 worker)."""
    return default_runs(factory, "A")["A"]


def stop_default_runs(wait_s: float = 120.0) -> None:
    """At the session's end: kill what the shared runs still run (the session stopped before their readers) and
    wait for their threads."""
    _STOPPING.set()
    with _SESSION_LOCK:
        live = list(_LIVE)
        futures = list(_FUTURES.values())
    for pgid in live:
        _kill_group(pgid)
    wait(futures, timeout=wait_s)
