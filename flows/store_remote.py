"""The node store on an object store (``workdir: s3://bucket/prefix``, any fsspec URL), with a local staging copy.

The object store holds the whole store, in the same layout as a local one (``flows/store.py``): outputs with their
markers, ``shards.json``, ``files.json`` and manifests, ``refs/``, ``runs/``, the ``lock`` and reports. It is the
only truth: plans, reuse, resume and gc read it.

Kinds stay as they are: they read and write local files. Each machine keeps a **staging folder** per store
(``ARCFLOW_STAGING``, default ``~/.cache/arcflow/stores/<hash of the URL>``) laid out like a local store, and
``ctx.out_dir`` is the node's folder there. The store moves whole objects between the two:

* **a finished shard is uploaded by the worker that wrote it**: its kept, excluded and quarantined files (and any
  other file of the node named ``part-<index>...``), each one PUT of a complete object, then its marker last. A
  marker in the object store therefore always names files that are whole there.
* **a node that starts** first copies down what the object store already has of its output (the markers and files
  of the shards a killed run finished), so those shards are skipped exactly as locally.
* **a node that ends** uploads whatever else its folder holds (reports, files written by the kind's driver side),
  then ``files.json``, ``shards.json`` and the manifest last. The content hash covers the same bytes as locally
  (staged files hashed here, shards written on other machines by the sha256 their worker recorded in
  ``_hashes/``), so a local and a remote store give the same fingerprints and content hashes.
* **phase files** of a multi-phase kind (top-level ``_`` folders such as ``_work/``): each task uploads those it
  wrote when it ends, a machine downloads those it lacks before its first task of a phase, the driver uploads its
  own before a phase and downloads the workers' after it; when the node completes, those the driver's folder no
  longer holds go from the object store and from the workers' staging folders, as ``_work/`` goes locally. So the
  phases of one node may run on different hosts, each with its own staging folder at the same path.
* **an input** is read through the staging folder: its files are downloaded once (whole objects, checked against
  the object store's sizes) and reused by every later node on this machine.

A **forced rerun** of a stored output computes into ``outputs/<fingerprint>.new/`` (shards, markers and manifest as
any output), the old output staying complete meanwhile. The swap that follows (``replace_output``) cannot be a
rename here, so it is journaled: ``replacing/<fingerprint>.json`` is written first; then the old manifest goes (from
here on the output is incomplete, never half old and half new while called complete), the old objects the new
output lacks are deleted, the new objects are copied in place (server-side; a file whose sha256 is the old one's is
left as it is, so a rerun that gives the same bytes copies only its bookkeeping), ``files.json`` and ``shards.json``
next and the manifest last; then ``<fingerprint>.new`` and the journal go. A swap that a killed process left in the
journal is finished when the lock is next taken (``recover_replacements``), before any plan or gc acts on it.

Nothing is written to the object store under a temporary name: a PUT is atomic, so a dropped connection leaves the
old object or none (the upload is retried), and a shard without its marker is redone.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from data_pipes.io.atomic import TMP_MARK, atomic_write_bytes, remove_stale_temporaries
from data_pipes.io.remote import (
    filesystem,
    get_bytes,
    get_file,
    listing,
    put_bytes,
    put_file,
    with_retries,
)
from data_pipes.io.shards import MARKERS, ShardResult, marker_path
from flows.errors import StoreLockedError
from flows.object_lock import ObjectLock
from flows.store import (
    _HELD,
    _HELD_GUARD,
    BOOKKEEPING,
    FILES,
    MANIFEST,
    NEW,
    SHARDS,
    Store,
    content_hash_of,
    file_sha256,
    hash_files,
)
from flows.store_format import STORE_FORMAT, STORE_INFO, StoreFormatError, check_format

REPLACING = "replacing"  # replacing/<fingerprint>.json: a swap of outputs/<fingerprint>.new under way


class StoreUnreachableError(StoreLockedError):
    """The object store cannot be used: unreachable, refused credentials, a missing bucket, a newer format. A
    ``StoreLockedError`` so every command that takes the lock reports it the same way, before any node starts;
    ``final``: waiting (``--wait``) cannot help."""

    final = True


def staging_root(url: str) -> str:
    """This machine's staging folder for the store at ``url``."""
    base = os.environ.get("ARCFLOW_STAGING") or os.path.join(
        os.path.expanduser("~"), ".cache", "arcflow", "stores"
    )
    return os.path.join(os.path.abspath(base), hashlib.sha256(url.encode()).hexdigest()[:16])


