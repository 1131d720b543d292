"""The one atomic-write helper: whole files or none, fsynced file and folder, and every writer of the store uses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from data_pipes.io import atomic
from data_pipes.io.atomic import (
    atomic_path,
    atomic_write_bytes,
    pid_alive,
    remove_stale_temporaries,
    temporary_name,
    temporary_pid,
)


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths (files and folders) that were fsynced, in order."""
    seen: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", spy)
    return seen


def _synced(seen: list[str], target: Path) -> bool:
    """The data was fsynced under its temporary name, then the folder holding ``target``."""
    tmp = [i for i, p in enumerate(seen) if p.startswith(str(target) + ".tmp-")]
    folder = [i for i, p in enumerate(seen) if p == str(target.parent)]
    return bool(tmp) and bool(folder) and min(tmp) < max(folder)


def test_write_replaces_whole_file_and_syncs(tmp_path: Path, fsynced: list[str]) -> None:
    target = tmp_path / "a" / "b" / "data.bin"
    atomic_write_bytes(str(target), b"first")
    atomic_write_bytes(str(target), b"second")
    assert target.read_bytes() == b"second"
    assert _synced(fsynced, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["data.bin"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"), atomic_path(str(target)) as tmp:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin"]


def test_atomic_path_with_a_writer_that_appends_a_suffix(tmp_path: Path, fsynced: list[str]) -> None:
    import numpy as np

    target = tmp_path / "emb.npy"
    with atomic_path(str(target), suffix=".npy") as tmp:
        np.save(tmp, np.arange(4))  # writes tmp + ".npy"
    assert np.load(target).tolist() == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy"]
    assert fsynced[-1] == str(tmp_path)


def test_temporary_names_carry_the_writer_pid() -> None:
    name = temporary_name("/x/part-00000.parquet")
    assert temporary_pid(os.path.basename(name)) == os.getpid()
    assert temporary_name("/x/a") != temporary_name("/x/a")  # two threads of one process never collide
    assert temporary_pid("part-00000.parquet") is None


def test_every_store_writer_goes_through_the_helper(tmp_path: Path, fsynced: list[str]) -> None:
    """Shards and markers, WARC files, manifests, shard lists and refs: all fsynced and renamed the same way."""
    from data_pipes.io.shards import marker_path, write_shard
    from data_pipes.io.warc_writer import WarcPage, write_warc
    from flows.store import Store

    out = tmp_path / "out"
    write_shard(
        str(out),
        0,
        pl.DataFrame({"id": ["a"]}),
        rows_in=2,
        dropped=pl.DataFrame({"id": ["b"], "reason": ["r"]}),
    )
    write_warc(str(out / "warc" / "part-00000.warc.gz"), [WarcPage("a", "https://e.org/", "<p>x</p>")])
    store = Store(str(tmp_path / "store"))
    store.write_manifest("f" * 64, {"content_hash": "c"}, [{"index": 0}])
    store.update_ref("p", "n", {"fingerprint": "f" * 64, "content_hash": "c"})
    targets = [
        out / "part-00000.parquet",
        out / "excluded" / "part-00000.parquet",
        Path(marker_path(str(out), 0)),
        out / "warc" / "part-00000.warc.gz",
        Path(store.output_dir("f" * 64)) / "shards.json",
        Path(store.output_dir("f" * 64)) / "manifest.json",
        tmp_path / "store" / "refs" / "p.json",
    ]
    for target in targets:
        assert target.exists() and _synced(fsynced, target), target


def _killed_writer(path: Path) -> int:
    """A real process that starts an atomic write of ``path`` and is killed (SIGKILL) before the rename."""
    script = (
        "import os, signal, sys\n"
        "from data_pipes.io.atomic import temporary_name\n"
        "with open(temporary_name(sys.argv[1]), 'wb') as fh:\n"
        "    fh.write(b'half a shard')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], cwd=Path(__file__).resolve().parents[3]
    )
    assert proc.wait() == -signal.SIGKILL
    return proc.pid


def test_stale_temporaries_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead = _killed_writer(tmp_path / "part-00000.parquet")
    assert not pid_alive(dead)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / "sub" / f"part-00001.parquet.tmp-{sleeper.pid}-ab"
        live.parent.mkdir()
        live.write_bytes(b"being written")
        removed = remove_stale_temporaries(str(tmp_path))
        assert len(removed) == 1
        assert os.path.basename(removed[0]).startswith(f"part-00000.parquet.tmp-{dead}-")
        assert live.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert [Path(p) for p in remove_stale_temporaries(str(tmp_path))] == [live]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


def test_json_of_a_marker_is_whole_after_a_kill(tmp_path: Path) -> None:
    """A writer killed mid-write never leaves a torn file under the final name."""
    target = tmp_path / "_markers" / "part-00000.json"
    target.parent.mkdir()
    target.write_text(json.dumps({"index": 0}))
    _killed_writer(target)
    assert json.loads(target.read_text()) == {"index": 0}
