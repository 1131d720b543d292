"""A forced rerun on an object-store workdir (moto's S3 server on loopback, as ``test_object_store.py``) keeps the
node's old output until the new one is complete, and swaps it in with the manifest written last.

A failure mid-compute leaves every object of the store as it was; a successful rerun that gives the same bytes
copies no shard; a swap cut short (the old manifest already gone) is finished by the next lock; an input shard
deleted from the bucket is a MissingInputError naming it before anything is touched.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _pipeline_util import load, run_all, write_corpus, write_pipeline
from test_object_store import moto_server, s3  # noqa: F401 - the fixtures: the server and a fresh bucket
from test_rerun_keeps_output import nodes

import flows.store_remote as store_remote
from flows.errors import MissingInputError
from flows.store import Store
from flows.store_remote import ObjectStore

_REAL_RUN = store_remote._run_and_upload
_GUARD = threading.Lock()
_FAILING: dict[str, Any] = {}


def _flaky_run_and_upload(
    fn: Any, url: str, root: str, out_dir: str, fingerprint: str, inputs: Any, *args: Any
) -> Any:
    """The worker's shard function (run, then upload, marker last), but the last shard of the failing kind to
    start raises once the others are uploaded (module level: Dask pickles it by reference)."""
    kind = fn.fn.args[0]  # CodeGuard(partial(execute_shard, kind, ...))
    if kind != _FAILING.get("kind"):
        return _REAL_RUN(fn, url, root, out_dir, fingerprint, inputs, *args)
    with _GUARD:
        _FAILING["started"] += 1
        last = _FAILING["started"] == _FAILING["total"]
    if last:
        deadline = time.monotonic() + 60
        while len(_FAILING["finished"]) < _FAILING["total"] - 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        raise RuntimeError("injected failure mid-compute")
    result = _REAL_RUN(fn, url, root, out_dir, fingerprint, inputs, *args)
    _FAILING["finished"].append(fingerprint)
    return result


def objects(fs: Any, prefix: str) -> dict[str, str]:
    """sha256 of every object of the store but the run records, lock and store info."""
    fs.invalidate_cache()
    return {
        path[len(prefix) + 1 :]: hashlib.sha256(fs.cat_file(path)).hexdigest()
        for path in sorted(fs.find(prefix))
        if path[len(prefix) + 1 :].split("/", 1)[0] not in ("runs", "lock", "store.json")
    }


def test_forced_rerun_on_s3_failed_swapped_cut_short_and_input_lost(
    s3: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fs, bucket = s3
    write_corpus(tmp_path, n_files=6)
    url = f"s3://{bucket}/store"
    prefix = f"{bucket}/store"
    pipeline = load(write_pipeline(tmp_path, nodes(), extra={"workdir": url}))
    store = Store(url)
    assert isinstance(store, ObjectStore)
    with store.lock():
        run_all(pipeline)
    refs = store.read_refs("t")
    fp = refs["text"]["fingerprint"]
    old = store.manifest(fp)
    assert old is not None and old["shards"] >= 3
    before = objects(fs, prefix)

    # 1. a failure mid-compute, after the other shards were uploaded to <fp>.new: the store is as it was
    _FAILING.update(kind="extract_html", total=old["shards"], started=0, finished=[])
    monkeypatch.setattr(store_remote, "_run_and_upload", _flaky_run_and_upload)
    with store.lock(), pytest.raises(RuntimeError, match="injected failure mid-compute"):
        run_all(pipeline, node="text")
    assert _FAILING["finished"] == [f"{fp}.new"] * (
        old["shards"] - 1
    )  # the rerun wrote beside the old output
    assert objects(fs, prefix) == before
    assert store.read_refs("t") == refs and store.manifest(fp) == old
    monkeypatch.undo()

    # 2. the rerun succeeds with the same bytes: the manifest is new, no shard is copied, nothing is left beside
    copied: list[str] = []
    real_copy = ObjectStore._copy

    def counting_copy(self: ObjectStore, src: str, dst: str) -> None:
        copied.append(dst.rsplit("/", 1)[-1])
        real_copy(self, src, dst)

    monkeypatch.setattr(ObjectStore, "_copy", counting_copy)
    with store.lock():
        assert run_all(pipeline, node="text") == {"text": False}
    new = store.manifest(fp)
    assert new is not None and new["content_hash"] == old["content_hash"] and new != old
    assert not [c for c in copied if c.endswith(".parquet")], copied
    assert copied[-3:] == ["files.json", "shards.json", "manifest.json"]  # the manifest last
    after = objects(fs, prefix)
    assert not [p for p in after if p.startswith(("replacing/", f"outputs/{fp}.new/"))]
    assert {p: h for p, h in after.items() if p.endswith(".parquet")} == {
        p: h for p, h in before.items() if p.endswith(".parquet")
    }

    # 3. a swap cut short after the old manifest went (the copy of the new manifest fails): the output is
    # incomplete, never the old one called complete with new files; the next lock finishes the swap
    def failing_manifest_copy(self: ObjectStore, src: str, dst: str) -> None:
        if dst.endswith("/manifest.json"):
            raise ConnectionError("connection reset by peer")
        real_copy(self, src, dst)

    monkeypatch.setattr(ObjectStore, "_copy", failing_manifest_copy)
    with store.lock(), pytest.raises(ConnectionError):
        run_all(pipeline, node="text")
    monkeypatch.undo()
    assert not store.has_output(fp)
    assert fs.exists(f"{prefix}/replacing/{fp}.json") and fs.exists(
        f"{prefix}/outputs/{fp}.new/manifest.json"
    )
    with store.lock():  # any run or gc: the swap is finished before anything else
        assert store.has_output(fp) and store.manifest(fp)["content_hash"] == old["content_hash"]
        assert store.garbage() == []
    fs.invalidate_cache()
    assert not fs.exists(f"{prefix}/replacing/{fp}.json") and not fs.exists(f"{prefix}/outputs/{fp}.new")
    with store.lock():
        assert run_all(pipeline) == {"raw": True, "text": True, "long": True}
    # ... and so does a run in the same process that reaches the node again (a retried node, a later `run`)
    monkeypatch.setattr(ObjectStore, "_copy", failing_manifest_copy)
    with store.lock():
        with pytest.raises(ConnectionError):
            run_all(pipeline, node="text")
        monkeypatch.undo()
        assert not store.has_output(fp)
        assert run_all(pipeline) == {
            "raw": True,
            "text": True,
            "long": True,
        }  # reused: the swap finished first
        assert store.manifest(fp)["content_hash"] == old["content_hash"]
    fs.invalidate_cache()
    assert not fs.exists(f"{prefix}/replacing/{fp}.json") and not fs.exists(f"{prefix}/outputs/{fp}.new")

    # 4. an input shard deleted from the bucket: MissingInputError naming its URL, and `text` is untouched
    raw = refs["raw"]["fingerprint"]
    fs.rm_file(f"{prefix}/outputs/{raw}/part-00001.parquet")
    kept = objects(fs, prefix)
    with store.lock(), pytest.raises(MissingInputError) as err:
        run_all(pipeline, node="text")
    assert f"{url}/outputs/{raw}/part-00001.parquet does not exist" in str(err.value)
    assert "arcflow run --from raw" in str(err.value)
    assert objects(fs, prefix) == kept and store.has_output(fp)
