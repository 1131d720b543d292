"""Code sandbox: run untrusted Python in a separate, limited process and say what happened.

Layers, outermost first (docs/AGENT.md has the table of which layer stops which attack):

1. a fresh temporary directory as cwd, ``HOME`` and ``TMPDIR``, removed afterwards (with everything the
   program wrote); stdout / stderr go to files outside it, read back up to ``max_output`` bytes;
2. an empty environment: none of the parent's variables reach the child;
3. a session and process group of its own (``start_new_session``); at the wall timeout the group is killed,
   and so is every process of the run's uid;
4. a network namespace with no interfaces (``sandbox_layers``), when the machine allows one;
5. a fresh unprivileged uid when we are root (``sandbox_layers``): file permissions, signals and
   ``RLIMIT_NPROC`` become real;
6. resource limits set by the bootstrap before the user's code runs (address space and data for memory, CPU
   seconds, processes, file size, open files, no core);
7. an audit hook (``sandbox_boot``) that ends the program with status ``forbidden`` on file access outside the
   sandbox, sockets, signals to other processes, new processes, ``ctypes`` and gc introspection.

``run_code_tests(code, tests, entry_point, timeout_s, memory_mb) -> (passed, detail)`` is the interface the
verifier uses; ``run_python`` is the general one (the agent's ``python`` tool).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from data_pipes.reasoning.sandbox_boot import EXIT_FORBIDDEN, MARK
from data_pipes.reasoning.sandbox_layers import (
    available_layers,
    command_prefix,
    fresh_uid,
    kill_group,
    kill_uid,
)

BOOT_SOURCE = Path(__file__).with_name("sandbox_boot.py").read_text(encoding="utf-8")
STATUSES = ("ok", "error", "timeout", "memory", "killed", "forbidden")
HARNESS = "\n\n{tests}\n\nif 'check' in globals() and {entry!r}:\n    check(globals()[{entry!r}])\n"


@dataclass(frozen=True)
class SandboxResult:
    """``status``: ok (exit 0) | error (non-zero exit) | timeout (wall or CPU limit) | memory (MemoryError
    under the address-space limit) | killed (another signal) | forbidden (the audit hook stopped it)."""

    status: str
    stdout: str
    stderr: str
    returncode: int | None
    seconds: float
    layers: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def reason(self) -> str:
        """One line: the status and the last line of stderr (the exception or the forbidden action)."""
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        tail = lines[-1] if lines else f"exit {self.returncode}"
        return f"{self.status}: {tail[:300]}"


def run_python(
    code: str,
    *,
    stdin: str = "",
    timeout_s: float = 10.0,
    memory_mb: int = 512,
    files: dict[str, str] | None = None,
    nproc: int = 16,
    max_output: int = 64 * 1024,
    fsize_mb: int = 16,
    site_packages: bool = True,
    layers: frozenset[str] | None = None,
    audit: bool = True,
) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh sandbox; ``files`` are written beside it first (relative paths).

    ``layers`` restricts the kernel layers to a subset of ``available_layers()`` (benchmarks, tests);
    ``audit=False`` leaves the audit hook out (to test the kernel layers alone)."""
    use = available_layers() if layers is None else available_layers() & layers
    uid = fresh_uid() if ("uid" in use or "uid+read" in use) else None
    root = tempfile.mkdtemp(prefix="arcflow-sbx-")
    try:
        os.chmod(root, 0o711)  # the child may traverse to its directory but not list or open our files
        work = os.path.join(root, "work")
        os.mkdir(work, 0o700)
        _write_files(work, {**(files or {}), "main.py": code})
        if uid is not None:
            for dirpath, _dirs, names in os.walk(work):
                for p in [dirpath, *(os.path.join(dirpath, n) for n in names)]:
                    os.chown(p, uid, uid)
        return _execute(
            root,
            work,
            use,
            uid,
            stdin,
            timeout_s,
            memory_mb,
            nproc,
            max_output,
            fsize_mb,
            site_packages,
            audit,
        )
    finally:
        if uid is not None:
            kill_uid(uid)
        shutil.rmtree(root, ignore_errors=True)


def _write_files(work: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = os.path.normpath(os.path.join(work, rel))
        if os.path.isabs(rel) or not path.startswith(work + os.sep):
            raise ValueError(f"sandbox file {rel!r} must be a relative path inside the sandbox")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)


def _execute(root, work, use, uid, stdin, timeout_s, memory_mb, nproc, max_output, fsize_mb, site, audit):
    cfg = {
        "dir": work,
        "main": "main.py",
        "allow_processes": False,
        "audit": audit,
        "limits": {
            "memory_bytes": memory_mb * 1024 * 1024,
            "cpu_s": max(1, int(timeout_s + 0.999)),
            "nproc": nproc if uid is not None else nproc + _own_processes(),
            "fsize_bytes": fsize_mb * 1024 * 1024,
            "nofile": 64,
        },
    }
    flags = ["-I", "-B"] + ([] if site else ["-S"])
    argv = [*command_prefix(use, uid), sys.executable, *flags, "-c", BOOT_SOURCE, json.dumps(cfg)]
    env = {"HOME": work, "TMPDIR": work, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"}
    paths = {name: os.path.join(root, name) for name in ("stdin", "stdout", "stderr")}
    with open(paths["stdin"], "w", encoding="utf-8") as fh:
        fh.write(stdin)
    started = time.perf_counter()
    timed_out = False
    with (
        open(paths["stdin"], "rb") as fin,
        open(paths["stdout"], "wb") as fout,
        open(paths["stderr"], "wb") as ferr,
    ):
        proc = subprocess.Popen(
            argv,
            stdin=fin,
            stdout=fout,
            stderr=ferr,
            cwd=work,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        kill_group(proc.pid)  # the run is over: nothing it started may outlive it
        proc.wait()
    seconds = time.perf_counter() - started
    out, err = _read(paths["stdout"], max_output), _read(paths["stderr"], max_output)
    status = _classify(proc.returncode, err, timed_out)
    layers = ("tmpdir", "empty_env", "session", *sorted(use), "rlimits") + (("audit",) if audit else ())
    return SandboxResult(status, out, err, None if timed_out else proc.returncode, round(seconds, 4), layers)


def _own_processes() -> int:
    """Processes (and threads' tasks) of our uid: ``RLIMIT_NPROC`` counts them too when no uid is dropped."""
    uid, n = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                continue
    return n


def _read(path: str, limit: int) -> str:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    text = data[:limit].decode("utf-8", "replace")
    return text + ("\n[output truncated]" if len(data) > limit else "")


def _classify(rc: int | None, err: str, timed_out: bool) -> str:
    if timed_out or rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "timeout"
    if rc == 0:
        return "ok"
    if rc == EXIT_FORBIDDEN and MARK in err:
        return "forbidden"
    if "MemoryError" in err[-2000:] or "Cannot allocate memory" in err[-2000:]:
        return "memory"
    if rc is not None and rc < 0:
        return "killed"
    return "error"


def run_code_tests(
    code: str, tests: str, entry_point: str, timeout_s: float = 10.0, memory_mb: int = 1024
) -> tuple[bool, str]:
    """Run ``code``, then ``tests``, then ``check(<entry_point>)`` when the tests define ``check``.
    ``(True, "passed")`` when the program exits 0, else ``(False, "<status>: <last stderr line>")``."""
    program = code + HARNESS.format(tests=tests, entry=entry_point or "")
    res = run_python(program, timeout_s=timeout_s, memory_mb=memory_mb)
    if res.ok:
        return True, "passed"
    if res.status == "timeout":
        return False, f"timeout after {timeout_s}s"
    return False, res.reason()