class ObjectStore(Store):
    """``Store`` with the object store at ``url`` as the truth and ``root`` as this machine's staging folder."""

    url: str

    def __init__(self, root: str) -> None:
        self.url = root.rstrip("/")
        self.fs, self.base = filesystem(self.url)
        self.root = staging_root(self.url)
        self._lock_obj: ObjectLock | None = None
        self._io_lock = threading.Lock()
        self._listed: dict[str, dict[str, int]] = {}  # fingerprint -> its objects, at its last materialize

    def __post_init__(self) -> None:  # the dataclass hook of Store: root is set in __init__ here
        pass

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # pickled by its URL (the lock and filesystem stay here)
        return ObjectStore, (self.url,)

    @property
    def location(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r}, staging={self.root!r})"

    # ---- remote paths ----------------------------------------------------------------------------------------
    def _remote(self, *parts: str) -> str:
        return "/".join([self.base, *(p.strip("/") for p in parts if p)])

    def _remote_output(self, fingerprint: str, rel: str = "") -> str:
        return self._remote("outputs", fingerprint, rel)

    def _get_json(self, path: str) -> Any | None:
        try:
            return json.loads(get_bytes(self.fs, path))
        except FileNotFoundError:
            return None

    # ---- outputs ---------------------------------------------------------------------------------------------
    def manifest(self, fingerprint: str) -> dict[str, Any] | None:
        return self._get_json(self._remote_output(fingerprint, MANIFEST))

    def has_output(self, fingerprint: str) -> bool:
        path = self._remote_output(fingerprint, MANIFEST)
        self.fs.invalidate_cache(path)
        return bool(with_retries(f"HEAD {path}", lambda: self.fs.exists(path)))

    def shards(self, fingerprint: str) -> list[dict[str, Any]]:
        found = self._get_json(self._remote_output(fingerprint, SHARDS))
        if found is None:
            raise FileNotFoundError(f"{self._remote_output(fingerprint, SHARDS)}: the output is not complete")
        return found

    def files(self, fingerprint: str) -> dict[str, str]:
        return self._get_json(self._remote_output(fingerprint, FILES)) or {}

    def stage_output(self, fingerprint: str) -> None:
        """Before a node runs: copy down what the object store has of this unfinished output (the files and
        markers of the shards a killed run finished), so those shards are skipped."""
        self._pull(fingerprint, skip_scratch=False)

    def materialize(self, fingerprint: str) -> str:
        """A finished output (an input of a node) complete in the staging folder; returns its local folder."""
        self._listed[fingerprint] = self._pull(fingerprint, skip_scratch=True)
        return self.output_dir(fingerprint)

    def missing_files(self, fingerprint: str, rels: list[str]) -> list[str]:
        """The files of ``rels`` the object store lacks for ``fingerprint`` (URLs), by the listing its last
        ``materialize`` made (a node's inputs are materialized just before they are checked), else a new one."""
        remote = self._listed.pop(fingerprint, None)
        if remote is None:
            remote = listing(self.fs, self._remote_output(fingerprint))
        return [f"{self.url}/outputs/{fingerprint}/{rel}" for rel in rels if rel not in remote]

    def _pull(self, fingerprint: str, skip_scratch: bool) -> dict[str, int]:
        local = self.output_dir(fingerprint)
        remote = listing(self.fs, self._remote_output(fingerprint))
        # markers last: a staged marker always has its shard's files beside it, even if this copy is cut short
        for rel, size in sorted(remote.items(), key=lambda kv: (kv[0].startswith(f"{MARKERS}/"), kv[0])):
            if TMP_MARK in rel or (skip_scratch and rel.startswith("_")):
                continue
            path = os.path.join(local, rel)
            try:
                same = os.path.getsize(path) == size
            except OSError:
                same = False
            if not same:
                get_file(self.fs, self._remote_output(fingerprint, rel), path)
            if _is_scratch(rel):  # known to equal its object: not uploaded again before the next phase
                _note_synced(self.url, fingerprint, local, rel)
        return remote

    def shard_runner(
        self,
        fn: Callable[..., ShardResult],
        out_dir: str,
        fingerprint: str,
        inputs: list[str] | None = None,
    ) -> Callable[..., ShardResult]:
        """Wrap a worker's shard function: the worker first completes its machine's staged copy of the node's
        ``inputs`` (fingerprints; once per process, a no-op on the driver's machine), then runs the shard and
        uploads what it wrote, marker last. Around it the node's phase files are shared as in ``phase_runner``."""
        token = self._phase_start(out_dir, fingerprint)
        return functools.partial(
            _run_and_upload, fn, self.url, self.root, out_dir, fingerprint, tuple(inputs or ()), token
        )

    def phase_runner(
        self,
        fn: Callable[..., Any],
        out_dir: str,
        fingerprint: str,
        inputs: list[str] | None = None,
    ) -> Callable[..., Any]:
        """Wrap the function of one ``ctx.map`` phase: on a worker, the node's ``inputs`` are staged (once per
        process), the phase files of the earlier phases that this machine lacks are downloaded (one listing per
        phase and process), ``fn`` runs, and the files it wrote in the node's folder are uploaded before it
        returns (see ``_run_phase``). A multi-phase kind's tasks on different hosts thus see each other's
        ``_work/``."""
        token = self._phase_start(out_dir, fingerprint)
        return functools.partial(
            _run_phase, fn, self.url, self.root, out_dir, fingerprint, tuple(inputs or ()), token
        )

    def _phase_start(self, out_dir: str, fingerprint: str) -> str:
        """Before a phase's tasks go out: what the driver's side wrote in the node's folder since the last phase
        is uploaded (e.g. SemDedup's k-means), so every worker finds it. Returns the phase's token (a worker
        lists the node's phase files once per token)."""
        _push_shared(self.url, fingerprint, out_dir, _scratch_stats(out_dir))
        return uuid.uuid4().hex

    def pull_scratch(self, fingerprint: str) -> None:
        """After a phase ran on the cluster: the phase files its tasks wrote on other machines, downloaded to the
        driver's staging folder (the driver's side of a kind reads some of them)."""
        _pull_scratch(self.url, fingerprint, self.output_dir(fingerprint))

    def hash_output(self, fingerprint: str) -> str:
        """The content hash, the same as on a local store: the staged files are hashed here; the files only the
        object store holds (shards written on other machines) are taken by the sha256 their worker recorded
        (``_hashes/part-<index>.json``), and downloaded only where none was recorded. Then every output file the
        object store lacks is uploaded."""
        local = self.output_dir(fingerprint)
        files = hash_files(local)
        _push_shared(
            self.url, fingerprint, local, _scratch_stats(local)
        )  # e.g. `keep_work: true`'s phase files
        remote = listing(self.fs, self._remote_output(fingerprint))
        self._drop_scratch(fingerprint, remote)
        missing = [rel for rel in sorted(remote) if _is_output(rel) and rel not in files]
        recorded: dict[str, str] = {}
        if missing:
            for rel in sorted(remote):
                if rel.startswith(f"{HASHES}/"):
                    recorded.update(self._get_json(self._remote_output(fingerprint, rel)) or {})
        for rel in missing:
            if rel not in recorded:
                get_file(self.fs, self._remote_output(fingerprint, rel), os.path.join(local, rel))
            files[rel] = recorded.get(rel) or file_sha256(os.path.join(local, rel))
        atomic_write_bytes(os.path.join(local, FILES), json.dumps(files, indent=0, sort_keys=True).encode())
        self._push(fingerprint)
        return content_hash_of(files)

    def _drop_scratch(self, fingerprint: str, remote: dict[str, int]) -> None:
        """At the node's end: the phase files the driver's folder no longer holds (the kind removed its
        ``_work/``, as it does locally) are deleted from the object store too; those it kept stay."""
        local = self.output_dir(fingerprint)
        gone = [
            rel for rel in sorted(remote) if _is_scratch(rel) and not os.path.exists(os.path.join(local, rel))
        ]
        if gone:
            paths = [self._remote_output(fingerprint, rel) for rel in gone]
            with_retries(f"DELETE {fingerprint}/_*", lambda: self.fs.rm(paths))
            for rel in gone:
                remote.pop(rel)
            folders = sorted({rel.split("/", 1)[0] for rel in gone} - set(os.listdir(local)))
            _forget_everywhere(self.url, fingerprint, folders)
        _SCRATCH.pop((self.url, fingerprint), None)

    def _push(self, fingerprint: str) -> None:
        """Upload the staged files of an output the object store lacks (or holds at another size), bookkeeping
        excepted (``write_manifest`` writes those, last)."""
        local = self.output_dir(fingerprint)
        remote = listing(self.fs, self._remote_output(fingerprint))
        for root, _dirs, names in os.walk(local):
            for name in sorted(names):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, local).replace(os.sep, "/")
                if not _is_output(rel):
                    continue
                if remote.get(rel) != os.path.getsize(path):
                    put_file(self.fs, path, self._remote_output(fingerprint, rel))

    def write_manifest(
        self, fingerprint: str, manifest: dict[str, Any], shards: list[dict[str, Any]]
    ) -> None:
        """``files.json`` and ``shards.json`` first, the manifest last, each a whole object; the staged copy gets
        the same files. Refused once the lock's lease is lost."""
        self.check_lease()
        super().write_manifest(fingerprint, manifest, shards)
        local = self.output_dir(fingerprint)
        for name in (FILES, SHARDS, MANIFEST):
            put_file(self.fs, os.path.join(local, name), self._remote_output(fingerprint, name))

    def discard_output(self, fingerprint: str) -> None:
        """The manifest goes first (a crash leaves the output incomplete), then every object, then the staging."""
        self._remove_remote(fingerprint)
        shutil.rmtree(self.output_dir(fingerprint), ignore_errors=True)

    def replace_output(self, fingerprint: str) -> None:
        """Swap the complete output ``<fingerprint>.new`` into ``fingerprint``, journaled (see the module doc)."""
        self.check_lease()
        if not self.has_output(fingerprint + NEW):
            raise FileNotFoundError(
                f"{self._remote_output(fingerprint + NEW)}: the replacement of {fingerprint} is not complete"
            )
        journal = {"fingerprint": fingerprint, "from": fingerprint + NEW}
        put_bytes(self.fs, self._remote(REPLACING, f"{fingerprint}.json"), json.dumps(journal).encode())
        self._finish_replacement(fingerprint)

    def recover_replacements(self) -> list[str]:
        """Finish the swaps a killed process left in the journal (called when a run or gc takes the lock)."""
        names = listing(self.fs, self._remote(REPLACING))
        done = [n[: -len(".json")] for n in sorted(names) if n.endswith(".json") and "/" not in n]
        for fp in done:
            self._finish_replacement(fp)
        return done

    def finish_replacement(self, fingerprint: str) -> bool:
        """Finish a swap of ``fingerprint`` cut short in this process (a failed copy, the node then retried),
        before the node computes: one HEAD of its journal. True when there was one."""
        journal = self._remote(REPLACING, f"{fingerprint}.json")
        self.fs.invalidate_cache(journal)
        if not with_retries(f"HEAD {journal}", lambda: self.fs.exists(journal)):
            return False
        self._finish_replacement(fingerprint)
        return True

    def _finish_replacement(self, fingerprint: str) -> None:
        """The swap's steps, each safe to redo: a journal whose ``.new`` has no manifest left is a swap that got as
        far as removing it, so only the rest of ``.new`` and the journal remain to go."""
        new = fingerprint + NEW
        src = listing(self.fs, self._remote_output(new))
        if MANIFEST in src:
            self.check_lease()
            old_files, new_files = self.files(fingerprint), self.files(new)
            self._delete([self._remote_output(fingerprint, MANIFEST)])
            dst = listing(self.fs, self._remote_output(fingerprint))
            self._delete([self._remote_output(fingerprint, rel) for rel in sorted(dst) if rel not in src])
            for rel in sorted(src):
                same = rel in new_files and old_files.get(rel) == new_files[rel] and dst.get(rel) == src[rel]
                if rel not in BOOKKEEPING and not same:
                    self._copy(self._remote_output(new, rel), self._remote_output(fingerprint, rel))
            for name in (FILES, SHARDS, MANIFEST):  # the manifest last: complete again, as the new output
                self._copy(self._remote_output(new, name), self._remote_output(fingerprint, name))
        # this machine's staged copy: the new one's files where they are, never the old output's
        cur, staged_new = self.output_dir(fingerprint), self.output_dir(new)
        shutil.rmtree(cur, ignore_errors=True)
        if os.path.isdir(staged_new):
            os.rename(staged_new, cur)
        self._remove_remote(new)
        self._delete([self._remote(REPLACING, f"{fingerprint}.json")])

    def _copy(self, src: str, dst: str) -> None:
        """A server-side copy of one whole object (atomic, as a PUT is); retried."""
        with_retries(f"COPY {src}", lambda: self.fs.cp_file(src, dst))

    def _delete(self, paths: list[str]) -> None:
        for path in paths:
            try:
                with_retries(f"DELETE {path}", lambda path=path: self.fs.rm_file(path))
            except FileNotFoundError:
                pass

    def _remove_remote(self, fingerprint: str) -> None:
        manifest = self._remote_output(fingerprint, MANIFEST)
        try:
            with_retries(f"DELETE {manifest}", lambda: self.fs.rm_file(manifest))
        except FileNotFoundError:
            pass
        objects = sorted(listing(self.fs, self._remote_output(fingerprint)))
        if objects:
            paths = [self._remote_output(fingerprint, rel) for rel in objects]
            with_retries(f"DELETE {fingerprint}", lambda: self.fs.rm(paths))

    # ---- refs and runs ---------------------------------------------------------------------------------------
    def _refs_remote(self, pipeline: str) -> str:
        return self._remote("refs", f"{pipeline}.json")

    def read_refs(self, pipeline: str) -> dict[str, dict[str, Any]]:
        return self._get_json(self._refs_remote(pipeline)) or {}

    def update_ref(self, pipeline: str, node_id: str, entry: dict[str, Any]) -> None:
        from flows.store import _same_entry

        with self._io_lock:
            refs = self.read_refs(pipeline)
            old = refs.get(node_id)
            if old is not None and _same_entry(old, entry):
                return
            self.check_lease()
            refs[node_id] = entry
            put_bytes(
                self.fs, self._refs_remote(pipeline), json.dumps(refs, indent=1, sort_keys=True).encode()
            )

    def all_refs(self) -> dict[str, dict[str, dict[str, Any]]]:
        names = listing(self.fs, self._remote("refs"))
        return {n[:-5]: self.read_refs(n[:-5]) for n in sorted(names) if n.endswith(".json") and "/" not in n}

    def publish_run(self, run_dir: str) -> None:
        """Upload a run's record (``runs/<id>/``: resolved config, selection, final states)."""
        rel_run = os.path.relpath(run_dir, self.root).replace(os.sep, "/")
        for name in sorted(os.listdir(run_dir)):
            put_file(self.fs, os.path.join(run_dir, name), self._remote(rel_run, name))

    # ---- lock ------------------------------------------------------------------------------------------------
    @contextmanager
    def lock(self, wait: bool = False, timeout_s: float = 3600.0) -> Iterator[None]:
        """The store's lock as a leased object (``flows/object_lock.py``); re-entrant within one process. The
        object store is checked first (reachable, credentials, bucket, format), before any node starts."""
        with _HELD_GUARD:
            nested = self.url in _HELD
            if nested:
                _HELD[self.url] += 1
        if nested:
            try:
                yield
            finally:
                with _HELD_GUARD:
                    _HELD[self.url] -= 1
            return
        self.check_reachable()
        held = ObjectLock(self.fs, self._remote("lock"), self.url)
        held.acquire(wait=wait, timeout_s=timeout_s)
        self._lock_obj = held
        _LIVE_LOCKS[self.url] = held
        with _HELD_GUARD:
            _HELD[self.url] = 1
        try:
            self._write_store_info()
            os.makedirs(self.root, exist_ok=True)
            self.recover_replacements()
            self.remove_stale_temporaries()
            yield
        finally:
            with _HELD_GUARD:
                _HELD.pop(self.url, None)
            _LIVE_LOCKS.pop(self.url, None)
            self._lock_obj = None
            held.release()

    def check_lease(self) -> None:
        """Raise when this process held the store's lock and lost its lease (nothing may be committed then)."""
        held = self._lock_obj or _LIVE_LOCKS.get(self.url)
        if held is not None:
            held.check()

    def check_reachable(self) -> None:
        """A clear error, before any node starts, when the object store cannot be used; within
        ``ARCFLOW_REMOTE_CHECK_S`` seconds in all (default 20), so an endpoint that accepts connections and never
        answers cannot hang the command (``data_pipes.io.remote``: time limits)."""
        from data_pipes.io.remote import access_hint, check_seconds, endpoint_of, within

        bucket = self.base.split("/", 1)[0]

        def probe() -> dict[str, Any]:
            self.fs.invalidate_cache(bucket)
            with_retries(f"LIST {bucket}", lambda: self.fs.ls(bucket), attempts=1)  # the client retried
            return self._get_json(self._remote(STORE_INFO)) or {}

        seconds = check_seconds()
        try:
            info = within(seconds, probe, f"the store {self.url}")
        except TimeoutError:
            raise StoreUnreachableError(
                f"the store {self.url} did not answer within {seconds:g} s (endpoint {endpoint_of(self.fs)}); "
                f"{access_hint(self.fs)} (ARCFLOW_REMOTE_CHECK_S=SECONDS waits longer)"
            ) from None
        except FileNotFoundError:
            raise StoreUnreachableError(
                f"the store {self.url}: the bucket {bucket!r} does not exist (or these credentials cannot see "
                f"it); create it, or fix `workdir:`"
            ) from None
        except PermissionError as exc:
            raise StoreUnreachableError(
                f"the store {self.url} refused these credentials ({exc}); check AWS_ACCESS_KEY_ID / "
                f"AWS_PROFILE (or the fsspec options of this protocol)"
            ) from None
        except StoreUnreachableError:
            raise
        except Exception as exc:  # noqa: BLE001 - each client library names a refused connection its own way
            if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                raise StoreUnreachableError(
                    f"the store {self.url}: no credentials were found ({exc}); set AWS_ACCESS_KEY_ID and "
                    f"AWS_SECRET_ACCESS_KEY, or AWS_PROFILE (or the fsspec options of this protocol)"
                ) from None
            raise StoreUnreachableError(
                f"the store {self.url} cannot be reached: {type(exc).__name__}: {exc} (endpoint "
                f"{endpoint_of(self.fs)}); {access_hint(self.fs)}"
            ) from None
        try:
            check_format(info if isinstance(info, dict) else {}, self.url)
        except StoreFormatError as exc:
            raise StoreUnreachableError(str(exc)) from None

    def check_format(self) -> None:
        """Before a command reads the store: ``check_reachable`` (reachable, credentials, bucket, format)."""
        self.check_reachable()

    def _write_store_info(self) -> None:
        path = self._remote(STORE_INFO)
        if self._get_json(path) is None:
            put_bytes(self.fs, path, json.dumps({"format": STORE_FORMAT, "arcflow": _version()}).encode())

    def remove_stale_temporaries(self) -> list[str]:
        """Temporary files of killed writers in the staging folder (the object store never holds any)."""
        if not os.path.isdir(self.root):
            return []
        return remove_stale_temporaries(self.root, keep_live=False)

    # ---- gc --------------------------------------------------------------------------------------------------
    def _fingerprints(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for rel, size in listing(self.fs, self._remote("outputs")).items():
            fp = rel.split("/", 1)[0]
            sizes[fp] = sizes.get(fp, 0) + size
        return sizes

    def garbage(self) -> list[tuple[str, int]]:
        sizes = self._fingerprints()
        keep = self.referenced()
        return [(fp, sizes[fp]) for fp in sorted(sizes) if fp not in keep]

    def collect(self, dry_run: bool = False) -> list[tuple[str, int]]:
        removed = self.garbage()
        if not dry_run:
            for fp, _size in removed:
                self.discard_output(fp)
        return removed


_LIVE_LOCKS: dict[str, ObjectLock] = {}  # store URL -> the lock this process holds on it
HASHES = "_hashes"  # per shard: {relative path: sha256} of the files its worker uploaded


def _is_output(rel: str) -> bool:
    """Whether a path of an output folder is covered by its content hash (as ``flows.store.output_files``)."""
    return TMP_MARK not in rel and rel not in BOOKKEEPING and not rel.split("/", 1)[0].startswith("_")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("arcflow")
    except Exception:  # noqa: BLE001 - an uninstalled checkout
        return "unknown"


@dataclass(frozen=True)
class _Upload:
    """What a worker uploads for shard ``index`` of an output: its files, then its marker."""

    url: str
    out_dir: str
    fingerprint: str

    def __call__(self, result: ShardResult) -> None:
        fs, base = filesystem(self.url)
        remote = f"{base}/outputs/{self.fingerprint}"
        tag = f"part-{result.index:05d}"
        files = []
        for root, dirs, names in os.walk(self.out_dir):
            if root == self.out_dir:
                dirs[:] = [d for d in dirs if not d.startswith("_")]
            files += [os.path.join(root, n) for n in names if n.startswith(tag) and TMP_MARK not in n]
        digests = {}
        for path in sorted(files):
            rel = os.path.relpath(path, self.out_dir).replace(os.sep, "/")
            put_file(fs, path, f"{remote}/{rel}")
            digests[rel] = file_sha256(path)
        # the files' sha256, so the driver computes the content hash without downloading them
        put_bytes(fs, f"{remote}/{HASHES}/{tag}.json", json.dumps(digests, sort_keys=True).encode())
        marker = marker_path(self.out_dir, result.index)
        put_file(fs, marker, f"{remote}/{MARKERS}/{os.path.basename(marker)}")


_STAGED: set[tuple[str, str]] = set()  # (store URL, input fingerprint) complete on this machine, per process

# ---- phase files shared between machines ---------------------------------------------------------------------
# A multi-phase kind (global dedup, SemDedup, pack, quality training...) passes files between its phases in the
# node's folder (``_work/`` and other top-level ``_`` folders). Each task uploads the files it wrote there when it
# ends, and a machine downloads the ones it lacks before its first task of the next phase.
_SCRATCH: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}  # (URL, key) -> rel -> (size, mtime) synced
_PHASES: set[tuple[str, str, str]] = set()  # (URL, key, phase token) whose phase files this process pulled
_SCRATCH_LOCK = threading.Lock()
_KNOWN_LOCK = threading.Lock()
REPORTS = "reports"  # the node's reports folder (``RunContext.add_report``)


