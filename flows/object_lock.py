"""The store's lock on an object store: a conditional create, a lease renewed while the run lives, and an expiry.

The lock is the object ``<store>/lock``, a small JSON document naming its holder (host, pid, since), a random
token, the lease length and the time it expires (``expires_at``, the holder's wall clock, seconds since the epoch).

* **Take**: ``PUT lock`` with ``If-None-Match: *``: the server creates it only if no lock object exists, so of two
  runs that race exactly one gets it (S3 has supported this since 2024; moto's server and MinIO too).
* **Renew**: a thread rewrites it every ``lease_s / 3`` with ``If-Match: <its own ETag>``, pushing ``expires_at``
  on. A failed renewal (someone took the lock over) marks the lease lost; the store refuses to write manifests and
  refs from then on (``check``), so a run that lost its lock cannot publish anything.
* **Take over**: a lock past its expiry, or one whose holder is a dead process on this very machine (same host and
  boot id, the pid gone: a run killed with kill -9 here), is replaced with ``If-Match: <the ETag seen>``: of
  several runs that find the same stale lock, one wins.
* **Release**: ``DELETE lock`` with ``If-Match: <own ETag>``.

Limits (docs/OBJECT_STORE.md says more): the expiry compares the holder's clock with the taker's, so clocks must
agree to well within a lease (NTP does); a holder paused longer than its lease (a stopped VM, a debugger) loses the
lock and learns so only at its next renewal or commit; filesystems without conditional writes (most fsspec backends
other than S3) fall back to check-then-write, which two runs starting in the same instant can both pass.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from data_pipes.io.atomic import pid_alive
from data_pipes.io.remote import get_bytes, with_retries
from flows.errors import StoreLockedError

DEFAULT_LEASE_S = 60.0


def lease_seconds() -> float:
    """The lease length: ``ARCFLOW_LOCK_LEASE_S`` or 60 s."""
    try:
        return max(1.0, float(os.environ.get("ARCFLOW_LOCK_LEASE_S", DEFAULT_LEASE_S)))
    except ValueError:
        return DEFAULT_LEASE_S


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _precondition_failed(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc} {exc.__cause__!r}".lower()
    return isinstance(exc, FileExistsError) or "precondition" in text or "conditionalrequestconflict" in text


class ObjectLock:
    """An exclusive, leased lock held as the object ``path`` of ``fs`` (see the module doc)."""

    def __init__(self, fs: Any, path: str, url: str, lease_s: float | None = None) -> None:
        self.fs = fs
        self.path = path
        self.url = url
        self.lease_s = lease_s or lease_seconds()
        self.token = uuid.uuid4().hex
        self.etag: str | None = None
        self.lost: str | None = None  # why the lease was lost, once it is
        self._valid_until = 0.0  # when the lease runs out unless renewed (this machine's clock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._s3 = type(fs).__name__ == "S3FileSystem"
        self._since = time.strftime("%Y-%m-%d %H:%M:%S")

    # ---- the object -------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        return json.dumps(
            {
                "holder": f"arcflow pid {os.getpid()} on {socket.gethostname()} since {self._since}",
                "host": socket.gethostname(),
                "boot_id": _boot_id(),
                "pid": os.getpid(),
                "token": self.token,
                "lease_s": self.lease_s,
                "expires_at": time.time() + self.lease_s,
            },
            sort_keys=True,
        ).encode()

    def _bucket_key(self) -> tuple[str, str]:
        bucket, _, key = self.path.partition("/")
        return bucket, key

    def _put(self, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write the lock object conditionally; returns its new ETag (or the token where the filesystem has
        none). Raises ``FileExistsError`` when the condition fails."""
        body = self._body()
        if self._s3:
            bucket, key = self._bucket_key()
            cond: dict[str, str] = {"IfNoneMatch": "*"} if if_none_match else {}
            if if_match:
                cond["IfMatch"] = if_match
            try:
                out = with_retries(
                    "PUT lock",
                    lambda: self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, **cond),
                )
            except Exception as exc:
                if _precondition_failed(exc):
                    raise FileExistsError(self.path) from exc
                raise
            return str(out.get("ETag") or self.token)
        # fallback for filesystems without conditional writes: check, then write (racy; see the module doc)
        current = self._read()
        if if_none_match and current is not None:
            raise FileExistsError(self.path)
        if if_match and (current is None or current[1] != if_match):
            raise FileExistsError(self.path)
        with_retries("PUT lock", lambda: self.fs.pipe_file(self.path, body))
        return self.token

    def _read(self) -> tuple[dict[str, Any], str] | None:
        """``(content, ETag)`` of the lock object, or None when there is none."""
        try:
            if self._s3:
                bucket, key = self._bucket_key()
                out = with_retries("GET lock", lambda: self.fs.call_s3("get_object", Bucket=bucket, Key=key))
                data = _read_body(self.fs, out["Body"])
                etag = str(out.get("ETag"))
            else:
                data = get_bytes(self.fs, self.path)
                etag = ""
        except FileNotFoundError:
            return None
        try:
            content = json.loads(data)
        except ValueError:
            content = {"holder": "an unreadable lock object", "expires_at": 0}
        return content, etag or str(content.get("token", ""))

    # ---- taking and releasing ---------------------------------------------------------------------------------
    def acquire(self, wait: bool = False, timeout_s: float = 3600.0) -> None:
        """Take the lock, or raise ``StoreLockedError`` naming its holder (after ``timeout_s`` with ``wait``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.etag = self._put(if_none_match=True)
                break
            except FileExistsError:
                pass
            seen = self._read()
            if seen is None:
                continue  # released in between: try to create it again
            content, etag = seen
            if self._stale(content):
                try:
                    self.etag = self._put(if_match=etag)
                    break
                except FileExistsError:
                    continue  # another run took it over first
            if not wait or time.monotonic() > deadline:
                expires = time.strftime("%H:%M:%S", time.localtime(float(content.get("expires_at", 0))))
                raise StoreLockedError(
                    f"the store {self.url} is in use by {content.get('holder', 'another run')} (lease until "
                    f"{expires}); wait for it to finish, or pass --wait to queue behind it"
                )
            time.sleep(min(1.0, self.lease_s / 4))
        self._valid_until = time.time() + self.lease_s
        self._thread = threading.Thread(target=self._renew, name="arcflow-lock-lease", daemon=True)
        self._thread.start()

    @staticmethod
    def _stale(content: dict[str, Any]) -> bool:
        """Past its expiry, or held by a process of this machine (same host and boot) that is gone."""
        if time.time() > float(content.get("expires_at", 0)):
            return True
        same_machine = content.get("host") == socket.gethostname() and content.get("boot_id") == _boot_id()
        pid = content.get("pid")
        return same_machine and bool(_boot_id()) and isinstance(pid, int) and not pid_alive(pid)

    def _renew(self) -> None:
        while not self._stop.wait(self.lease_s / 3) and self.renew():
            pass

    def renew(self) -> bool:
        """Push the lease on (``If-Match`` its own ETag). Returns False once the lease is lost: taken over by
        another run, or not renewable before it ran out."""
        try:
            self.etag = self._put(if_match=self.etag)
        except FileExistsError:
            self.lost = "another run took the lock over (this run's lease had expired)"
            return False
        except Exception as exc:  # noqa: BLE001 - a failed renewal is retried at the next beat
            if time.time() > self._valid_until:
                self.lost = f"the lease could not be renewed before it expired ({exc})"
                return False
            return True
        self._valid_until = time.time() + self.lease_s
        return True

    def check(self) -> None:
        """Raise ``StoreLockedError`` when the lease was lost: nothing may be committed then."""
        if self.lost:
            raise StoreLockedError(f"the lock on the store {self.url} was lost: {self.lost}; run again")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.lost or self.etag is None:
            return
        try:
            if self._s3:
                bucket, key = self._bucket_key()
                try:
                    self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=self.etag)
                    return
                except Exception as exc:  # noqa: BLE001 - a server without conditional deletes
                    if _precondition_failed(exc):
                        return  # no longer ours
                seen = self._read()
                if seen is not None and seen[0].get("token") == self.token:
                    self.fs.rm_file(self.path)
            else:
                seen = self._read()
                if seen is not None and seen[0].get("token") == self.token:
                    self.fs.rm_file(self.path)
        except Exception:  # noqa: BLE001 - a lock left behind expires with its lease
            pass


def _read_body(fs: Any, body: Any) -> bytes:
    """The bytes of an aiobotocore streaming body, read on s3fs's event loop."""
    from fsspec.asyn import sync

    async def read() -> bytes:
        try:
            return await body.read()
        finally:
            body.close()

    return sync(fs.loop, read)
