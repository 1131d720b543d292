"""An object store that cannot be used gives one clear line, in bounded time, for the store and for sources.

Real endpoints on loopback: a socket that accepts connections and never answers (the hang the review found:
`arcflow run` stuck in the store's reachability check for 500 s), a port nothing listens on, and moto's S3 server
with its authentication on (``INITIAL_NO_AUTH_ACTION_COUNT``: the first two requests create a user and its key,
every later one is checked), spoken to with that key and a wrong secret.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _moto_server import moto_server_process
from _pipeline_util import load, write_corpus, write_pipeline

pytest.importorskip("moto")
s3fs = pytest.importorskip("s3fs")

from flows.errors import SpecError  # noqa: E402
from flows.store import Store  # noqa: E402
from flows.store_remote import StoreUnreachableError  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def silent_endpoint() -> Iterator[str]:
    """A server that accepts every connection and never sends a byte."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
        assert held  # the client did connect: the silence is what it waited on
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        srv.close()


@pytest.fixture()
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("ARCFLOW_STAGING", str(tmp_path / "staging"))
    monkeypatch.setenv("ARCFLOW_REMOTE_CHECK_S", "2")
    s3fs.S3FileSystem.clear_instance_cache()
    yield monkeypatch
    s3fs.S3FileSystem.clear_instance_cache()


def _source_pipeline(tmp_path: Path, url: str) -> Path:
    write_corpus(tmp_path, n_files=1)
    return write_pipeline(tmp_path, {"raw": {"uses": "files", "params": {"paths": [url]}}})


def _problem(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load(path)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0].render()


def test_a_silent_endpoint_is_a_clear_error_within_the_check_s(
    s3_env: pytest.MonkeyPatch, silent_endpoint: str, tmp_path: Path
) -> None:
    s3_env.setenv("AWS_ENDPOINT_URL", silent_endpoint)
    with pytest.raises(StoreUnreachableError) as info:
        with Store("s3://bucket/store").lock():
            pass
    assert str(info.value) == (
        f"the store s3://bucket/store did not answer within 2 s (endpoint {silent_endpoint}); check the "
        f"endpoint (AWS_ENDPOINT_URL for an S3-compatible server), that it is up, and the network "
        f"(ARCFLOW_REMOTE_CHECK_S=SECONDS waits longer)"
    )

    # `status` (and plan, show, trace) check the store before the engine reads anything of it
    from typer.testing import CliRunner

    from flows.cli import app

    write_corpus(tmp_path / "local", n_files=1)
    nodes = {"raw": {"uses": "files", "params": {"paths": ["data"]}}}
    local = write_pipeline(tmp_path / "local", nodes, extra={"workdir": "s3://bucket/store"})
    shown = CliRunner().invoke(app, ["status", "-f", str(local)], env={"COLUMNS": "400"})
    assert shown.exit_code == 1 and str(info.value) in shown.output, shown.output

    # a source on it: the problem names the node's YAML line and the URL
    message = _problem(_source_pipeline(tmp_path, "s3://bucket/corpus"))
    assert message.startswith(f"{tmp_path / 'pipeline.yaml'}:"), message
    assert "nodes.raw.params.paths[0]: s3://bucket/corpus: the object store at " in message, message
    assert f"{silent_endpoint} did not answer within 2 s; check the endpoint (AWS_ENDPOINT_URL" in message


def test_the_store_filesystem_has_time_limits_that_the_user_can_raise(s3_env: pytest.MonkeyPatch) -> None:
    """Connect and read timeouts and a bounded number of attempts on every S3 filesystem arcflow opens; the
    user's fsspec options and AWS_MAX_ATTEMPTS win."""
    from data_pipes.io import remote

    fs, _ = remote.filesystem("s3://bucket/store")
    assert fs.config_kwargs == {
        "connect_timeout": remote.S3_CONNECT_TIMEOUT_S,
        "read_timeout": remote.S3_READ_TIMEOUT_S,
        "retries": {"mode": "standard", "max_attempts": remote.S3_MAX_ATTEMPTS},
    }
    assert fs.retries == remote.S3FS_RETRIES
    import fsspec.config

    s3_env.setitem(fsspec.config.conf, "s3", {"config_kwargs": {"read_timeout": 300}})
    s3_env.setenv("AWS_MAX_ATTEMPTS", "7")
    fs, _ = remote.filesystem("s3://bucket/store")
    assert fs.config_kwargs == {"connect_timeout": remote.S3_CONNECT_TIMEOUT_S, "read_timeout": 300}


def test_a_refused_connection_on_a_source_is_one_line(s3_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    s3_env.setenv("AWS_ENDPOINT_URL", endpoint)
    s3_env.setenv("ARCFLOW_REMOTE_CHECK_S", "60")  # the client's own attempts give up first, with their error
    message = _problem(_source_pipeline(tmp_path, "s3://bucket/corpus/*.html"))
    assert (
        "nodes.raw.params.paths[0]: s3://bucket/corpus/*.html: the object store cannot be reached: "
        in message
    )
    assert f'EndpointConnectionError: Could not connect to the endpoint URL: "{endpoint}/' in message
    assert message.endswith(
        f"(endpoint {endpoint}); check the endpoint (AWS_ENDPOINT_URL for an S3-compatible server), that it is "
        f"up, and the network"
    ), message


@pytest.fixture(scope="module")
def moto_with_auth() -> Iterator[tuple[str, str]]:
    """moto's S3 server checking signatures; returns its URL and a key id it knows."""
    with moto_server_process(dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="2")) as url:
        import boto3

        iam = boto3.client(
            "iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        iam.create_user(UserName="arcflow")
        key = iam.create_access_key(UserName="arcflow")["AccessKey"]["AccessKeyId"]
        yield url, key


def test_a_wrong_secret_is_one_line_for_a_source_and_for_the_store(
    s3_env: pytest.MonkeyPatch, moto_with_auth: tuple[str, str], tmp_path: Path
) -> None:
    url, key = moto_with_auth
    s3_env.setenv("AWS_ENDPOINT_URL", url)
    s3_env.setenv("AWS_ACCESS_KEY_ID", key)
    s3_env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    message = _problem(_source_pipeline(tmp_path, "s3://bucket/corpus"))
    assert (
        f"nodes.raw.params.paths[0]: s3://bucket/corpus: the object store at {url} refused these credentials ("
        in message
    ), message
    assert message.endswith(
        "); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE (or the fsspec options of this "
        "protocol), and that they may list this bucket"
    ), message
    with pytest.raises(StoreUnreachableError, match=r"the store s3://bucket/store refused these credentials"):
        with Store("s3://bucket/store").lock():
            pass
