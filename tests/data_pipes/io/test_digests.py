"""Content digests for fingerprints: bytes decide, not paths, mtimes or copies."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from data_pipes.io import digests
from data_pipes.io.digests import file_digest, file_digests


@pytest.fixture(autouse=True)
def own_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(digests, "_index", None)


def test_digest_is_the_sha256_of_the_bytes_wherever_the_file_is(tmp_path: Path) -> None:
    a = tmp_path / "a.bin"
    a.write_bytes(b"some bytes" * 1000)
    copy = tmp_path / "elsewhere" / "b.bin"
    copy.parent.mkdir()
    shutil.copyfile(a, copy)
    os.utime(copy, ns=(1, 1))
    assert file_digest(str(a)) == file_digest(str(copy)) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert (tmp_path / "cache" / "file_digests.json").exists()


def test_a_changed_byte_is_seen_even_with_the_same_size_and_mtime(tmp_path: Path) -> None:
    f = tmp_path / "f.txt"
    f.write_bytes(b"aaaa")
    before = file_digest(str(f))
    st = f.stat()
    f.write_bytes(b"aaab")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # any write moves the mtime
    assert file_digest(str(f)) != before


def test_unreadable_files_give_their_reason(tmp_path: Path) -> None:
    got = file_digests([str(tmp_path / "missing.txt")])
    assert got == ["unreadable: No such file or directory"]
