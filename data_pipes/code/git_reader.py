"""Read a git repository or bundle: files at a ref as code records, commits as commit documents.

Bundles are cloned (``git clone --bare``) into a temporary folder that is removed afterwards. Commits come
in history order (``git rev-list --date-order --reverse``); each becomes one document in the format of
docs/CODE_CONTRACT.md (header, message, unified diff against the first parent). A commit or file whose
objects git cannot read is quarantined as ``git_object_error``; a repository git cannot open at all is one
``git_repository_error`` row. Nothing here raises for bad input.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator

from data_pipes.code.git_cli import GitError, git, read_object
from data_pipes.code.globs import selected
from data_pipes.code.languages import language_of
from data_pipes.code.records import CodeOptions, Entry, dropped, file_record, quarantined
from data_pipes.io.records import good_record, make_id, quarantined_record


def is_git_repo(path: str) -> bool:
    """A work tree with ``.git`` or a bare repository (``HEAD`` and ``objects/``)."""
    return os.path.exists(os.path.join(path, ".git")) or (
        os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(os.path.join(path, "objects"))
    )


def repo_name(path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    for suffix in (".bundle", ".git"):
        base = base.removesuffix(suffix)
    return base


@contextlib.contextmanager
def opened(path: str) -> Iterator[str]:
    """A git directory for ``path``: the repository itself, or a temporary bare clone of a bundle."""
    if not path.endswith(".bundle"):
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="arcflow-bundle-")
    try:
        git(None, ["clone", "--bare", "--quiet", path, os.path.join(tmp, "repo.git")])
        yield os.path.join(tmp, "repo.git")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve(repo: str, ref: str) -> str:
    return git(repo, ["rev-parse", "--verify", "--end-of-options", f"{ref}^{{commit}}"]).decode().strip()


def _ident(line: bytes) -> tuple[str, str, str]:
    """(name, email, ISO date) of a raw ``author`` header value ``Name <email> 1700000000 +0100``."""
    text = line.decode("utf-8", "replace")
    name, _, rest = text.partition(" <")
    email, _, when = rest.partition("> ")
    try:
        seconds, tz = when.split()
        sign = -1 if tz.startswith("-") else 1
        offset = dt.timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])) * sign
        date = dt.datetime.fromtimestamp(int(seconds), dt.timezone(offset)).isoformat()
    except ValueError:
        date = when
    return name, email, date


def parse_commit(raw: bytes) -> dict:
    """Parents, author and message of a raw commit object."""
    head, _, message = raw.partition(b"\n\n")
    parents, author = [], b""
    for line in head.split(b"\n"):
        key, _, value = line.partition(b" ")
        if key == b"parent":
            parents.append(value.decode("ascii"))
        elif key == b"author":
            author = value
    name, email, date = _ident(author)
    return {
        "parents": parents,
        "author": name,
        "author_email": email,
        "date": date,
        "message": message.decode("utf-8", "replace").rstrip("\n"),
    }


def _truncate(diff: bytes, max_bytes: int) -> tuple[bytes, bool]:
    if len(diff) <= max_bytes:
        return diff, False
    cut = diff.rfind(b"\n", 0, max_bytes) + 1
    return diff[:cut] + f"[diff truncated: {len(diff) - cut} bytes omitted]\n".encode(), True


def commit_record(repo: str, name: str, sha: str, position: int, source: str, max_diff_bytes: int) -> dict:
    """The commit document of ``sha`` (format in docs/CODE_CONTRACT.md), quarantined on a git error."""
    rid, url = make_id("git", name, sha), f"git://{name}/commit/{sha}"
    try:
        raw = read_object(repo, sha, "commit")
        info = parse_commit(raw)
        base = info["parents"][:1] or ["--root"]
        diff = git(
            repo, ["diff-tree", "-p", "-M", "--no-color", "--no-ext-diff", "--no-commit-id", *base, sha]
        )
    except GitError as exc:
        return quarantined_record(rid=rid, source=source, url=url, error=f"git_object_error: {exc}")
    body, truncated = _truncate(diff, max_diff_bytes)
    text_diff = body.decode("utf-8", "replace")
    lossy = "\ufffd" in text_diff and "\ufffd".encode() not in body
    text = (
        f"commit {sha}\nAuthor: {info['author']} <{info['author_email']}>\nDate:   {info['date']}\n\n"
        f"{info['message']}\n"
    )
    if text_diff:
        text += "\n" + text_diff
    meta = {
        "format": "commit",
        "repo": name,
        "commit": sha,
        "parents": info["parents"],
        "author": info["author"],
        "author_email": info["author_email"],
        "date": info["date"],
        "position": position,
        "files_changed": diff.count(b"\ndiff --git ") + diff.startswith(b"diff --git "),
        "diff_bytes": len(diff),
        "diff_truncated": truncated,
        "diff_lossy": lossy,
        "origin": "git",
    }
    return good_record(rid=rid, text=text, source=source, url=url, meta=meta)


def read_commits(
    repo: str, name: str, ref: str, source: str, max_diff_bytes: int, max_commits: int | None = None
) -> Iterator[dict]:
    """Commit documents of the history of ``ref``, oldest first (the newest ``max_commits`` when given)."""
    shas = git(repo, ["rev-list", "--date-order", "--reverse", ref]).decode().split()
    if max_commits is not None:
        shas = shas[-max_commits:] if max_commits else []
    for position, sha in enumerate(shas):
        yield commit_record(repo, name, sha, position, source, max_diff_bytes)


def read_tree_files(repo: str, name: str, commit: str, opts: CodeOptions) -> Iterator[dict]:
    """Code records of the files of ``commit``'s tree, in path order."""
    listing = git(repo, ["ls-tree", "-r", "-z", "-l", "--full-tree", commit]).split(b"\0")
    for line in listing:
        if not line:
            continue
        info, _, raw_path = line.partition(b"\t")
        mode, _type, sha, size = info.decode("ascii").split()
        path = raw_path.decode("utf-8", "replace")
        if not selected(path, opts.include, opts.exclude):
            continue
        entry = Entry(name, path, "git", commit)
        if mode == "160000":
            yield dropped(entry, opts, "code_submodule")
        elif mode == "120000":
            yield dropped(entry, opts, "code_symlink", language_of(path, opts.languages) or "")
        elif not size.isdigit():  # ls-tree prints BAD when it cannot read the object's header
            yield quarantined(entry, opts, "git_object_error", f"object {sha} cannot be read (size {size})")
        else:
            try:
                yield file_record(entry, opts, int(size), lambda s=sha: read_object(repo, s, "blob"))
            except GitError as exc:
                yield quarantined(entry, opts, "git_object_error", str(exc))
