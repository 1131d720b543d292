"""A forced rerun (`arcflow run --node X`, or `--force`) that fails mid-compute keeps the node's old output.

The new output is computed in a staging folder beside the old one and takes its place only once complete; a failure
leaves the store as it was (ref, manifest, shards: every byte), so `status`, `show` and a downstream node still use
the old output. Local store here; the object store's version is in ``test_rerun_keeps_output_s3.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _pipeline_util import load, run_all, write_corpus, write_pipeline
from typer.testing import CliRunner

import flows.engine as engine_mod
from flows.cli import app
from flows.engine import Engine
from flows.store import Store


def nodes() -> dict[str, Any]:
    """HTML files in several shards -> extraction (the node forced) -> a filter downstream."""
    return {
        "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.01}},
        "text": {"uses": "extract_html", "inputs": ["raw"]},
        "long": {"uses": "filter", "inputs": ["text"], "params": {"expr": "length(text) > 200"}},
    }


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file of the store but the run records and the lock: what a failed run must leave alone."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in ("runs", "lock")
    }


_REAL_EXECUTE = engine_mod.execute_shard
_GUARD = threading.Lock()
_FAILING: dict[str, Any] = {}  # kind, total, started, finished: the shard failure fail_last_shard arranged


def _flaky_execute(kind_name: str, params: Any, task: Any, **kwargs: Any) -> Any:
    """``execute_shard``, but the last shard of the failing kind to start raises once the others have finished
    (module level: Dask pickles it by reference to run it in a worker thread of this process)."""
    if kind_name != _FAILING.get("kind"):
        return _REAL_EXECUTE(kind_name, params, task, **kwargs)
    with _GUARD:
        _FAILING["started"].append(task.index)
        last = len(_FAILING["started"]) == _FAILING["total"]
    if last:
        deadline = time.monotonic() + 60
        while len(_FAILING["finished"]) < _FAILING["total"] - 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        raise RuntimeError(f"injected failure in shard {task.index}")
    result = _REAL_EXECUTE(kind_name, params, task, **kwargs)
    _FAILING["finished"].append(task.index)
    return result


def fail_last_shard(monkeypatch: pytest.MonkeyPatch, kind: str, total: int) -> list[int]:
    """Make the last of ``total`` shards of ``kind`` to start raise once the others have finished: a failure
    mid-compute, with finished shards of the new output already written. Returns the finished shards' indices."""
    _FAILING.update(kind=kind, total=total, started=[], finished=[])
    monkeypatch.setattr(engine_mod, "execute_shard", _flaky_execute)
    monkeypatch.setitem(_FAILING, "kind", kind)  # undone with the patch
    return _FAILING["finished"]


