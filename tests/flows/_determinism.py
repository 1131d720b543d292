"""Helpers for determinism tests: what a store holds per node, compared across stores, and pipeline runs via the CLI.

``store_hashes(workdir)`` is the comparison key: ``{node: (fingerprint, content_hash)}`` of the last good run
recorded in the store's refs, checked against each node's manifest. ``differences(a, b, ...)`` explains a mismatch
down to the output files that differ (from each output's ``files.json``). Other tests (a deployment worker's run
against a CLI run, for instance) use these too.

``default_run(tmp_path_factory)`` is the one clean run of the default pipeline (shrunk by ``SMALL_DEFAULT``, one
Dask worker, from a clone of this repository at HEAD with the working tree's pipeline.yaml) that a test session
makes: the first test that asks for it runs it, the others read it (the determinism test's reference, the
deployment worker's comparison, the README's run-then-cached test). ``clone_of(source_clone(...), ...)`` gives
other clones of the same commit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
    """The environment of a CLI run in tests: its own Prefect home (ephemeral API), no analytics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_HOME=str(prefect_home))
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
) -> subprocess.CompletedProcess[str]:
    """``arcflow run -f PIPELINE --set ...`` from ``cwd``, to the end. Past ``timeout_s`` its whole process group
    (the CLI, its Dask workers, the training launcher, Prefect's server) is killed and ``TimeoutExpired`` raised."""
    cmd = cli_command(pipeline_file, overrides)
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=cli_env(prefect_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            _reap_group(proc.pid)
            raise subprocess.TimeoutExpired(cmd, timeout_s, output=stdout, stderr=stderr) from exc
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
) -> bool:
    """Start the run and SIGKILL its whole process group (the CLI, its Dask workers, Prefect's server) the
    moment ``kill_when()`` holds. Returns True if it was killed, False if it ended first (its exit status must
    then be 0)."""
    log = open(Path(cwd) / f"run-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        cli_command(pipeline_file, overrides),
        cwd=cwd,
        env=cli_env(prefect_home),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None:
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


# ---- clones of this repository and the session's one clean default run -----------------------------------------
@dataclass
class Checkout:
    """A clone of this repository with its own store and Prefect home, run with ``workers`` Dask workers."""

    folder: Path
    workdir: Path
    prefect_home: Path
    workers: int
    seconds: float = 0.0
    failure: str = ""
    output: str = ""
    killed: list[str] = field(default_factory=list)

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


RUN_TIMEOUT_S = 1800.0  # a run of SMALL_DEFAULT takes minutes; far longer only on a heavily shared machine


def run_checkout(checkout: Checkout) -> Checkout:
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


_SESSION: dict[str, object] = {}
_SESSION_LOCK = threading.Lock()


def source_clone(factory: pytest.TempPathFactory) -> Path:
    """This session's clone of the repository at HEAD, with the working tree's pipeline.yaml (skips the test when
    the repository cannot be cloned)."""
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
    if isinstance(found, str):
        pytest.skip(found)
    assert isinstance(found, Path)
    return found


def default_run(factory: pytest.TempPathFactory) -> Checkout:
    """The session's clean run of the default pipeline (``SMALL_DEFAULT``, 1 worker) in clone ``A`` of
    :func:`source_clone`; run by the first caller (others wait for it), then shared. Readers must not change its
    store's outputs (copy the store first to recompute in it)."""
    source = source_clone(factory)
    with _SESSION_LOCK:
        if "run" not in _SESSION:
            checkout = Checkout(
                source.parent / "A", source.parent / "A-store", source.parent / "A-prefect", 1
            )
            try:
                checkout = run_checkout(clone_of(source, "A", 1))
            except (OSError, subprocess.SubprocessError) as exc:  # recorded once: later callers see it too
                checkout.failure = f"the shared default run could not start: {exc!r}"
            _SESSION["run"] = checkout
        run = _SESSION["run"]
    assert isinstance(run, Checkout)
    return run