class StagingMismatchError(RuntimeError):
    """A worker stages the store at another path than the driver: the node's paths would not exist there."""


class SharedFileError(RuntimeError):
    """A task could not find a file of the node's folder that the object store should have shared."""


def _is_scratch(rel: str) -> bool:
    """A phase file: under a top-level ``_`` folder of the node's folder, markers and recorded digests aside."""
    top, _, rest = rel.partition("/")
    return bool(rest) and top.startswith("_") and top not in (MARKERS, HASHES) and TMP_MARK not in rel


def _is_shared(rel: str) -> bool:
    """A file a task uploads when it ends: a phase file, or a file of the output that is no shard's (a shard's
    files go with ``_Upload``, its digests and marker last; bookkeeping goes with the manifest)."""
    if _is_scratch(rel):
        return True
    top = rel.split("/", 1)[0]
    return (
        TMP_MARK not in rel
        and rel not in BOOKKEEPING
        and not top.startswith("_")
        and top != REPORTS  # the driver's (``ctx.add_report``), uploaded when the node ends
        and not os.path.basename(rel).startswith("part-")
    )


def _shared_stats(out_dir: str) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every shared file of the node's local folder."""
    out: dict[str, tuple[int, int]] = {}
    for root, _dirs, names in os.walk(out_dir):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, out_dir).replace(os.sep, "/")
            if _is_shared(rel):
                try:
                    st = os.stat(path)
                except OSError:  # removed meanwhile (a temporary renamed, a folder dropped)
                    continue
                out[rel] = (st.st_size, st.st_mtime_ns)
    return out


