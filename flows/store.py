"""The node store: every node output under its fingerprint, with a manifest; refs; a lock; garbage collection.

Layout of the work directory::

    outputs/<fingerprint>/part-00000.parquet ...   kept rows (or other files for non-document outputs)
    outputs/<fingerprint>/excluded/ quarantine/    dropped rows with `reason`, quarantined rows with `error`
    outputs/<fingerprint>/_markers/part-*.json     one per finished shard (resume is per shard)
    outputs/<fingerprint>/_work/ _teacher/ ...     scratch of a kind (any top-level name starting with "_")
    outputs/<fingerprint>/shards.json              per-shard files, counts and content hashes
    outputs/<fingerprint>/files.json               sha256 of every output file (what the content hash covers)
    outputs/<fingerprint>/manifest.json            written last: the output is complete when it exists
    outputs/<fingerprint>.new/                     a forced rerun of a stored output, computed beside it
    refs/<pipeline>.json                           node id -> fingerprint and its parts, of the last good run
    runs/<run id>/pipeline.yaml                    the resolved config of each run
    lock                                           held by a running `arcflow run` or `gc`
    store.json                                     the layout's format and the arcflow that wrote it (store_format)

The **content hash** of an output covers every byte the node outputs: every file under its folder (kept, excluded and
quarantined shards, WARC files, tokenizer and model folders, checkpoints, report data...), each by its relative
path and sha256, except the bookkeeping files above (manifest, shards.json, files.json), the scratch folders whose
top-level name starts with ``_`` (markers, caches, intermediate work) and temporary files. It is computed the same
way for every kind, so a kind that writes a new sort of file needs nothing to have it covered.

A **forced rerun** of a stored output (``arcflow run --node X``, ``--force``) computes into
``outputs/<fingerprint>.new/`` while the old output stays where it is, complete and named by its ref; only once the
new one has its manifest does ``replace_output`` swap it in (two renames: the old folder to ``<fingerprint>.old``, the
new one into place, then the old one is removed). A rerun that fails leaves the old output as it was; the engine
removes its unfinished ``.new`` folder (a kind that resumes when forced, training, keeps it: the next forced rerun
resumes there), and gc removes any that is left (a killed rerun's). Taking the lock finishes a swap a killed process
left half done (``recover_replacements``). The swap leaves a moment (between the renames) when a reader without the
lock finds no output; never a mix of old and new called complete.

Taking the lock also removes the temporary files (``*.tmp-<pid>...``) that killed writers left in unfinished
outputs, so they do not linger in a folder whose node never runs again.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from data_pipes.io.atomic import TMP_MARK, atomic_write_bytes, remove_stale_temporaries
from data_pipes.io.remote import is_url, local_path
from flows.errors import StoreLockedError

MANIFEST = "manifest.json"
SHARDS = "shards.json"
FILES = "files.json"
BOOKKEEPING = frozenset({MANIFEST, SHARDS, FILES})
NEW = ".new"  # outputs/<fingerprint>.new: a forced rerun of a stored output, until it replaces it
OLD = ".old"  # outputs/<fingerprint>.old: the replaced output, for the moment of the swap
CONTENT_HASH_VERSION = "content-v2"
_HASH_CHUNK = 1 << 20
_HELD: dict[str, int] = {}  # store roots whose lock this process holds -> nesting depth
_HELD_GUARD = threading.Lock()


def output_files(out_dir: str) -> list[str]:
    """The files a node output (relative paths with ``/``, sorted): everything under ``out_dir`` except the
    bookkeeping files, top-level scratch folders (names starting with ``_``) and temporary files."""
    found = []
    for root, dirs, files in os.walk(out_dir):
        rel_root = os.path.relpath(root, out_dir)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if not d.startswith("_")]
        for name in files:
            if TMP_MARK in name or (rel_root == "." and (name in BOOKKEEPING or name.startswith("_"))):
                continue
            rel = name if rel_root == "." else os.path.join(rel_root, name)
            found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def hash_files(out_dir: str) -> dict[str, str]:
    """``{relative path: sha256}`` of every output file of ``out_dir`` (hashed on a few threads: hashlib
    releases the GIL, so large outputs hash at disk speed)."""
    files = output_files(out_dir)
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(files)))) as pool:
        digests = list(pool.map(lambda rel: file_sha256(os.path.join(out_dir, rel)), files))
    return dict(zip(files, digests, strict=True))


def content_hash_of(files: dict[str, str]) -> str:
    """The content hash of an output from its ``{relative path: sha256}`` listing."""
    h = hashlib.sha256(CONTENT_HASH_VERSION.encode() + b"\0")
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\0".encode())
    return h.hexdigest()


@dataclass
class Store:
    """The store in a local folder. ``Store("s3://bucket/prefix")`` (any remote fsspec URL) gives the object-store
    version, ``flows.store_remote.ObjectStore``, with the same methods."""

    root: str

    def __new__(cls, root: str = "", *args: Any, **kwargs: Any) -> Store:
        if cls is Store and is_url(root):
            from flows.store_remote import ObjectStore

            return super().__new__(ObjectStore)
        return super().__new__(cls)

    def __post_init__(self) -> None:
        self.root = os.path.abspath(local_path(self.root))

    @property
    def location(self) -> str:
        """Where the store is, as the user named it (a folder, or the object store's URL)."""
        return self.root

    # ---- hooks the object store fills in (flows/store_remote.py); a local store needs none ---------------------
    def stage_output(self, fingerprint: str) -> None:
        """Before a node computes ``fingerprint``: make its unfinished shards visible here (local: they are)."""

    def materialize(self, fingerprint: str) -> str:
        """The local folder of a finished output, for a node that reads it as an input."""
        return self.output_dir(fingerprint)

    def shard_runner(
        self, fn: Callable[..., Any], out_dir: str, fingerprint: str, inputs: list[str] | None = None
    ) -> Callable[..., Any]:
        """The shard function a worker runs (the object store wraps it to upload the finished shard)."""
        return fn

    def phase_runner(
        self, fn: Callable[..., Any], out_dir: str, fingerprint: str, inputs: list[str] | None = None
    ) -> Callable[..., Any]:
        """The function a worker runs for one item of ``ctx.map`` (the object store wraps it to share the node's
        phase files between machines); local: ``fn`` itself."""
        return fn

    def pull_scratch(self, fingerprint: str) -> None:
        """After a phase ran on the cluster: the phase files its tasks wrote, here (local: they are)."""

    def publish_run(self, run_dir: str) -> None:
        """Make a run's record (``runs/<id>/``) durable in the store (local: it is written in place)."""

    def check_lease(self) -> None:
        """Raise when this process's lock on the store was lost (a local lock cannot be)."""

    def check_format(self) -> None:
        """Refuse a store written by a newer arcflow (``store.json``, ``flows/store_format.py``), before anything
        reads it; a store without the marker (made before it existed) reads as this arcflow's format."""
        from flows.store_format import STORE_INFO, StoreFormatError, check_format

        path = os.path.join(self.root, STORE_INFO)
        try:
            with open(path, "rb") as fh:
                info = json.loads(fh.read())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise StoreFormatError(
                f"the store {self.root}: {path} cannot be read ({exc}); restore it from the machine that wrote "
                f"the store, or delete it if this arcflow wrote the store"
            ) from None
        check_format(info if isinstance(info, dict) else {}, self.root)

    def _write_store_info(self) -> None:
        """The marker, where there is none yet (a new store, or one made before it existed)."""
        from flows.store_format import STORE_INFO, store_info

        path = os.path.join(self.root, STORE_INFO)
        if not os.path.exists(path):
            atomic_write_bytes(path, store_info())

    # ---- outputs ---------------------------------------------------------------------------------------------
    def output_dir(self, fingerprint: str) -> str:
        return os.path.join(self.root, "outputs", fingerprint)

    def manifest(self, fingerprint: str) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self.output_dir(fingerprint), MANIFEST), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return None

    def has_output(self, fingerprint: str) -> bool:
        return os.path.exists(os.path.join(self.output_dir(fingerprint), MANIFEST))

    def shards(self, fingerprint: str) -> list[dict[str, Any]]:
        """Per-shard entries (file, counts, content hash) of a complete output, in shard order."""
        with open(os.path.join(self.output_dir(fingerprint), SHARDS), "rb") as fh:
            return json.loads(fh.read())

    def hash_output(self, fingerprint: str) -> str:
        """The content hash of the (finished, not yet manifested) output ``fingerprint``: every output file by
        relative path and sha256 (see the module doc). The per-file listing is kept in ``files.json``."""
        out = self.output_dir(fingerprint)
        files = hash_files(out)
        atomic_write_bytes(os.path.join(out, FILES), json.dumps(files, indent=0, sort_keys=True).encode())
        return content_hash_of(files)

    def files(self, fingerprint: str) -> dict[str, str]:
        """``{relative path: sha256}`` of a finished output's files, as recorded when it was hashed."""
        try:
            with open(os.path.join(self.output_dir(fingerprint), FILES), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return {}

    def write_manifest(
        self, fingerprint: str, manifest: dict[str, Any], shards: list[dict[str, Any]]
    ) -> None:
        """The shard list first, the manifest last: an output is complete exactly when its manifest exists.
        The manifest stays small (no per-shard list) so planning a pipeline of huge nodes stays fast."""
        out = self.output_dir(fingerprint)
        atomic_write_bytes(os.path.join(out, SHARDS), json.dumps(shards, separators=(",", ":")).encode())
        atomic_write_bytes(
            os.path.join(out, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True).encode()
        )

    def discard_output(self, fingerprint: str) -> None:
        """Forget an output (an unfinished one that a forced run starts over, a replacement that failed, gc): the
        manifest goes first, so a crash leaves it incomplete."""
        path = self.output_dir(fingerprint)
        if os.path.exists(os.path.join(path, MANIFEST)):
            os.remove(os.path.join(path, MANIFEST))
        shutil.rmtree(path, ignore_errors=True)

    # ---- forced reruns: the new output beside the old one, swapped in once complete ---------------------------
    @staticmethod
    def replacement(fingerprint: str) -> str:
        """The key (folder name under ``outputs/``) a forced rerun of the stored output ``fingerprint`` computes
        into; ``output_dir``, ``hash_output``, ``write_manifest`` and ``discard_output`` take it as they take a
        fingerprint."""
        return fingerprint + NEW

    def replace_output(self, fingerprint: str) -> None:
        """Put the complete output ``<fingerprint>.new`` in the place of ``fingerprint``. Until the first rename the
        old output is whole and the new one complete beside it; a crash between the renames leaves
        ``<fingerprint>.old`` (whole) and the new one (complete), which ``recover_replacements`` finishes."""
        self.check_lease()
        new, cur, old = (self.output_dir(fingerprint + x) for x in (NEW, "", OLD))
        if not os.path.exists(os.path.join(new, MANIFEST)):
            raise FileNotFoundError(f"{new}: the replacement of {fingerprint} is not complete")
        self._recover(fingerprint)  # an earlier swap's leftover .old
        if os.path.exists(cur):
            os.rename(cur, old)
        os.rename(new, cur)
        shutil.rmtree(old, ignore_errors=True)

    def recover_replacements(self) -> list[str]:
        """Finish the swaps a killed process left half done (called when a run or gc takes the lock): where
        ``<fp>.old`` is left, ``<fp>`` becomes the complete new output if there is one, else the old one again.
        Returns the fingerprints recovered."""
        outputs = os.path.join(self.root, "outputs")
        names = os.listdir(outputs) if os.path.isdir(outputs) else []
        done = [n[: -len(OLD)] for n in sorted(names) if n.endswith(OLD)]
        for fp in done:
            self._recover(fp)
        return done

    def finish_replacement(self, fingerprint: str) -> bool:
        """Finish a swap of ``fingerprint`` cut short, if there is one (before a node computes it: a swap that
        failed in this process, e.g. a node retried after an error between the renames). True when one was."""
        return self._recover(fingerprint)

    def _recover(self, fingerprint: str) -> bool:
        new, cur, old = (self.output_dir(fingerprint + x) for x in (NEW, "", OLD))
        if not os.path.exists(old):
            return False
        if not os.path.exists(os.path.join(cur, MANIFEST)):
            shutil.rmtree(cur, ignore_errors=True)
            os.rename(new if os.path.exists(os.path.join(new, MANIFEST)) else old, cur)
        shutil.rmtree(old, ignore_errors=True)
        return True

    def missing_files(self, fingerprint: str, rels: list[str]) -> list[str]:
        """The files of ``rels`` (relative paths) that the stored output ``fingerprint`` lacks, each as a path a
        user can look for (here: the local path)."""
        out = self.output_dir(fingerprint)
        paths = [os.path.join(out, rel) for rel in rels]
        return [p for p in paths if not os.path.exists(p)]

    # ---- refs: the last good fingerprint of each node, per pipeline -----------------------------------------
    def _refs_path(self, pipeline: str) -> str:
        return os.path.join(self.root, "refs", f"{pipeline}.json")

    def read_refs(self, pipeline: str) -> dict[str, dict[str, Any]]:
        try:
            with open(self._refs_path(pipeline), "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            return {}

    def update_ref(self, pipeline: str, node_id: str, entry: dict[str, Any]) -> None:
        """Record ``entry`` for ``node_id``. Only called under the store lock, so read-modify-write is safe."""
        refs = self.read_refs(pipeline)
        old = refs.get(node_id)
        if old is not None and _same_entry(old, entry):
            return  # a reused node: nothing new to record
        refs[node_id] = entry
        atomic_write_bytes(self._refs_path(pipeline), json.dumps(refs, indent=1, sort_keys=True).encode())

    def all_refs(self) -> dict[str, dict[str, dict[str, Any]]]:
        out = {}
        refs_dir = os.path.join(self.root, "refs")
        if os.path.isdir(refs_dir):
            for name in sorted(os.listdir(refs_dir)):
                if name.endswith(".json"):
                    out[name[:-5]] = self.read_refs(name[:-5])
        return out

    # ---- runs ------------------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> str:
        path = os.path.join(self.root, "runs", run_id)
        os.makedirs(path, exist_ok=True)
        return path

    # ---- lock ------------------------------------------------------------------------------------------------
    def run_in_progress(self) -> str | None:
        """Who holds the store's lock now (``arcflow pid N since ...``), read from the lock file without taking
        the lock (a status query must never make a starting run fail on it); None when no live process holds it
        (a run killed with -9 leaves its line, with a pid that is gone)."""
        from data_pipes.io.atomic import pid_alive

        try:
            with open(os.path.join(self.root, "lock"), encoding="utf-8") as fh:
                line = fh.readline().strip()
        except OSError:
            return None
        parts = line.split()
        if len(parts) < 3 or parts[:2] != ["arcflow", "pid"] or not parts[2].isdigit():
            return None
        return line if pid_alive(int(parts[2])) else None

    @contextmanager
    def lock(self, wait: bool = False, timeout_s: float = 3600.0) -> Iterator[None]:
        """An exclusive lock on the store for a run or gc. Without ``wait``, fail at once naming the holder.
        Re-entrant within one process: the CLI takes it before Prefect starts, and the flow it then runs in
        the same process takes it again without blocking on itself."""
        with _HELD_GUARD:
            if self.root in _HELD:
                _HELD[self.root] += 1
                nested = True
            else:
                nested = False
        if nested:
            try:
                yield
            finally:
                with _HELD_GUARD:
                    _HELD[self.root] -= 1
            return
        self.check_format()  # a newer arcflow's store: refused before anything is written into it
        os.makedirs(self.root, exist_ok=True)
        path = os.path.join(self.root, "lock")
        fh = open(path, "a+")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if not wait or time.monotonic() > deadline:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    fh.close()
                    raise StoreLockedError(
                        f"the store {self.root} is in use by {holder}; wait for it to finish, "
                        f"or pass --wait to queue behind it"
                    ) from None
                time.sleep(0.5)
        fh.seek(0)
        fh.truncate()
        fh.write(f"arcflow pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        fh.flush()
        with _HELD_GUARD:
            _HELD[self.root] = 1
        try:
            self._write_store_info()
            self.recover_replacements()
            self.remove_stale_temporaries()
            yield
        finally:
            with _HELD_GUARD:
                _HELD.pop(self.root, None)
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()

    def remove_stale_temporaries(self) -> list[str]:
        """Delete the temporary files killed writers left in unfinished outputs and in ``refs/``. Called when a run
        or gc takes the lock: no other run can be writing then, so every temporary file is a leftover (even one
        whose pid a new process has since taken). Finished outputs (with a manifest) hold none, so only unfinished
        folders are walked. Returns the removed paths."""
        removed: list[str] = []
        outputs = os.path.join(self.root, "outputs")
        if os.path.isdir(outputs):
            for fp in sorted(os.listdir(outputs)):
                folder = os.path.join(outputs, fp)
                if os.path.isdir(folder) and not os.path.exists(os.path.join(folder, MANIFEST)):
                    removed += remove_stale_temporaries(folder, keep_live=False)
        refs = os.path.join(self.root, "refs")
        if os.path.isdir(refs):
            removed += remove_stale_temporaries(refs, keep_live=False)
        return removed

    # ---- gc --------------------------------------------------------------------------------------------------
    def referenced(self) -> set[str]:
        """Fingerprints reachable from any pipeline's refs, following each manifest's inputs."""
        keep: set[str] = set()
        todo = [e["fingerprint"] for refs in self.all_refs().values() for e in refs.values()]
        while todo:
            fp = todo.pop()
            if fp in keep:
                continue
            keep.add(fp)
            manifest = self.manifest(fp)
            if manifest:
                todo.extend(i["fingerprint"] for i in manifest.get("inputs", []) if i.get("fingerprint"))
        return keep

    def garbage(self) -> list[tuple[str, int]]:
        outputs = os.path.join(self.root, "outputs")
        if not os.path.isdir(outputs):
            return []
        keep = self.referenced()
        out = []
        for fp in sorted(os.listdir(outputs)):
            if fp not in keep:
                out.append((fp, _du(os.path.join(outputs, fp))))
        return out

    def collect(self, dry_run: bool = False) -> list[tuple[str, int]]:
        removed = self.garbage()
        if not dry_run:
            for fp, _size in removed:
                shutil.rmtree(self.output_dir(fp), ignore_errors=True)
        return removed


def _same_entry(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def canon(d: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in d.items() if k != "updated_at"}, sort_keys=True, default=str)

    return canon(a) == canon(b)


def _du(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total
