"""Input folders holding what cannot be read as a file: a dangling symlink, a symlink loop (a pair, and a link
back to a parent folder), a FIFO and a folder nobody may list. Each one ends as a quarantined row with its error,
counted in the node's accounting; nothing crashes, hangs or goes missing, and `validate` agrees with the run.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yaml

import data_pipes.io.paths as paths_module
from data_pipes.io.paths import expand_paths, scan_paths
from flows.engine import Engine
from flows.store import Store
from flows.validate import load_pipeline


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "locked").mkdir()
    (data / "good.txt").write_text("a good document\n")
    (data / "sub" / "inner.txt").write_text("another good one\n")
    (data / "locked" / "hidden.txt").write_text("behind a folder nobody may list\n")
    os.symlink("nowhere.txt", data / "dangling.txt")
    os.symlink("loop_b", data / "loop_a")
    os.symlink("loop_a", data / "loop_b")
    os.symlink("..", data / "sub" / "up")
    os.mkfifo(data / "pipe.txt")
    os.chmod(data / "locked", 0)
    if os.geteuid() == 0:
        # root may list any folder, so the kernel's permission check is emulated for mode-000 folders (the
        # only mock here: CI runs as root)
        real = os.scandir

        def scandir(path: str) -> os.ScandirIterator:
            if os.stat(path).st_mode & 0o777 == 0:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(paths_module.os, "scandir", scandir)
    yield data
    os.chmod(data / "locked", 0o755)


EXPECTED_ERRORS = {
    "dangling.txt": "dangling_symlink",
    "locked": "unreadable_directory",
    "loop_a": "symlink_loop",
    "loop_b": "symlink_loop",
    "pipe.txt": "not_a_regular_file",
    "sub/up": "symlink_loop",
}


def test_scan_lists_every_entry_with_its_error(hostile: Path) -> None:
    entries = {os.path.relpath(e.path, hostile): e for e in scan_paths([str(hostile)])}
    assert {k for k, e in entries.items() if not e.error} == {"good.txt", "sub/inner.txt"}
    assert {k: e.error.split(":")[0] for k, e in entries.items() if e.error} == EXPECTED_ERRORS
    assert "'nowhere.txt'" in entries["dangling.txt"].error
    assert "FIFO" in entries["pipe.txt"].error
    assert "Permission denied" in entries["locked"].error


def test_globs_do_not_follow_loops_and_keep_unlistable_folders(hostile: Path) -> None:
    got = sorted(os.path.relpath(p, hostile) for p in expand_paths([str(hostile / "**" / "*.txt")]))
    assert got == ["dangling.txt", "good.txt", "locked", "pipe.txt", "sub/inner.txt"]


def test_files_source_quarantines_each_bad_entry(hostile: Path) -> None:
    root = hostile.parent
    spec = {
        "name": "hostile",
        "workdir": str(root / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {"docs": {"uses": "files", "params": {"paths": ["data"]}}},
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))  # validate says ok, and the run agrees
    engine = Engine(pipeline)
    try:
        reused, manifest = engine.run_node("docs")
    finally:
        engine.close()
    assert not reused
    counts = manifest["counts"]
    assert counts == {"in": 8, "kept": 2, "dropped": 0, "quarantined": 6, "out": 2}
    assert manifest["quarantine_errors"] == {
        "dangling_symlink": 1,
        "not_a_regular_file": 1,
        "symlink_loop": 3,
        "unreadable_directory": 1,
    }
    out = Store(str(root / "store")).output_dir(manifest["fingerprint"])
    bad = pl.read_parquet(os.path.join(out, "quarantine", "part-00000.parquet"))
    # named relative to the pattern's folder: no path of this machine in the rows
    assert sorted(bad["url"]) == sorted(EXPECTED_ERRORS)
    assert not any(str(hostile) in e for e in bad["error"])
    assert bad["id"].n_unique() == 6