def _scratch_stats(out_dir: str) -> dict[str, tuple[int, int]]:
    """``_shared_stats`` of the phase files only (the driver's own output files go with ``hash_output``)."""
    return {rel: stat for rel, stat in _shared_stats(out_dir).items() if _is_scratch(rel)}


def _note_synced(url: str, key: str, out_dir: str, rel: str) -> None:
    st = os.stat(os.path.join(out_dir, rel))
    _SCRATCH.setdefault((url, key), {})[rel] = (st.st_size, st.st_mtime_ns)


def _push_shared(
    url: str, key: str, out_dir: str, now: dict[str, tuple[int, int]], before: dict | None = None
) -> int:
    """Upload the shared files of ``now`` that are neither as they were ``before`` the task nor known to equal
    their object (downloaded or uploaded by this process); each one whole PUT. Returns how many."""
    fs, base = filesystem(url)
    known = _SCRATCH.setdefault((url, key), {})
    sent = 0
    for rel, stat in sorted(now.items()):
        with (
            _KNOWN_LOCK
        ):  # claimed first: a task of another thread that sees the file too leaves it to this one
            if known.get(rel) == stat or (before is not None and before.get(rel) == stat):
                continue
            known[rel] = stat
        try:
            put_file(fs, os.path.join(out_dir, rel), f"{base}/outputs/{key}/{rel}")
        except BaseException:
            with _KNOWN_LOCK:
                known.pop(rel, None)
            raise
        sent += 1
    return sent


