"""Temporary files that a killed run left in the store are removed when the next run (or gc) takes the lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from flows.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _killed_writer(target: Path) -> int:
    """A real process that starts atomic writes of ``target`` and is SIGKILLed before the rename; its pid."""
    script = (
        "import os, signal, sys\n"
        "from data_pipes.io.atomic import temporary_name\n"
        "for path in sys.argv[1:]:\n"
        "    os.makedirs(os.path.dirname(path), exist_ok=True)\n"
        "    with open(temporary_name(path), 'wb') as fh:\n"
        "        fh.write(b'half a file')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(target)], cwd=ROOT)
    assert proc.wait() == -signal.SIGKILL
    return proc.pid


def test_next_run_removes_a_killed_runs_temporaries(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "store"))
    unfinished = Path(store.output_dir("a" * 64))
    finished = Path(store.output_dir("b" * 64))
    # a node killed mid-shard: its folder has no manifest, and that fingerprint may never run again
    for target in (
        unfinished / "part-00003.parquet",
        unfinished / "excluded" / "part-00003.parquet",
        unfinished / "warc" / "part-00003.warc.gz",
        unfinished / "_work" / "emb-00003.npy",
        tmp_path / "store" / "refs" / "arcflow-demo.json",
    ):
        _killed_writer(target)
    (unfinished / "part-00000.parquet").write_bytes(b"a finished shard")
    finished.mkdir(parents=True)
    (finished / "manifest.json").write_text("{}")
    (finished / "part-00000.parquet").write_bytes(b"complete output")
    # a pid that a live process has taken since: under the lock no run writes, so it is a leftover all the same
    reused = unfinished / f"part-00004.parquet.tmp-{os.getpid()}-0a0b"
    reused.write_bytes(b"left by a killed run whose pid was reused")
    assert len(list(tmp_path.rglob("*.tmp-*"))) == 6
    with store.lock():
        assert not any(".tmp-" in p.name for p in tmp_path.rglob("*"))
    assert (unfinished / "part-00000.parquet").read_bytes() == b"a finished shard"
    assert (finished / "part-00000.parquet").read_bytes() == b"complete output"
    assert os.path.isdir(unfinished / "_work")
