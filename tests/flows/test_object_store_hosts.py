"""An object-store workdir on a cluster whose workers are on different hosts, each with its own staging folder.

Two ``dask worker`` processes (``--resources CPU=1``) join an external ``dask scheduler``; each runs in a mount
namespace of its own (``unshare -m``) where its own folder is bind-mounted over the staging path, so every "host"
sees its own staging folder at the path the driver uses (the documented setup: the same ``ARCFLOW_STAGING`` path on
every host, each on its own disk), and a file one worker writes there is invisible to the other and to the driver
(a third folder). The store is moto's S3 server on loopback. A web pipeline with the multi-phase kinds (exact and
MinHash dedup, quality buckets, a tokenizer and pack, SemDedup) must end with the same content hashes as on a local store:
their phase files under ``_work/`` travel through the object store.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _dask_cluster import stop_processes, wait_for_workers
from _pipeline_util import load, run_all, write_corpus, write_pipeline
from test_object_store import CREDENTIALS, _free_port, _local_reference, _remote_manifests, moto_server, s3

__all__ = ["moto_server", "s3"]  # the fixtures, used by name

NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.02}},
    "text": {"uses": "extract_html", "inputs": ["raw"]},
    "exact": {"uses": "dedup_exact", "inputs": ["text"]},
    "near": {"uses": "dedup_minhash", "inputs": ["exact"]},
    "scored": {"uses": "quality_score", "inputs": ["near"], "params": {"scorer": "math_density"}},
    "buckets": {
        "uses": "quality_buckets",
        "inputs": ["scored"],
        "params": {"buckets": [{"name": "top", "min_percentile": 50}, {"name": "low", "drop": True}]},
    },
    "tok": {
        "uses": "tokenizer_train",
        "inputs": ["near"],
        "params": {"vocab_size": 300, "sample_docs": 40, "heldout_docs": 0},
    },
    "packed": {"uses": "pack", "inputs": ["tok", "near"], "params": {"seq_len": 64}},
    # SemDedup: its driver-side k-means writes files the workers' pairwise phase reads
    "sem": {
        "uses": "dedup_semantic",
        "inputs": ["near"],
        "params": {"eps": 0.07, "device": "cpu", "batch_size": 4, "max_tokens": 32, "kmeans_iters": 5},
    },
}


def _private_mounts() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


def _worker(address: str, own: Path, staging: Path, env: dict[str, str]) -> subprocess.Popen:
    """A `dask worker` on a "host" of its own: ``own`` bind-mounted over ``staging`` in a private mount namespace."""
    dask = Path(sys.executable).parent / "dask"
    script = (
        f"mount --make-rprivate / && mount --bind {own} {staging} && exec {dask} worker {address} "
        "--nworkers 1 --nthreads 1 --no-dashboard --resources CPU=1"
    )
    return subprocess.Popen(
        ["unshare", "-m", "sh", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


@pytest.mark.skipif(
    not _private_mounts(), reason="needs `unshare -m` (root or user namespaces) for private mounts"
)
def test_work_files_travel_between_hosts(s3, tmp_path: Path) -> None:
    fs, bucket = s3
    staging = tmp_path / "staging"  # the driver's, and the path every worker sees its own folder at
    hosts = [tmp_path / "host-1", tmp_path / "host-2"]
    for folder in (staging, *hosts):
        folder.mkdir()
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, **CREDENTIALS, "ARCFLOW_STAGING": str(staging)}
    dask = Path(sys.executable).parent / "dask"
    procs = [
        subprocess.Popen(
            [str(dask), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        procs += [_worker(address, own, staging, env) for own in hosts]
        reference = _local_reference(tmp_path, NODES, n_files=10)  # while the cluster starts
        wait_for_workers(address, 2, timeout_s=60, poll_s=0.3)
        root = tmp_path / "remote"
        write_corpus(root, n_files=10)
        url = f"s3://{bucket}/store"
        pipeline = load(write_pipeline(root, NODES, extra={"workdir": url, "executor": {"address": address}}))
        from flows.store import Store

        with Store(url).lock():
            assert run_all(pipeline) == {n: False for n in NODES}
            # a forced rerun computes into `<fp>.new` (its phase files under that prefix) and swaps it in
            assert run_all(pipeline, node="exact", force=True) == {"exact": False}
    finally:
        stop_processes(procs)
    remote = _remote_manifests(fs, f"{bucket}/store")
    assert {n: m["content_hash"] for n, m in remote.items()} == {
        n: m["content_hash"] for n, m in reference.items()
    }
    # the workers really were elsewhere: each wrote files the other and the driver never had locally
    written = [{p.name for p in own.rglob("*.parquet")} for own in hosts]
    assert all(written) and written[0] != written[1]
    # and their copies of a completed node's phase files went with the driver's (pack's and SemDedup's stay)
    kept = {remote[n]["fingerprint"] for n in ("packed", "sem")}
    left = {p.parent.name for own in hosts for p in own.glob("*/outputs/*/_work")}
    assert left <= kept, left - kept
    # the bucket keeps the phase files a local store keeps (pack's and SemDedup's `_work/`) and no others: the dedup kinds'
    # `_work/` went from the bucket when their node completed, as it goes from a local folder
    fs.invalidate_cache()
    prefix = f"{bucket}/store/outputs/"
    kept_remote = sorted(p[len(prefix) :] for p in fs.find(prefix) if "/_work/" in p)
    local = tmp_path / "local" / ".arcflow" / "outputs"
    kept_local = sorted(str(p.relative_to(local)) for p in local.glob("*/_work/**/*") if p.is_file())
    assert kept_remote == kept_local
    assert not [p for p in fs.find(prefix) if ".new/" in p]
    assert {k.split("/")[0] for k in kept_local} == {remote[n]["fingerprint"] for n in ("packed", "sem")}


def test_a_worker_staging_elsewhere_is_a_clear_error(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose ARCFLOW_STAGING is another path than the driver's: the node's paths would not exist there."""
    from flows import store_remote

    _fs, bucket = s3
    url = f"s3://{bucket}/store"
    driver_root = store_remote.staging_root(url)
    monkeypatch.setenv("ARCFLOW_STAGING", str(tmp_path / "elsewhere"))
    out_dir = os.path.join(driver_root, "outputs", "fp")
    with pytest.raises(store_remote.StagingMismatchError, match="the same ARCFLOW_STAGING path") as info:
        store_remote._run_phase(len, url, driver_root, out_dir, "fp", (), "phase-1", [1])
    assert driver_root in str(info.value) and str(tmp_path / "elsewhere") in str(info.value)


def test_a_staged_file_a_task_cannot_find_is_named(s3) -> None:
    """A phase file missing on a task's machine (deleted by hand, or written where nothing shares it) is one error
    naming the file and what to do, not pyarrow's FileNotFoundError."""
    import pyarrow.parquet as pq

    from flows import store_remote

    _fs, bucket = s3
    url = f"s3://{bucket}/store"
    root = store_remote.staging_root(url)
    out_dir = os.path.join(root, "outputs", "fp")
    missing = os.path.join(out_dir, "_work", "hashes", "part-00003.parquet")
    with pytest.raises(store_remote.SharedFileError, match="part-00003.parquet") as info:
        store_remote._run_phase(pq.read_table, url, root, out_dir, "fp", (), "phase-1", missing)
    assert "Rerun the node" in str(info.value)
