"""A long-lived Dask worker keeps the modules it imported. After the code of a node changes, the driver
fingerprints the new code; a worker still holding the old must fail the node (restart the workers), never store
the old code's output under the new fingerprint (tasks/loaded_code.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from _dask_cluster import free_port, stop_processes, wait_for_workers
from _pipeline_util import load, write_corpus, write_pipeline

from flows.engine import Engine
from tasks.loaded_code import StaleWorkerCodeError, check_loaded

STEP = (
    "from datatrove.pipeline.filters.base_filter import BaseFilter\n\n\n"
    "class Marked(BaseFilter):\n"
    "    name = 'marked'\n\n"
    "    def filter(self, doc):\n"
    "        return {verdict}\n"
)


def _run(path: Path) -> dict[str, dict]:
    """Every node through the engine (no Prefect); node -> manifest."""
    pipeline = load(path)
    engine = Engine(pipeline)
    try:
        return {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_a_module_changed_after_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = tmp_path / "guard_probe_mod.py"
    mod.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import guard_probe_mod  # noqa: F401 - loaded, as a worker holds a kind's module

    check_loaded({"guard_probe_mod": _sha("X = 1\n")}, "before the task")  # the code it holds: fine
    check_loaded({"not_imported_here": "0" * 64}, "before the task")  # not held yet: imported fresh later
    mod.write_text("X = 2\n")
    with pytest.raises(StaleWorkerCodeError, match=r"guard_probe_mod.*restart the cluster's `dask worker`"):
        check_loaded({"guard_probe_mod": _sha("X = 2\n")}, "before the task")


@pytest.mark.slow
def test_an_external_worker_with_old_code_fails_the_node_until_restarted(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=3)
    steps = tmp_path / "steps"
    steps.mkdir()
    step_file = steps / "stale_probe_step.py"
    step_file.write_text(STEP.format(verdict="True"))  # keeps every document
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(steps), os.environ.get("PYTHONPATH", "")])}
    sys.path.insert(0, str(steps))

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    bindir = Path(sys.executable).parent
    scheduler = [
        str(bindir / "dask"),
        "scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-dashboard",
    ]
    worker = [str(bindir / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    procs = [subprocess.Popen(scheduler, **quiet)]
    try:
        procs.append(subprocess.Popen(worker, **quiet))
        wait_for_workers(address, 1, timeout_s=90, poll_s=0.5)
        nodes = {
            "raw": {"uses": "files", "params": {"paths": ["data"]}},
            "marked": {"uses": "datatrove", "inputs": ["raw"], "params": {"step": "stale_probe_step:Marked"}},
        }
        extra = {"workdir": str(tmp_path / "store"), "executor": {"address": address, "inline_s": 0}}
        write_pipeline(tmp_path, nodes, extra=extra)
        first = _run(tmp_path / "pipeline.yaml")
        assert first["marked"]["counts"]["kept"] == first["marked"]["counts"]["in"] > 0

        step_file.write_text(
            STEP.format(verdict="False")
        )  # now drops every document; the worker holds the old
        with pytest.raises(Exception, match=r"stale_probe_step.*restart the cluster's `dask worker`"):
            _run(tmp_path / "pipeline.yaml")

        stop_processes(procs[1:])  # a new worker process imports the file as it is now
        procs[1:] = [subprocess.Popen(worker, **quiet)]
        wait_for_workers(address, 1, timeout_s=90, poll_s=0.5)
        second = _run(tmp_path / "pipeline.yaml")
        assert second["marked"]["fingerprint"] != first["marked"]["fingerprint"]
        assert second["marked"]["counts"]["kept"] == 0
        assert second["marked"]["counts"]["dropped"] == first["marked"]["counts"]["in"]
        shard = tmp_path / "store" / "outputs" / second["marked"]["fingerprint"] / "part-00000.parquet"
        assert pl.read_parquet(shard).height == 0
    finally:
        sys.path.remove(str(steps))
        stop_processes(procs)
