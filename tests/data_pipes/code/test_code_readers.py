"""Readers' building blocks: globs, languages, archive prefixes and links, git commit parsing."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

from data_pipes.code.archive_reader import archive_name, read_archive
from data_pipes.code.git_reader import parse_commit
from data_pipes.code.globs import glob_match, selected
from data_pipes.code.languages import language_of
from data_pipes.code.records import CodeOptions

OPTS = CodeOptions(source="s", max_bytes=1000)


def test_globs() -> None:
    assert glob_match("a/b/c.min.js", "*.min.js")
    assert glob_match("vendor/x/y.go", "vendor/**")
    assert glob_match("y.go", "**/y.go") and glob_match("a/y.go", "**/y.go")
    assert not glob_match("a/b.py", "a/*/b.py")
    assert selected("src/a.py", ["src/**"], ["**/test_*"]) and not selected(
        "src/test_a.py", ["src/**"], ["test_*"]
    )


def test_globs_have_gitignore_semantics() -> None:
    # the patterns docs/CODE_CONTRACT.md promises, as .gitignore reads them
    assert (
        glob_match("src/x.c", "*.[ch]") and glob_match("x.h", "*.[ch]") and not glob_match("x.cc", "*.[ch]")
    )
    assert glob_match("vendor/x/y.go", "vendor/") and glob_match("a/vendor/y.go", "vendor/")
    assert not glob_match("vendorx/y.go", "vendor/") and not glob_match("vendor", "vendor/")
    assert glob_match("web/node_modules/left-pad/index.js", "node_modules/")
    assert glob_match("build/a.o", "/build") and not glob_match("src/build/a.o", "/build")
    assert glob_match("docs/a.md", "docs/*.md") and not glob_match("x/docs/a.md", "docs/*.md")
    assert not selected("third_party/lib.c", [], ["third_party/", "!third_party/keep.c"])
    assert selected("third_party/keep.c", [], ["third_party/*", "!third_party/keep.c"])
    assert selected("src/a.rs", ["*.rs", "*.py"], ["vendor/"]) and not selected(
        "vendor/a.rs", ["*.rs"], ["vendor/"]
    )


def test_languages() -> None:
    assert language_of("a/b.PY") == "python" and language_of("Makefile") == "makefile"
    assert language_of("x.unknownext") is None and language_of(".bashrc") is None
    assert language_of("a.py", {"rs": "rust"}) is None
    assert (
        archive_name("/x/rust-anyhow-1.0.69.tar.gz") == "rust-anyhow-1.0.69" and archive_name("a.txt") is None
    )


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"", link: str | None = None) -> None:
    info = tarfile.TarInfo(name)
    if link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    else:
        info.size = len(data)
    tf.addfile(info, io.BytesIO(data) if link is None else None)


def test_tar_prefix_links_and_size(tmp_path: Path) -> None:
    path = tmp_path / "pkg-1.tar.xz"
    with tarfile.open(path, "w:xz") as tf:
        _add(tf, "pkg-1/a.py", b"x = 1\n")
        _add(tf, "pkg-1/big.py", b"#" * 2000)
        _add(tf, "pkg-1/up.py", link="../../etc/passwd")
        _add(tf, "pkg-1/l1.py", link="l2.py")
        _add(tf, "pkg-1/l2.py", link="l1.py")
    recs = {
        r["url"]: r.get("reason") or r.get("error", "").split(":")[0]
        for r in read_archive(str(path), "pkg", OPTS)
    }
    assert recs == {
        "repo://pkg/a.py": "",
        "repo://pkg/big.py": "code_too_large",
        "repo://pkg/up.py": "code_symlink",
        "repo://pkg/l1.py": "code_symlink_loop",
        "repo://pkg/l2.py": "code_symlink_loop",
    }


def test_zip_and_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.go", "package a\n")
        zf.writestr("sub/b.rs", "fn b() {}\n")
    recs = list(read_archive(str(path), "z", OPTS))
    assert sorted(r["url"] for r in recs) == ["repo://z/a.go", "repo://z/sub/b.rs"]
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    bad = list(read_archive(str(tmp_path / "bad.zip"), "bad", OPTS))
    assert len(bad) == 1 and bad[0]["error"].startswith("code_archive_corrupt: ")


def test_parse_commit() -> None:
    raw = (
        b"tree abc\nparent p1\nparent p2\nauthor Ada L <ada@x> 1700000000 +0130\n"
        b"committer C <c@x> 1 +0000\n\n"
        b"Subject\n\nBody.\n\n"
    )
    info = parse_commit(raw)
    assert info["parents"] == ["p1", "p2"] and info["author"] == "Ada L" and info["author_email"] == "ada@x"
    assert info["date"] == "2023-11-14T23:43:20+01:30" and info["message"] == "Subject\n\nBody."