def status_rows(path: Path) -> dict[str, str]:
    result = CliRunner().invoke(app, ["status", "-f", str(path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") >= 4}


def test_failed_forced_rerun_leaves_the_old_output_and_a_good_rerun_replaces_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_corpus(tmp_path, n_files=6)
    path = write_pipeline(tmp_path, nodes())
    pipeline = load(path)
    store_dir = tmp_path / ".arcflow"
    assert run_all(pipeline) == {"raw": False, "text": False, "long": False}
    store = Store(pipeline.workdir)
    refs = store.read_refs("t")
    fp = refs["text"]["fingerprint"]
    old_manifest = store.manifest(fp)
    assert old_manifest is not None and old_manifest["shards"] >= 3  # several shards: one fails mid-way
    before = snapshot(store_dir)

    total = old_manifest["shards"]
    finished = fail_last_shard(monkeypatch, "extract_html", total)
    with pytest.raises(RuntimeError, match="injected failure in shard"):
        run_all(pipeline, node="text")  # `arcflow run --node text`: forced
    assert len(finished) == total - 1  # the new output was well under way when it failed

    # the store is exactly as before: same files, same bytes (no staging folder left either)
    assert snapshot(store_dir) == before
    assert store.read_refs("t") == refs and store.has_output(fp)
    assert store.manifest(fp) == old_manifest
    rows = status_rows(path)
    assert "up_to_date" in rows["text"] and "missing" not in rows["text"], rows["text"]
    shown = CliRunner().invoke(app, ["show", "text", "-f", str(path), "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["fingerprint"] == fp
    assert json.loads(shown.output)["status"] == "up_to_date"
    # the old output is still usable: the node downstream, forced, reads it
    monkeypatch.undo()
    assert run_all(pipeline, node="long") == {"long": False}

    # the same rerun succeeding replaces the output in place: same fingerprint and bytes, a new manifest
    assert run_all(pipeline, node="text") == {"text": False}
    new_manifest = store.manifest(fp)
    assert new_manifest is not None
    assert new_manifest["content_hash"] == old_manifest["content_hash"]
    assert new_manifest["timings"]["started_at"] >= old_manifest["timings"]["started_at"]
    assert store.read_refs("t")["text"]["fingerprint"] == fp
    assert sorted(p.name for p in (store_dir / "outputs").iterdir()) == sorted(
        r["fingerprint"] for r in store.read_refs("t").values()
    )  # no staging folder, no replaced copy left behind
    with store.lock():
        assert store.garbage() == []
    assert run_all(pipeline) == {"raw": True, "text": True, "long": True}


def test_a_forced_rerun_reports_its_shards_as_computed_not_resumed(tmp_path: Path) -> None:
    """Forcing recomputes every shard: the old output's markers are not taken as finished shards."""
    write_corpus(tmp_path, n_files=4)
    pipeline = load(write_pipeline(tmp_path, nodes()))
    run_all(pipeline)
    engine = Engine(pipeline)
    try:
        reused, manifest = engine.run_node("text", forced=True)
    finally:
        engine.close()
    assert not reused and manifest["timings"]["shards_reused_after_crash"] == 0


KILLER = """
import os, signal, threading, time
import flows.engine as engine_mod

real, lock, started, finished, total = engine_mod.execute_shard, threading.Lock(), [], [], [0]

def killing(kind_name, params, task, **kwargs):
    if kind_name != "extract_html":
        return real(kind_name, params, task, **kwargs)
    with lock:
        started.append(task.index)
        last = len(started) == total[0]
    if last:  # the other shards are finished: kill -9 mid-compute
        while len(finished) < total[0] - 1:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(kind_name, params, task, **kwargs)
    finished.append(task.index)
    return result
"""
KILL_SCRIPT = """
import sys
import flows.engine as engine_mod
import rerun_killer
from flows.engine import Engine
from flows.validate import load_pipeline

rerun_killer.total[0] = int(sys.argv[2])
engine_mod.execute_shard = rerun_killer.killing  # a module's function: Dask pickles it by reference
Engine(load_pipeline(sys.argv[1], [])).run_node("text", forced=True)
"""


def test_kill_9_during_a_forced_rerun_keeps_the_old_output_then_gc_or_a_rerun_clears_the_rest(
    tmp_path: Path,
) -> None:
    """kill -9 mid-way through `--node text`: the old output, its ref and `status` are untouched; the unfinished
    `<fp>.new` is the only trace, which gc removes, and which the next forced rerun starts over from scratch."""
    write_corpus(tmp_path, n_files=6)
    path = write_pipeline(tmp_path, nodes())
    pipeline = load(path)
    store_dir = tmp_path / ".arcflow"
    run_all(pipeline)
    store = Store(pipeline.workdir)
    fp = store.read_refs("t")["text"]["fingerprint"]
    manifest = store.manifest(fp)
    assert manifest is not None
    before = snapshot(store_dir)
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    (tmp_path / "rerun_killer.py").write_text(KILLER)
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, str(script), str(path), str(manifest["shards"])],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{repo}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]

    partial = store_dir / "outputs" / f"{fp}.new"
    assert len(list((partial / "_markers").glob("part-*.json"))) == manifest["shards"] - 1
    assert {k: v for k, v in snapshot(store_dir).items() if not k.startswith(f"outputs/{fp}.new/")} == before
    assert "up_to_date" in status_rows(path)["text"]
    with store.lock():
        assert [g for g, _size in store.garbage()] == [f"{fp}.new"]  # gc would remove it, and only it

    # the next forced rerun starts over (forcing recomputes every shard) and replaces the output
    engine = Engine(pipeline)
    try:
        reused, again = engine.run_node("text", forced=True)
    finally:
        engine.close()
    assert not reused and again["timings"]["shards_reused_after_crash"] == 0
    assert again["content_hash"] == manifest["content_hash"]
    assert not partial.exists() and not (store_dir / "outputs" / f"{fp}.old").exists()


def test_a_swap_cut_between_its_renames_is_finished_when_the_lock_is_taken(tmp_path: Path) -> None:
    """The two renames of a replacement, cut after the first (the old output moved aside, the new one complete
    beside it): taking the lock (a run, gc) puts the new output in place; with no complete new output, the old
    one goes back."""
    write_corpus(tmp_path, n_files=3)
    pipeline = load(write_pipeline(tmp_path, nodes()))
    run_all(pipeline)
    store = Store(pipeline.workdir)
    fp = store.read_refs("t")["text"]["fingerprint"]
    cur = Path(store.output_dir(fp))
    new, old = Path(f"{cur}.new"), Path(f"{cur}.old")
    shutil.copytree(cur, new)
    (new / "report-marker.txt").write_text("the new output")  # tells the two apart
    cur.rename(old)  # killed here
    assert not store.has_output(fp)
    with store.lock():
        assert store.has_output(fp) and (cur / "report-marker.txt").exists()
        assert not new.exists() and not old.exists()

    # no complete new output (killed before its manifest, and between the renames: not a state the swap makes,
    # but recovery must not lose the old output for it)
    shutil.copytree(cur, new)
    (new / "manifest.json").unlink()
    cur.rename(old)
    with store.lock():
        assert store.has_output(fp) and (cur / "report-marker.txt").exists()
        assert not old.exists()
        assert [g for g, _size in store.garbage()] == [f"{fp}.new"]
        store.collect()
    assert not new.exists() and run_all(pipeline) == {"raw": True, "text": True, "long": True}

    # a run that reaches the node before any lock is taken again (a node retried in the same process) finishes
    # the swap first, and reuses the output it puts in place
    shutil.copytree(cur, new)
    (new / "report-marker.txt").write_text("newer still")
    cur.rename(old)
    assert run_all(pipeline) == {"raw": True, "text": True, "long": True}
    assert (cur / "report-marker.txt").read_text() == "newer still" and not old.exists() and not new.exists()


def _straggling_execute(kind_name: str, params: Any, task: Any, **kwargs: Any) -> Any:
    """``execute_shard``, but shard 0 of the failing kind raises as soon as two other shards are running, and
    those take 0.5 s more: still running (stragglers) when the map fails."""
    if kind_name != _FAILING.get("kind"):
        return _REAL_EXECUTE(kind_name, params, task, **kwargs)
    if task.index == 0:
        deadline = time.monotonic() + 60
        while len(_FAILING["started"]) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        raise RuntimeError("injected failure while other shards run")
    with _GUARD:
        _FAILING["started"].append(task.index)
    time.sleep(0.5)
    result = _REAL_EXECUTE(kind_name, params, task, **kwargs)
    _FAILING["finished"].append((task.index, time.monotonic()))
    return result


def test_a_failed_rerun_waits_for_its_running_shards_before_removing_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelling a Dask task that already runs does not stop it: the engine would remove the rerun's folder while
    a straggler shard still writes into it. The failed map waits for them first, so nothing is left."""
    write_corpus(tmp_path, n_files=6)
    executor = {"n_workers": 1, "threads_per_worker": 3, "processes": False, "inline_s": 0}
    pipeline = load(write_pipeline(tmp_path, nodes(), extra={"executor": executor}))
    run_all(pipeline)
    store_dir = tmp_path / ".arcflow"
    before = snapshot(store_dir)
    _FAILING.update(kind="extract_html", started=[], finished=[])
    monkeypatch.setattr(engine_mod, "execute_shard", _straggling_execute)
    with pytest.raises(RuntimeError, match="injected failure while other shards run"):
        run_all(pipeline, node="text")
    failed_at = time.monotonic()
    stragglers = list(_FAILING["started"])
    assert len(stragglers) >= 2  # shards that ran on while shard 0 failed
    time.sleep(1.0)  # had the run not waited for them, they would write now
    assert sorted(i for i, _t in _FAILING["finished"]) == sorted(stragglers)
    assert all(t <= failed_at for _i, t in _FAILING["finished"])  # all done before the run returned
    assert snapshot(store_dir) == before
