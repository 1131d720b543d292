"""An object-store workdir (``s3://bucket/prefix``) against a real S3-protocol server on loopback.

The server is moto's standalone server (``moto[server]``), started by these tests as its own process and spoken to
over HTTP by s3fs, exactly as arcflow speaks to S3. The dropped connection is a real one: a TCP proxy between s3fs
and the server forwards the headers and half the body of a chosen PUT, then closes both sockets.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _pipeline_util import load, run_all, write_corpus, write_pipeline

from tests._prefect_home import seed_prefect_home

pytest.importorskip("moto")
s3fs = pytest.importorskip("s3fs")

REPO = Path(__file__).resolve().parents[2]
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# the pause per shard is for the run to be killed mid-way; the local reference in this process skips it (SLOW_S=0):
# a shard's bytes do not depend on it
SLOW_KIND = '''
import os
import time
import polars as pl
from tasks.doc_map import DocumentMapKind
from tasks.registry import register


@register
class SlowUpperS3(DocumentMapKind):
    """Upper-cases text, slowly: a long node, so the test can kill it mid-way."""
    name = "slow_upper_s3_test"

    def process(self, frame, params, seed, task):
        time.sleep(float(os.environ.get("SLOW_S", "0.3")))
        out = frame.with_columns(pl.col("text").str.to_uppercase())
        return out, frame.clear().with_columns(pl.lit(None, dtype=pl.String).alias("reason"))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "moto's server exited"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError("moto's server did not start")


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture()
def s3(moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """A fresh bucket on the server; the environment points s3fs at it (and this test's staging folder)."""
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("ARCFLOW_STAGING", str(tmp_path / "staging"))
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    bucket = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    fs.mkdir(bucket)
    yield fs, bucket
    s3fs.S3FileSystem.clear_instance_cache()


def _nodes() -> dict:
    """A few nodes of the data half: HTML files, extraction, a filter, global exact dedup (a multi-phase kind)."""
    return {
        "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.01}},
        "text": {"uses": "extract_html", "inputs": ["raw"]},
        "long": {"uses": "filter", "inputs": ["text"], "params": {"expr": "length(text) > 200"}},
        "unique": {"uses": "dedup_exact", "inputs": ["long"]},
    }


def _manifests(store_dir: Path) -> dict[str, dict]:
    out = {}
    for m in sorted(store_dir.glob("outputs/*/manifest.json")):
        data = json.loads(m.read_text())
        out[data["node"]] = data
    return out


def _remote_manifests(fs, prefix: str) -> dict[str, dict]:
    fs.invalidate_cache()
    out = {}
    for path in sorted(fs.glob(f"{prefix}/outputs/*/manifest.json")):
        data = json.loads(fs.cat_file(path))
        out[data["node"]] = data
    return out


def _local_reference(tmp_path: Path, nodes: dict, n_files: int) -> dict[str, dict]:
    """The same pipeline on a local store: the fingerprints and content hashes an object store must match."""
    root = tmp_path / "local"
    write_corpus(root, n_files=n_files)
    pipeline = load(write_pipeline(root, nodes))
    run_all(pipeline)
    return _manifests(root / ".arcflow")


def test_full_run_on_s3_matches_a_local_store_then_reuses_resumes_and_collects(s3, tmp_path: Path) -> None:
    fs, bucket = s3
    reference = _local_reference(tmp_path, _nodes(), n_files=10)
    root = tmp_path / "remote"
    write_corpus(root, n_files=10)
    url = f"s3://{bucket}/store"
    pipeline = load(write_pipeline(root, _nodes(), extra={"workdir": url}))
    from flows.store import Store
    from flows.store_remote import ObjectStore

    store = Store(pipeline.workdir)
    assert isinstance(store, ObjectStore) and store.location == url
    with store.lock():
        assert run_all(pipeline) == {n: False for n in _nodes()}
    remote = _remote_manifests(fs, f"{bucket}/store")
    assert set(remote) == set(reference)
    for (
        node,
        manifest,
    ) in reference.items():  # same fingerprints, same bytes: the store's place changes nothing
        assert remote[node]["fingerprint"] == manifest["fingerprint"], node
        assert remote[node]["content_hash"] == manifest["content_hash"], node
        assert remote[node]["counts"] == manifest["counts"], node
    reports = [
        (m["fingerprint"], path)
        for m in remote.values()
        for entry in m.get("reports", [])
        for key, path in entry.items()
        if key != "title"
    ]
    assert reports  # the reports are in the bucket with the shards
    assert all(fs.exists(f"{bucket}/store/outputs/{fp}/{path}") for fp, path in reports)
    fp = remote["unique"]["fingerprint"]
    files = json.loads(fs.cat_file(f"{bucket}/store/outputs/{fp}/files.json"))
    assert files and all(fs.exists(f"{bucket}/store/outputs/{fp}/{rel}") for rel in files)
    refs = json.loads(fs.cat_file(f"{bucket}/store/refs/t.json"))
    assert {n: refs[n]["fingerprint"] for n in refs} == {n: m["fingerprint"] for n, m in remote.items()}
    assert fs.exists(f"{bucket}/store/store.json") and not fs.exists(f"{bucket}/store/lock")

    # another machine: an empty staging folder; everything is reused from the object store alone
    os.environ["ARCFLOW_STAGING"] = str(tmp_path / "staging-2")
    with Store(url).lock():
        assert run_all(pipeline) == {n: True for n in _nodes()}
        # a consumer recomputed there reads its input through the new staging folder
        assert run_all(pipeline, node="unique", force=True) == {"unique": False}
    assert (
        _remote_manifests(fs, f"{bucket}/store")["unique"]["content_hash"]
        == reference["unique"]["content_hash"]
    )

    # early cut-off: `long` recomputed with the same bytes leaves `unique` cached
    with Store(url).lock():
        assert run_all(pipeline, from_node="long", force=False) == {"long": False, "unique": True}

    # gc: a changed param (fewer rows kept) leaves the old `long` and `unique` unreferenced; gc removes them
    changed = load(root / "pipeline.yaml", ["nodes.long.params.expr=length(text) > 4000"])
    store = Store(url)
    with store.lock():
        run_all(changed)
        garbage = {fp for fp, _size in store.garbage()}
        assert garbage == {remote["long"]["fingerprint"], remote["unique"]["fingerprint"]}
        store.collect()
    fs.invalidate_cache()
    assert not fs.exists(f"{bucket}/store/outputs/{remote['long']['fingerprint']}")
    assert fs.exists(f"{bucket}/store/outputs/{remote['raw']['fingerprint']}/manifest.json")


# ---- the lock ------------------------------------------------------------------------------------------------
def test_lock_conditional_create_lease_expiry_and_lost_lease(s3, monkeypatch: pytest.MonkeyPatch) -> None:
    fs, bucket = s3
    from flows.errors import StoreLockedError
    from flows.object_lock import ObjectLock

    path = f"{bucket}/store/lock"
    first = ObjectLock(fs, path, f"s3://{bucket}/store", lease_s=3)
    first.acquire()
    second = ObjectLock(fs, path, f"s3://{bucket}/store", lease_s=3)
    with pytest.raises(StoreLockedError, match=r"in use by arcflow pid \d+ on .* --wait"):
        second.acquire()

    # --wait: the second queues and gets the lock once the first releases it
    got = threading.Event()
    waiter = threading.Thread(target=lambda: (second.acquire(wait=True, timeout_s=60), got.set()))
    waiter.start()
    time.sleep(1.0)  # its polls (every 0.75 s with this lease) find the lock held
    assert not got.is_set()
    first.release()
    waiter.join(30)
    assert got.is_set()
    held = json.loads(fs.cat_file(path))
    assert held["token"] == second.token

    # the lease is renewed while its holder lives: past several lease lengths, nobody can take it
    time.sleep(4.0)
    third = ObjectLock(fs, path, f"s3://{bucket}/store", lease_s=3)
    with pytest.raises(StoreLockedError):
        third.acquire()

    # a holder that stops renewing (a frozen machine; here its renewal thread is stopped) loses the lock at
    # expiry; the taker wins with If-Match, and the old holder can commit nothing any more
    second._stop.set()
    second._thread.join(10)
    time.sleep(3.5)
    third.acquire()
    assert not second.renew() and "took the lock over" in (second.lost or "")
    with pytest.raises(StoreLockedError, match="was lost"):
        second.check()
    third.release()
    assert not fs.exists(path)


# ---- a real `arcflow run`: a busy store, kill -9, resume ---------------------------------------------------------
def _plugin(root: Path) -> Path:
    site = root / "plugin_site"
    dist = site / "slow_s3_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: slow-s3-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[arcflow.kinds]\nslow = slow_s3_plugin\n")
    (site / "slow_s3_plugin.py").write_text(SLOW_KIND)
    return site


