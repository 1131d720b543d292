"""Crash and scale: kill -9 in the middle of a node, resume, byte-identical outputs; 1 vs 2 Dask workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _pipeline_util import load, output_hashes, run_all, write_corpus, write_pipeline

from tests._prefect_home import seed_prefect_home

# the pause per shard is for the run to be killed mid-way; the uninterrupted reference in this process skips it
# (SLOW_S=0): a shard's bytes do not depend on it
SLOW_KIND = '''
import os
import time
import polars as pl
from tasks.doc_map import DocumentMapKind
from tasks.registry import register


@register
class SlowUpper(DocumentMapKind):
    """Upper-cases text, slowly: a stand-in for a long node, so the test can kill it mid-way."""
    name = "slow_upper_test"

    def process(self, frame, params, seed, task):
        time.sleep(float(os.environ.get("SLOW_S", "0.15")))
        out = frame.with_columns(pl.col("text").str.to_uppercase())
        return out, frame.clear().with_columns(pl.lit(None, dtype=pl.String).alias("reason"))
'''


def _plugin(root: Path) -> Path:
    """A real plugin distribution on PYTHONPATH registering a kind through the `arcflow.kinds` entry point."""
    site = root / "plugin_site"
    dist = site / "slow_kind_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-kind-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[arcflow.kinds]\nslow = slow_kind_plugin\n")
    (site / "slow_kind_plugin.py").write_text(SLOW_KIND)
    return site


def _arcflow(root: Path, site: Path, *args: str, slow_s: str | None = None) -> subprocess.Popen:
    env = dict(
        os.environ,
        PYTHONPATH=f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        # its database already migrated (tests/_prefect_home.py)
        PREFECT_HOME=str(seed_prefect_home(root / "prefect_home")),
    )
    if slow_s is not None:
        env["SLOW_S"] = slow_s
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", "-f", str(root / "pipeline.yaml"), *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _unfinished(workdir: Path) -> tuple[int, str]:
    """(markers, fingerprint) of the output being written: one without a manifest yet."""
    best = (0, "")
    for out in (workdir / "outputs").glob("*"):
        if not (out / "manifest.json").exists():
            best = max(best, (len(list((out / "_markers").glob("part-*.json"))), out.name))  # not total.json
    return best


@pytest.mark.slow
def test_kill_9_then_resume_is_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_corpus(tmp_path, n_files=40)
    site = _plugin(tmp_path)
    write_pipeline(
        tmp_path,
        {
            "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.01}},
            "upper": {"uses": "slow_upper_test", "inputs": ["raw"]},
            "few": {"uses": "sample", "inputs": ["upper"], "params": {"fraction": 0.5}},
        },
        workers=1,
        processes=True,
    )
    workdir = tmp_path / ".arcflow"

    # the uninterrupted reference: the same pipeline through the engine in this process (the kind imported from
    # the plugin's folder, Dask threads), in another folder; a run's bytes depend on neither
    sys.path.insert(0, str(site))
    try:
        import slow_kind_plugin  # noqa: F401 - registers the kind in this process too
    finally:
        sys.path.remove(str(site))
    clean = tmp_path / "clean"
    write_corpus(clean, n_files=40)
    clean_nodes = yaml.safe_load((tmp_path / "pipeline.yaml").read_text())["nodes"]
    with monkeypatch.context() as m:
        m.setenv("SLOW_S", "0")  # set for the reference only: the runs below inherit this environment
        run_all(load(write_pipeline(clean, clean_nodes, workers=1)))
    reference = output_hashes(clean / ".arcflow")
    assert reference

    victim = _arcflow(tmp_path, site)
    deadline = time.monotonic() + 180
    while _unfinished(workdir)[0] < 8:
        assert victim.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(30)
    done_before, killed_fp = _unfinished(workdir)
    assert 8 <= done_before < 40

    # without the per-shard pause: only the killed run needs it, and a shard's bytes do not depend on it
    resumed = _arcflow(tmp_path, site, slow_s="0")
    out, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, out.decode()
    assert output_hashes(workdir) == reference
    from flows.store import Store

    store = Store(str(workdir))
    manifest = store.manifest(killed_fp)
    assert manifest is not None and manifest["timings"]["shards_reused_after_crash"] >= done_before


@pytest.mark.slow
def test_two_workers_give_the_same_outputs_as_one(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=12)
    nodes = {
        "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.00001}},
        "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 300"}},
        "few": {"uses": "sample", "inputs": ["long"], "params": {"fraction": 0.7, "limit": 5}},
        "both": {"uses": "union", "inputs": ["few", "raw"], "params": {"fractions": {"raw": 0.5}}},
    }
    hashes = []
    for workers in (1, 2):
        write_pipeline(
            tmp_path,
            nodes,
            workers=workers,
            processes=True,
            extra={"workdir": str(tmp_path / f"store{workers}")},
        )
        run_all(load(tmp_path / "pipeline.yaml"))
        hashes.append(output_hashes(tmp_path / f"store{workers}"))
    assert hashes[0] and hashes[0] == hashes[1]
