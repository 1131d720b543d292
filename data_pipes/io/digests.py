"""Content digests of input files for fingerprints: sha256 of the bytes, never a path or an mtime.

A source's or a model's fingerprint must change when its bytes change and only then: not when the same data sits in
another folder, is copied (new mtimes) or is read by another process. Hashing every byte on every ``plan`` would be
slow for large inputs, so digests are kept in a small on-disk index keyed by path, size, mtime and inode (the
stat only decides when to hash again; it never enters a fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading

from data_pipes.io.atomic import atomic_write_text
from data_pipes.io.remote import is_url, url_digest

_CHUNK = 1 << 20
_lock = threading.Lock()
_index: dict[str, tuple[int, int, int, str]] | None = None  # path -> (size, mtime_ns, inode, sha256)
_dirty = False


def _index_path() -> str:
    base = os.environ.get("ARCFLOW_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "arcflow")
    return os.path.join(base, "file_digests.json")


def _load() -> dict[str, tuple[int, int, int, str]]:
    global _index
    if _index is None:
        _index = {}
        try:
            with open(_index_path(), encoding="utf-8") as fh:
                for path, entry in json.load(fh).items():
                    _index[path] = tuple(entry)  # type: ignore[assignment]
        except (OSError, ValueError, TypeError):
            pass
    return _index


def _save() -> None:
    global _dirty
    if not _dirty or _index is None:
        return
    try:
        live = {p: list(v) for p, v in _index.items() if os.path.exists(p)}
        atomic_write_text(_index_path(), json.dumps(live))
        _dirty = False
    except OSError:
        pass  # no writable cache: the next process hashes again


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_digests(paths: list[str]) -> list[str]:
    """sha256 of each file's bytes (``unreadable: <reason>`` for a file that cannot be read), reusing the
    index for files whose size, mtime and inode are unchanged."""
    global _dirty
    out = []
    with _lock:
        index = _load()
        for path in paths:
            if is_url(path):  # an object in an object store: its content tag (see url_digest)
                try:
                    out.append(url_digest(path))
                except OSError as exc:
                    out.append(f"unreadable: {exc.strerror or type(exc).__name__}")
                continue
            try:
                st = os.stat(path)
                key = (st.st_size, st.st_mtime_ns, st.st_ino)
                cached = index.get(path)
                if cached is not None and tuple(cached[:3]) == key:
                    out.append(cached[3])
                    continue
                digest = _sha256(path)
            except OSError as exc:
                out.append(f"unreadable: {exc.strerror or type(exc).__name__}")
                continue
            index[path] = (*key, digest)
            _dirty = True
            out.append(digest)
        _save()
    return out


def file_digest(path: str) -> str:
    """``file_digests([path])[0]``."""
    return file_digests([path])[0]