def _arcflow(root: Path, site: Path, *args: str, slow_s: str | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PYTHONPATH=f"{site}{os.pathsep}{REPO}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_HOME=str(root / "prefect_home"),
    )
    if slow_s is not None:
        env["SLOW_S"] = slow_s
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "run", "-f", str(root / "pipeline.yaml"), *args],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _remote_markers(fs, prefix: str) -> dict[str, list[str]]:
    """fingerprint -> marker names, of the outputs without a manifest."""
    fs.invalidate_cache()
    out: dict[str, list[str]] = {}
    for path in fs.glob(f"{prefix}/outputs/*/_markers/part-*.json"):
        fp = path.split("/")[-3]
        if not fs.exists(f"{prefix}/outputs/{fp}/manifest.json"):
            out.setdefault(fp, []).append(path)
    return out


@pytest.mark.slow  # two `arcflow run`s, each starting Prefect's embedded API: about 2-3 minutes on 2 busy cores
@pytest.mark.timeout(400)
def test_cli_run_busy_store_then_kill_9_and_resume(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, bucket = s3
    nodes = {
        "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.004}},
        "upper": {"uses": "slow_upper_s3_test", "inputs": ["raw"]},
    }
    site = _plugin(tmp_path)
    sys.path.insert(0, str(site))
    try:
        import slow_s3_plugin  # noqa: F401 - registers the kind in this process too, for the local reference
    finally:
        sys.path.remove(str(site))
    with monkeypatch.context() as m:
        m.setenv("SLOW_S", "0")  # set for the reference only: the runs below inherit this environment
        reference = _local_reference(tmp_path, nodes, n_files=20)
    root = tmp_path / "remote"
    write_corpus(root, n_files=20)
    url = f"s3://{bucket}/store"
    write_pipeline(root, nodes, workers=1, processes=True, extra={"workdir": url})
    from flows.store import Store

    # a second run on a busy store fails at once, naming the holder, before Prefect starts
    with Store(url).lock():
        busy = _arcflow(root, site)
        out, _ = busy.communicate(timeout=120)
        assert busy.returncode == 1, out
        assert (
            "is in use by arcflow pid" in out and f"on {socket.gethostname()}" in out and "--wait" in out
        ), out
        assert not (root / "prefect_home").exists() or not fs.exists(f"{bucket}/store/runs")

    upper_fp = reference["upper"]["fingerprint"]  # the same on S3: the store's place is no part of it
    seed_prefect_home(root / "prefect_home")  # a migrated database for the runs that start Prefect's API
    victim = _arcflow(root, site)
    deadline = time.monotonic() + 240
    while True:
        done = len(_remote_markers(fs, f"{bucket}/store").get(upper_fp, []))
        if done >= 4:
            break
        assert victim.poll() is None, "the run finished before it could be killed:\n" + victim.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(30)
    killed_fp = upper_fp
    names = _remote_markers(fs, f"{bucket}/store")[killed_fp]
    import pyarrow.parquet as pq

    for marker in names:  # every shard a marker names is a whole object, readable as Parquet
        shard = json.loads(fs.cat_file(marker))
        with fs.open(f"{bucket}/store/outputs/{killed_fp}/{os.path.basename(shard['path'])}", "rb") as fh:
            assert pq.read_table(fh).num_rows == shard["kept"]
    assert fs.exists(f"{bucket}/store/lock")  # the killed run's lock is left behind

    # the killed holder's process is gone on this machine: the next run takes its lock over and resumes, without
    # the per-shard pause (only the killed run needs it, to be killed mid-way; a shard's bytes do not depend on it)
    resumed = _arcflow(root, site, slow_s="0")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    remote = _remote_manifests(fs, f"{bucket}/store")
    assert remote["upper"]["fingerprint"] == killed_fp
    assert remote["upper"]["timings"]["shards_reused_after_crash"] >= len(names)
    for node in nodes:
        assert remote[node]["content_hash"] == reference[node]["content_hash"], node
    assert not fs.exists(f"{bucket}/store/lock")
    assert fs.glob(f"{bucket}/store/runs/*/run.json")


# ---- a dropped connection mid-upload --------------------------------------------------------------------------
class CuttingProxy:
    """A TCP proxy to ``upstream`` that, while ``cuts`` > 0, closes the connection carrying a PUT whose path holds
    ``target`` after forwarding its headers and half its body (one cut per such request)."""

    def __init__(self, upstream: str, target: bytes) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.target = target
        self.cuts = 0
        self.cut_done = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
                server = socket.create_connection(self.upstream)
            except OSError:
                return
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, inspect: bool) -> None:
        left = None  # body bytes still to forward before the cut, once a targeted PUT is under way
        try:
            while data := src.recv(65536):
                if left is None and inspect and self.cuts > 0:
                    line = data.split(b"\r\n", 1)[0]
                    if line.startswith(b"PUT /") and self.target in line and b"\r\n\r\n" in data:
                        head, _, body = data.partition(b"\r\n\r\n")
                        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                        dst.sendall(head + b"\r\n\r\n")
                        left, data = length // 2, body
                if left is None:
                    dst.sendall(data)
                    continue
                dst.sendall(data[:left])  # headers and half the body, then the link drops
                left -= min(left, len(data))
                if left == 0:
                    self.cuts -= 1
                    self.cut_done += 1
                    break
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.sock.close()


