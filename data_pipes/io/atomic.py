"""Atomic file writes: one helper, one durability policy, used for every file a node or the store writes.

The policy: the bytes go to a temporary file beside the target (``<name>.tmp-<pid>-<random>``), are flushed and
fsynced, the file is renamed over the target, and the folder is fsynced so the rename itself is on disk. A reader
therefore sees the old file or the whole new one, and a process killed at any point leaves at worst a temporary file,
which ``remove_stale_temporaries`` deletes once its writer (the pid in its name) is gone.

``atomic_path`` serves writers that insist on writing a path themselves (``np.save``, fastText, HF ``save``):
they write the temporary path it yields, and the same fsync and rename happen when the block ends without error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

TMP_MARK = ".tmp-"
_TMP_PID = re.compile(r"\.tmp-(\d+)")


def temporary_name(path: str, suffix: str = "") -> str:
    """A fresh temporary name beside ``path``: ``<path>.tmp-<pid>-<random><suffix>``. ``suffix`` keeps an
    extension that a writer appends on its own (``np.save`` adds ``.npy``)."""
    return f"{path}{TMP_MARK}{os.getpid()}-{os.urandom(4).hex()}{suffix}"


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return  # a folder that cannot be opened (some network filesystems): the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(tmp: str, path: str) -> None:
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically and durably (creating its folder)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        _commit(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """``atomic_write_bytes`` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_path(path: str, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path to write ``path`` through; on success it is fsynced and renamed to ``path``.
    ``suffix`` is what the writer appends to the name it is given (``.npy`` for ``np.save``)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    base = temporary_name(path)
    try:
        yield base
        _commit(base + suffix, path)
    except BaseException:
        _remove_quietly(base)
        _remove_quietly(base + suffix)
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def temporary_pid(name: str) -> int | None:
    """The pid in a temporary file's name, or None when the name is not one of ours."""
    m = _TMP_PID.search(name)
    return int(m.group(1)) if m else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def remove_stale_temporaries(folder: str, keep_live: bool = True) -> list[str]:
    """Delete the temporary files under ``folder`` that a killed writer left; returns their paths. With
    ``keep_live`` a file whose writer (the pid in its name) still runs is kept: it may be mid-write."""
    removed = []
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if TMP_MARK not in name:
                continue
            pid = temporary_pid(name)
            if keep_live and pid is not None and pid_alive(pid):
                continue
            path = os.path.join(root, name)
            try:
                os.remove(path)
            except FileNotFoundError:
                continue
            removed.append(path)
    return sorted(removed)