def _pull_scratch(url: str, key: str, out_dir: str) -> int:
    """Download the node's phase files that this machine lacks or holds at another size (one listing); returns
    how many were downloaded."""
    fs, base = filesystem(url)
    remote = listing(fs, f"{base}/outputs/{key}")
    got = 0
    for rel, size in sorted(remote.items()):
        if not _is_scratch(rel):
            continue
        path = os.path.join(out_dir, rel)
        try:
            same = os.path.getsize(path) == size
        except OSError:
            same = False
        if not same:
            get_file(fs, f"{base}/outputs/{key}/{rel}", path)
            got += 1
        _note_synced(url, key, out_dir, rel)
    return got


def _forget_scratch(url: str, key: str, folders: list[str]) -> None:
    """On a worker, once the node is complete: its copies of the phase ``folders`` the driver removed go, as
    they went from the driver's folder and the object store (a kind's kept ``_work/`` stays everywhere)."""
    out_dir = os.path.join(staging_root(url), "outputs", key)
    for folder in folders:
        shutil.rmtree(os.path.join(out_dir, folder), ignore_errors=True)
    with _SCRATCH_LOCK:
        _SCRATCH.pop((url, key), None)
        for phase in [p for p in _PHASES if p[:2] == (url, key)]:
            _PHASES.discard(phase)