def test_dropped_connection_mid_upload_is_retried_and_never_leaves_half_a_shard(
    s3, moto_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, bucket = s3
    nodes = {"raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.01}}}
    reference = _local_reference(tmp_path, nodes, n_files=10)
    root = tmp_path / "remote"
    write_corpus(root, n_files=10)
    url = f"s3://{bucket}/store"
    pipeline = load(write_pipeline(root, nodes, extra={"workdir": url}))
    target = f"/{bucket}/store/outputs/".encode()
    proxy = CuttingProxy(moto_server, target)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    from data_pipes.io import remote as remote_io
    from flows.store import Store

    monkeypatch.setattr(remote_io, "PAUSE_S", 0.05)
    monkeypatch.setattr(remote_io, "ATTEMPTS", 2)
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 2)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's own retries: a persistent fault fails fast
    try:
        # one cut on the first shard file PUT: the client retries, the run ends as if nothing happened
        s3fs.S3FileSystem.clear_instance_cache()
        proxy.cuts = 1
        with Store(url).lock():
            assert run_all(pipeline) == {"raw": False}
        assert proxy.cut_done == 1
        remote = _remote_manifests(fs, f"{bucket}/store")
        assert remote["raw"]["content_hash"] == reference["raw"]["content_hash"]

        # the link keeps dropping (every retry of every shard PUT is cut): the node fails, and no marker names
        # a file that is not whole on the server
        with Store(url).lock():
            Store(url).discard_output(remote["raw"]["fingerprint"])
        s3fs.S3FileSystem.clear_instance_cache()
        proxy.target = f"/{bucket}/store/outputs/{remote['raw']['fingerprint']}/part-00001.parquet".encode()
        proxy.cuts = 10_000  # every PUT of shard 1's kept rows is cut, every retry too
        with pytest.raises(Exception), Store(url).lock():  # noqa: B017 - the client's own error class
            run_all(pipeline)
        proxy.cuts = 0
        fs.invalidate_cache()
        fp = remote["raw"]["fingerprint"]
        assert not fs.exists(f"{bucket}/store/outputs/{fp}/manifest.json")
        import pyarrow.parquet as pq

        assert proxy.cut_done >= 2  # retried before giving up
        assert not fs.exists(f"{bucket}/store/outputs/{fp}/part-00001.parquet")
        assert not fs.exists(f"{bucket}/store/outputs/{fp}/_markers/part-00001.json")
        markers = fs.glob(f"{bucket}/store/outputs/{fp}/_markers/part-*.json")
        for marker in markers:
            shard = json.loads(fs.cat_file(marker))
            with fs.open(f"{bucket}/store/outputs/{fp}/{os.path.basename(shard['path'])}", "rb") as fh:
                assert pq.read_table(fh).num_rows == shard["kept"]
        parquet = [p for p in fs.find(f"{bucket}/store/outputs/{fp}") if p.endswith(".parquet")]
        for path in parquet:  # no half object anywhere
            with fs.open(path, "rb") as fh:
                pq.read_table(fh)

        # the link is back: the next run finishes with the same bytes
        s3fs.S3FileSystem.clear_instance_cache()
        with Store(url).lock():
            assert run_all(pipeline) == {"raw": False}
        remote = _remote_manifests(fs, f"{bucket}/store")
        assert remote["raw"]["content_hash"] == reference["raw"]["content_hash"]
        # the shards with a marker on the server are skipped (shard 1 too: it is whole in the staging folder,
        # with its local marker, so only its upload is redone)
        assert remote["raw"]["timings"]["shards_reused_after_crash"] >= len(markers)
    finally:
        proxy.close()


# ---- sources reading s3:// ---------------------------------------------------------------------------------------
def test_files_and_warc_sources_read_s3_paths_as_they_read_local_ones(s3, tmp_path: Path) -> None:
    fs, bucket = s3
    from data_pipes.io.warc_writer import WarcPage, write_warc

    root = tmp_path / "src"
    data = write_corpus(root, n_files=12)
    (data / "broken.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")  # quarantined the same way in both
    warcs = root / "warcs"
    warcs.mkdir()
    pages = [
        WarcPage(f"d{i}", f"https://example.org/{i}", p.read_text())
        for i, p in enumerate(sorted(data.glob("*.html")))
    ]
    write_warc(str(warcs / "a.warc.gz"), pages[:5])
    write_warc(str(warcs / "b.warc.gz"), pages[5:])
    fs.put(str(data) + "/", f"{bucket}/corpus/data/", recursive=True)
    fs.put(str(warcs) + "/", f"{bucket}/corpus/warcs/", recursive=True)

    def nodes(prefix: str) -> dict:
        return {
            "raw": {"uses": "files", "params": {"paths": [f"{prefix}data"], "shard_mb": 0.02}},
            "crawl": {"uses": "warc", "params": {"paths": [f"{prefix}warcs/*.warc.gz"]}},
        }

    local_pipeline = load(write_pipeline(root, nodes("")))
    run_all(local_pipeline)
    on_disk = _manifests(root / ".arcflow")
    remote_root = tmp_path / "remote"
    remote_root.mkdir()
    remote_pipeline = load(write_pipeline(remote_root, nodes(f"s3://{bucket}/corpus/")))
    run_all(remote_pipeline)
    from_s3 = _manifests(remote_root / ".arcflow")
    for node in ("raw", "crawl"):  # the same rows, ids and errors, byte for byte
        assert from_s3[node]["content_hash"] == on_disk[node]["content_hash"], node
        assert from_s3[node]["counts"] == on_disk[node]["counts"], node
    assert from_s3["raw"]["counts"]["quarantined"] >= 1
    assert from_s3["crawl"]["counts"]["kept"] == len(pages)

    # the fingerprint follows the objects' content tags: an unchanged bucket is reused, a changed object is not
    assert run_all(load(remote_root / "pipeline.yaml")) == {"raw": True, "crawl": True}
    fs.pipe_file(f"{bucket}/corpus/data/000_json.html", b"<html><body>changed</body></html>")
    assert run_all(load(remote_root / "pipeline.yaml")) == {"raw": False, "crawl": True}


# ---- bad input: a clear error before any node starts ---------------------------------------------------------
def test_missing_bucket_unreachable_endpoint_and_newer_store_are_clear_errors(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, bucket = s3
    from flows.store import Store
    from flows.store_remote import StoreUnreachableError

    with pytest.raises(StoreUnreachableError, match=r"the bucket 'no-such-bucket' does not exist.*workdir"):
        with Store("s3://no-such-bucket/store").lock():
            pass

    fs.pipe_file(f"{bucket}/store/store.json", json.dumps({"format": 99, "arcflow": "9.0.0"}).encode())
    with pytest.raises(StoreUnreachableError, match=r"newer arcflow \(9\.0\.0, store format 99"):
        with Store(f"s3://{bucket}/store").lock():
            pass
    assert not fs.exists(f"{bucket}/store/lock")

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    from data_pipes.io import remote as remote_io

    monkeypatch.setattr(remote_io, "PAUSE_S", 0.05)
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    with pytest.raises(StoreUnreachableError, match=r"cannot be reached: .*AWS_ENDPOINT_URL"):
        with Store(f"s3://{bucket}/store").lock():
            pass


def test_shards_written_on_another_machine_are_hashed_from_their_recorded_digests(
    s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker on another machine: its shard files are in the bucket but not in the driver's staging folder (here
    the upload removes them locally, which is what the driver sees of such a worker). The content hash comes from
    the digests the worker recorded, without downloading the shards; a consumer then reads them from the bucket."""
    fs, bucket = s3
    nodes = {
        "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.01}},
        "long": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 200"}},
    }
    reference = _local_reference(tmp_path, nodes, n_files=10)
    root = tmp_path / "remote"
    write_corpus(root, n_files=10)
    url = f"s3://{bucket}/store"
    pipeline = load(write_pipeline(root, nodes, extra={"workdir": url}))
    from flows import store_remote
    from flows.store import Store

    upload = store_remote._Upload.__call__
    elsewhere: list[str] = []

    def upload_from_elsewhere(self, result) -> None:  # noqa: ANN001 - the patched method's own signature
        upload(self, result)
        if "part-" in result.path and reference["raw"]["fingerprint"] in self.out_dir:
            for sub in ("", "excluded", "quarantine", "_markers"):
                for path in Path(self.out_dir, sub).glob(f"part-{result.index:05d}.*"):
                    path.unlink()
                    elsewhere.append(str(path))

    monkeypatch.setattr(store_remote._Upload, "__call__", upload_from_elsewhere)
    with Store(url).lock():
        assert run_all(pipeline, node="raw") == {"raw": False}
    staged = Path(Store(url).output_dir(reference["raw"]["fingerprint"]))
    assert elsewhere and not any(Path(p).exists() for p in elsewhere)  # never downloaded to be hashed
    remote = _remote_manifests(fs, f"{bucket}/store")
    assert remote["raw"]["content_hash"] == reference["raw"]["content_hash"]
    assert json.loads(fs.cat_file(f"{bucket}/store/outputs/{remote['raw']['fingerprint']}/files.json")) == (
        json.loads(
            (
                tmp_path / "local" / ".arcflow" / "outputs" / remote["raw"]["fingerprint"] / "files.json"
            ).read_text()
        )
    )
    with Store(url).lock():
        assert run_all(pipeline) == {"raw": True, "long": False}
    assert (
        _remote_manifests(fs, f"{bucket}/store")["long"]["content_hash"] == reference["long"]["content_hash"]
    )
    assert list(staged.glob("part-*.parquet"))  # the consumer's read brought them here
