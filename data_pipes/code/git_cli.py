"""A thin, failure-tolerant wrapper over the ``git`` command line.

Why the CLI and not pygit2 / dulwich: ``git`` is on every machine that has repositories, reads every object
format and pack version the repositories were written with, and reports a damaged object as an error on
that one command, which is exactly the granularity we quarantine at. It costs one process per commit diff,
which is fine for the history sizes a data pipeline reads per repository.

Every call runs with a neutral environment (no system / global config, no pager, no prompts, C locale) and
``safe.directory=*`` so repositories owned by another user can be read.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "LC_ALL": "C",
}


class GitError(Exception):
    """A git command failed; ``message`` is git's own error text (first lines of stderr)."""


def _env() -> dict[str, str]:
    return {**os.environ, **GIT_ENV}


def git(repo: str | None, args: Sequence[str], *, timeout: float = 600.0) -> bytes:
    """Run ``git -C repo args...`` and return stdout; raise ``GitError`` with git's message on failure."""
    cmd = ["git", "-c", "safe.directory=*", "-c", "core.quotepath=off"]
    if repo is not None:
        cmd += ["-C", repo]
    try:
        proc = subprocess.run([*cmd, *args], capture_output=True, env=_env(), timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitError(f"git {args[0]}: {exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed ({proc.returncode}): {' | '.join(err[:3]) or 'no message'}")
    return proc.stdout


def read_object(repo: str, sha: str, kind: str) -> bytes:
    """The content of object ``sha`` of type ``kind`` (blob, commit), checked against its id.

    One ``git cat-file`` process per object: git's exit status is then a reliable per-object verdict, where a
    long-lived ``--batch`` process can report a damaged object's header and then send fewer bytes than it
    announced. The content is re-hashed because git may return a truncated object without an error.
    """
    data = git(repo, ["cat-file", kind, sha])
    algo = hashlib.sha256 if len(sha) == 64 else hashlib.sha1
    if algo(f"{kind} {len(data)}\0".encode() + data).hexdigest() != sha:
        raise GitError(f"object {sha} is corrupt: its content does not hash to its id")
    return data