def _forget_everywhere(url: str, key: str, folders: list[str]) -> None:
    """``_forget_scratch`` on every worker of the Dask cluster this process runs (none running: nothing to do;
    a worker that cannot be reached keeps its copies, a cache it may delete at will)."""
    if not folders:
        return
    try:
        from distributed import default_client

        client = default_client()
    except Exception:  # noqa: BLE001 - no cluster in this process (ValueError), or dask missing
        return
    try:
        client.run(functools.partial(_forget_scratch, url, key, folders))
    except Exception as exc:  # noqa: BLE001 - a worker gone or closing: its staging folder is only a cache
        import logging

        logging.getLogger(__name__).warning(
            "could not drop the workers' copies of %s's phase files: %s", key, exc
        )


def _prepare(url: str, root: str, out_dir: str, key: str, inputs: tuple[str, ...], token: str) -> None:
    """A task's start on any machine: the same staging path as the driver's, the node's inputs staged here
    (once per process), the phase files of the earlier phases here (once per phase and process)."""
    here = staging_root(url)
    if here != root:
        raise StagingMismatchError(
            f"the worker on {socket.gethostname()} stages the store {url} at {here}, the driver at {root}: the "
            f"node's paths would not exist there. Give every host the same ARCFLOW_STAGING path (each host's "
            f"own disk; unset everywhere, it is ~/.cache/arcflow/stores, the same where the home path is)"
        )
    for fp in inputs:  # a worker on another machine reads the inputs from its own staging folder
        if (url, fp) not in _STAGED:
            ObjectStore(url).materialize(fp)
            _STAGED.add((url, fp))
    with _SCRATCH_LOCK:
        if (url, key, token) not in _PHASES:
            _pull_scratch(url, key, out_dir)
            _PHASES.add((url, key, token))


