"""An object store that cannot be used gives one clear line, in bounded time, for the store and for sources.

A real endpoint on loopback: a socket that accepts connections and never answers (the hang the review found:
`arcflow run` stuck in the store's reachability check for 500 s).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

s3fs = pytest.importorskip("s3fs")

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
