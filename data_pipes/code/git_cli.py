"""A thin, failure-tolerant wrapper over the ``git`` command line.

Why the CLI and not pygit2 / dulwich: ``git`` is on every machine that has repositories, reads every object
format and pack version the repositories were written with, and reports a damaged object as an error on
that one command, which is exactly the granularity we quarantine at. It costs one process per commit diff,
which is fine for the history sizes a data pipeline reads per repository.

Every call runs with a neutral environment (no system / global config, no pager, no prompts, C locale) and
``safe.directory=*`` so repositories owned by another user can be read.
"""

from __future__ import annotations

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


class CatFile:
    """Object reader over one ``git cat-file --batch``, restarted after git dies on a bad object."""

    def __init__(self, repo: str) -> None:
        self.repo = repo
        self.proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                ["git", "-c", "safe.directory=*", "-C", self.repo, "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_env(),
            )
        return self.proc

    def read(self, sha: str) -> tuple[str, bytes]:
        """(type, content) of object ``sha``; ``GitError`` when it is missing or cannot be read."""
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        header: list[bytes] = []
        try:
            proc.stdin.write(sha.encode("ascii") + b"\n")
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) == 3:
                size = int(header[2])
                data = proc.stdout.read(size + 1)
                if len(data) == size + 1:
                    return header[1].decode("ascii"), data[:size]
        except (OSError, ValueError):
            pass
        if header and header[-1:] == [b"missing"]:
            raise GitError(f"object {sha} is missing")
        self.close()  # git died or spoke garbage: its stderr says why
        raise GitError(f"object {sha} cannot be read: {self.last_error}")

    def close(self) -> None:
        self.last_error = "git cat-file stopped"
        if self.proc is not None:
            if self.proc.stdin:
                self.proc.stdin.close()
            err = self.proc.stderr.read().decode("utf-8", "replace").strip() if self.proc.stderr else ""
            self.proc.wait()
            if err:
                self.last_error = " | ".join(err.splitlines()[:2])
            if self.proc.stdout:
                self.proc.stdout.close()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def __enter__(self) -> CatFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