@contextmanager
def _missing_named(url: str, root: str, out_dir: str) -> Iterator[None]:
    """A file of the staging folder that a task cannot find: one clear error naming it, never a raw
    FileNotFoundError (a kind that writes where the object store does not share, a file deleted by hand)."""
    try:
        yield
    except FileNotFoundError as exc:
        name = str(exc.filename or "") or next((a for a in exc.args if isinstance(a, str) and root in a), "")
        if root not in name and root not in str(exc):
            raise
        raise SharedFileError(
            f"a task of the node at {out_dir} on {socket.gethostname()} could not find a file of the store "
            f"{url}'s staging folder ({exc}). The object store shares a node's phase files (top-level `_` "
            f"folders) and its output between machines; a file written elsewhere is not shared, or it was "
            f"deleted. Rerun the node; if it fails again, report it (naming the kind), or set ARCFLOW_STAGING to "
            f"a folder every host sees"
        ) from None


_CLIENT_LIBRARIES = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "adlfs", "google.auth", "azure")


class WorkerStoreAccessError(RuntimeError):
    """A task's machine cannot use the object store that the driver could (credentials, endpoint)."""


@contextmanager
def _access_named(url: str) -> Iterator[None]:
    """The object store refusing or unreachable from a task's machine (its own credentials and endpoint, which
    the driver's check at the start did not see): one error that says where and what that machine needs, not the
    client library's bare ``NoCredentialsError`` or ``EndpointConnectionError``."""
    try:
        yield
    except Exception as exc:
        if not (isinstance(exc, PermissionError) or type(exc).__module__.startswith(_CLIENT_LIBRARIES)):
            raise
        raise WorkerStoreAccessError(
            f"on {socket.gethostname()} (process {os.getpid()}) the store {url} failed: {type(exc).__name__}: "
            f"{exc}. Each machine that runs the workers needs the store's credentials and endpoint as the driver "
            f"has them (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and AWS_ENDPOINT_URL for a "
            f"store that is not AWS; the fsspec options of another protocol) in the environment of its `dask "
            f"worker`: the driver's own check passed, so they differ there"
        ) from None


