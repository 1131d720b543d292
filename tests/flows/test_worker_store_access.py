"""An object-store workdir on a cluster whose worker lacks the store's credentials: the driver's check passes (it
has them), and the node's failure says on which machine the store failed and what that worker's environment needs,
not the client library's bare NoCredentialsError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _dask_cluster import stop_processes, wait_for_workers
from _pipeline_util import load, run_all, write_corpus, write_pipeline
from test_object_store import CREDENTIALS, _free_port, moto_server, s3

__all__ = ["moto_server", "s3"]  # the fixtures, used by name


@pytest.mark.slow
def test_a_worker_without_the_store_credentials_is_named(s3: tuple, tmp_path: Path) -> None:
    _fs, bucket = s3
    write_corpus(tmp_path, n_files=2)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    # the worker's environment: the endpoint, but no credentials (and no instance metadata to look them up in)
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"], **quiet
        )
    ]
    try:
        procs.append(
            subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--no-dashboard"], env=env, **quiet)
        )
        wait_for_workers(address, 1, timeout_s=90, poll_s=0.5)
        nodes = {"raw": {"uses": "files", "params": {"paths": ["data"]}}}
        extra = {"workdir": f"s3://{bucket}/store", "executor": {"address": address, "inline_s": 0}}
        write_pipeline(tmp_path, nodes, extra=extra)
        with pytest.raises(Exception) as caught:
            run_all(load(tmp_path / "pipeline.yaml"))
    finally:
        stop_processes(procs)
    text = str(caught.value)
    assert type(caught.value).__name__ == "WorkerStoreAccessError", repr(caught.value)
    assert f"the store s3://{bucket}/store failed: NoCredentialsError" in text, text
    assert "AWS_ACCESS_KEY_ID" in text and "`dask worker`" in text, text


def test_no_credentials_at_all_is_said_as_such(
    s3: tuple, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import s3fs

    from flows.store import Store
    from flows.store_remote import StoreUnreachableError

    _fs, bucket = s3
    for key in CREDENTIALS:
        if key != "AWS_DEFAULT_REGION":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(
        StoreUnreachableError,
        match=rf"the store s3://{bucket}/x: no credentials were found .*AWS_ACCESS_KEY_ID",
    ):
        Store(f"s3://{bucket}/x").check_format()


def test_a_source_in_a_missing_bucket_says_the_bucket(s3: tuple) -> None:
    from data_pipes.io.remote import RemoteAccessError, expand_url

    _fs, bucket = s3
    assert expand_url(f"s3://{bucket}/nothing-here/*.jsonl") == []  # the bucket is there: no match, no error
    with pytest.raises(
        RemoteAccessError, match=r"the bucket 'no-such-bucket-arcflow' does not exist at http"
    ):
        expand_url("s3://no-such-bucket-arcflow/corpus/*.jsonl")
