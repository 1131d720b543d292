"""Which repositories a ``code_repos`` node reads: folders of repositories, single repositories, archives.

``paths`` entries may be folders, archive files or globs. With ``layout: repos`` a folder holds
repositories: each sub-folder (not hidden) is one, and each archive file in it is one. With ``layout:
repo`` a folder is itself one repository. An archive is always one repository. The listing is sorted by
repository name, so shards do not depend on the order of ``paths``; two repositories with the same name are
an error (their ids would collide).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import NamedTuple

from data_pipes.code.archive_reader import archive_name
from data_pipes.code.repo_reader import walk_repo
from data_pipes.io.digests import file_digest, file_digests


class RepoRef(NamedTuple):
    name: str
    path: str
    kind: str  # dir | archive


def _expand(pattern: str) -> list[str]:
    if any(ch in pattern for ch in "*?["):
        found = sorted(glob.glob(pattern, recursive=True))
        if not found:
            raise FileNotFoundError(f"no match for {pattern!r}")
        return found
    if not os.path.exists(pattern):
        raise FileNotFoundError(f"{pattern!r} does not exist")
    return [pattern]


def _repos_in(path: str, layout: str) -> list[RepoRef]:
    if os.path.isfile(path):
        name = archive_name(path)
        if name is None:
            raise ValueError(
                f"{path!r} is a file but not an archive (.tar.gz, .tgz, .tar.xz, .tar.bz2, .tar, .zip)"
            )
        return [RepoRef(name, path, "archive")]
    if layout == "repo":
        return [RepoRef(os.path.basename(os.path.normpath(path)), path, "dir")]
    out = []
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=False):
            out.append(RepoRef(entry.name, entry.path, "dir"))
        elif entry.is_file(follow_symlinks=False) and (name := archive_name(entry.name)) is not None:
            out.append(RepoRef(name, entry.path, "archive"))
    return out


def list_repos(paths: Sequence[str], layout: str) -> list[RepoRef]:
    """Every repository of ``paths`` (see the module docstring), sorted by name."""
    repos: dict[str, RepoRef] = {}
    for pattern in paths:
        for path in _expand(pattern):
            for ref in _repos_in(path, layout):
                other = repos.get(ref.name)
                if other is not None and other.path != ref.path:
                    raise ValueError(
                        f"two repositories named {ref.name!r}: {other.path!r} and {ref.path!r}; "
                        "rename one or read them in separate nodes"
                    )
                repos[ref.name] = ref
    return [repos[name] for name in sorted(repos)]


def repo_stats(ref: RepoRef) -> tuple[int, list[str]]:
    """(bytes, fingerprint lines) of a repository: each entry's path inside it, kind and content digest (an
    archive's digest). Never the repository's folder or an mtime: the same repository elsewhere, or copied,
    fingerprints the same."""
    if ref.kind == "archive":
        st = os.stat(ref.path)
        return st.st_size, [f"{ref.name}|archive|{file_digest(ref.path)}"]
    total, lines = 0, []
    items = list(walk_repo(ref.path))
    files = [os.path.join(ref.path, item.path) for item in items if item.kind == "file"]
    digests = iter(file_digests(files))
    for item in items:
        total += item.size
        what = next(digests) if item.kind == "file" else f"{item.size}|{item.detail}"
        lines.append(f"{ref.name}|{item.path}|{item.kind}|{what}")
    return total, lines