def _run_phase(
    fn: Callable[..., Any],
    url: str,
    root: str,
    out_dir: str,
    key: str,
    inputs: tuple[str, ...],
    token: str,
    *args: Any,
    **kwargs: Any,
) -> Any:
    """One item of a ``ctx.map`` phase on any machine: prepared (``_prepare``), run, and what it wrote in the
    node's folder uploaded before it returns (so the next phase, on any machine, finds it)."""
    with _missing_named(url, root, out_dir):
        with _access_named(url):
            _prepare(url, root, out_dir, key, inputs, token)
        before = _shared_stats(out_dir)
        result = fn(*args, **kwargs)
    with _access_named(url):
        _push_shared(url, key, out_dir, _shared_stats(out_dir), before)
    return result


def _run_and_upload(
    fn: Callable[..., ShardResult],
    url: str,
    root: str,
    out_dir: str,
    fingerprint: str,
    inputs: tuple[str, ...],
    token: str,
    *args: Any,
    **kwargs: Any,
) -> ShardResult:
    with _missing_named(url, root, out_dir):
        with _access_named(url):
            _prepare(url, root, out_dir, fingerprint, inputs, token)
        before = _shared_stats(out_dir)
        result = fn(*args, **kwargs)
    with _access_named(url):
        _Upload(url, out_dir, fingerprint)(result)
        _push_shared(url, fingerprint, out_dir, _shared_stats(out_dir), before)
    return result


__all__ = ["ObjectStore", "StoreUnreachableError", "staging_root", "atomic_write_bytes"]
