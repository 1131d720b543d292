"""Code sandbox: run untrusted Python in a separate, limited process and say what happened.

The boundary is the kernel's, set up by bubblewrap (``sandbox_layers``; docs/AGENT.md has the table of which
layer stops which attack):

1. ``bwrap``: fresh user, PID, network, IPC, UTS and mount namespaces, no capabilities, ``no_new_privs``,
   ``--die-with-parent``, ``--new-session``; the child's file system is only a read-only bind of the
   interpreter (installation, standard library, site-packages, shared libraries) and a size-limited tmpfs work
   directory, ``/sandbox`` (cwd, ``HOME``, ``TMPDIR``), into which ``files`` and ``main.py`` are copied;
2. as root, a fresh unprivileged uid per run (file permissions and ``RLIMIT_NPROC`` apply);
3. resource limits set by the bootstrap before the user's code runs (address space and data for memory, CPU
   seconds, processes, file size, open files, no core);
4. an empty environment, a session of its own, and the wall-clock timeout: at the timeout the PID namespace's
   first process is killed, and with it, by the kernel, everything the run started;
5. a second line inside the process: an audit hook (``sandbox_boot``) that ends the program with status
   ``forbidden`` on file access outside the sandbox, sockets, signals to other processes, new processes,
   ``ctypes`` and gc introspection. Nothing depends on it: every attack is also stopped with ``audit=False``.

stdout / stderr go to files outside the sandbox, read back up to ``max_output`` bytes.
``run_code_tests(code, tests, entry_point, timeout_s, memory_mb) -> (passed, detail)`` is the interface the
verifier uses; ``run_python`` is the general one (the agent's ``python`` tool).
"""

from __future__ import annotations

import marshal
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from data_pipes.reasoning.sandbox_boot import EXIT_FORBIDDEN, MARK, config_args
from data_pipes.reasoning.sandbox_layers import (
    WORK,
    SandboxUnavailable,
    check_available,
    command,
    fresh_uid,
    kill_group,
    kill_uid,
)
from data_pipes.reasoning.sandbox_seccomp import filter_fd

__all__ = ["STATUSES", "SandboxResult", "SandboxUnavailable", "run_code_tests", "run_python"]

BOOT_SOURCE = Path(__file__).with_name("sandbox_boot.py").read_text(encoding="utf-8")
# the bootstrap goes in compiled (marshal, for this very interpreter: the probe checked the sandbox runs it), so
# no run spends milliseconds compiling it again; the loader pops it off argv before it runs
BOOT_CODE = marshal.dumps(compile(BOOT_SOURCE, "sandbox_boot.py", "exec", optimize=2)).hex()
BOOT_LOADER = "import marshal, sys; exec(marshal.loads(bytes.fromhex(sys.argv.pop(1))))"
STATUSES = ("ok", "error", "timeout", "memory", "killed", "forbidden")
HARNESS = "\n\n{tests}\n\nif 'check' in globals() and {entry!r}:\n    check(globals()[{entry!r}])\n"
# the harness's last statement: a fresh marker on fd 1, so a program that exits 0 before its tests have run to
# the end (``sys.exit(0)``, ``os._exit(0)`` in the code or in the function under test) does not pass
FINISHED = "\n__import__('os').write(1, b'\\n{marker}\\n')\n"
CHILD_PID = re.compile(rb'"child-pid":\s*(\d+)[,\s}]')
REAP_S = 5.0  # after a kill, how long to wait for the kernel to empty the run's PID namespace


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
    disk_mb: int = 64,
    site_packages: bool = True,
    audit: bool = True,
) -> SandboxResult:
    """Run ``code`` as ``main.py`` in a fresh sandbox; ``files`` are copied beside it first (relative paths).

    ``disk_mb`` bounds the work directory (a tmpfs), ``fsize_mb`` each file; ``audit=False`` leaves the
    in-process audit hook out (the tests show every attack fails without it). Raises ``SandboxUnavailable``
    when bubblewrap is missing or the kernel refuses its namespaces."""
    return _run(
        code, stdin, timeout_s, memory_mb, files, nproc, max_output, fsize_mb, disk_mb, site_packages, audit
    )[0]


def _run(
    code,
    stdin,
    timeout_s,
    memory_mb,
    files,
    nproc,
    max_output,
    fsize_mb,
    disk_mb,
    site_packages,
    audit,
    marker=None,
) -> tuple[SandboxResult, bool]:
    """``run_python``, and whether ``marker`` (bytes) is anywhere in the whole stdout (not only the part kept)."""
    layers = check_available()
    uid = fresh_uid() if "uid" in layers else None
    root = tempfile.mkdtemp(prefix="arcflow-sbx-")  # 0700, ours: staging files and the output files
    try:
        staged = _stage_files(root, {**(files or {}), "main.py": code})
        return _execute(
            root,
            staged,
            layers,
            uid,
            stdin,
            timeout_s,
            memory_mb,
            nproc,
            max_output,
            fsize_mb,
            disk_mb,
            site_packages,
            audit,
            marker,
        )
    finally:
        if uid is not None:
            kill_uid(uid)
        shutil.rmtree(root, ignore_errors=True)


def _stage_files(root: str, files: dict[str, str]) -> list[tuple[str, str]]:
    """Write each file under ``root/in``; (host path, path relative to the work directory) pairs."""
    staged = []
    for i, (rel, text) in enumerate(files.items()):
        norm = os.path.normpath(rel)
        if os.path.isabs(rel) or norm in (".", "..") or norm.startswith("../"):
            raise ValueError(f"sandbox file {rel!r} must be a relative path inside the sandbox")
        host = os.path.join(root, f"in-{i}")
        with open(host, "w", encoding="utf-8") as fh:
            fh.write(text)
        staged.append((host, norm))
    return staged


def _execute(
    root,
    staged,
    layers,
    uid,
    stdin,
    timeout_s,
    memory_mb,
    nproc,
    max_output,
    fsize_mb,
    disk_mb,
    site,
    audit,
    marker,
):
    cfg = {
        "dir": WORK,
        "main": "main.py",
        "allow_processes": False,
        "audit": audit,
        "limits": {
            "memory_bytes": memory_mb * 1024 * 1024,
            "cpu_s": max(1, int(timeout_s + 0.999)),
            "nproc": nproc,  # counted in the run's own user namespace: only its processes
            "fsize_bytes": fsize_mb * 1024 * 1024,
            "nofile": 64,
        },
    }
    flags = ["-I", "-B"] + ([] if site else ["-S"])
    env = {"HOME": WORK, "TMPDIR": WORK, "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"}
    paths = {name: os.path.join(root, name) for name in ("stdin", "stdout", "stderr")}
    with open(paths["stdin"], "w", encoding="utf-8") as fh:
        fh.write(stdin)
    info_r, info_w = os.pipe()
    fds = [os.open(host, os.O_RDONLY | os.O_CLOEXEC) for host, _ in staged]
    seccomp = filter_fd()
    if seccomp is not None:
        fds.append(seccomp)
    try:
        argv = command(
            [sys.executable, *flags, "-c", BOOT_LOADER, BOOT_CODE, *config_args(cfg)],
            env,
            uid,
            disk_mb * 1024 * 1024,
            [(fd, rel) for fd, (_, rel) in zip(fds, staged, strict=False)],
            info_w,
            seccomp,
            site_packages=site,
        )
        started = time.perf_counter()
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
                cwd=root,
                env={"PATH": "/usr/bin:/bin"},
                start_new_session=True,
                close_fds=True,
                pass_fds=[*fds, info_w],
                umask=0o022,
            )
        for fd in [*fds, info_w]:
            os.close(fd)
        fds = []
        deadline = time.monotonic() + timeout_s
        init = _init_pidfd(info_r, timeout_s)  # the PID namespace's first process, as a pidfd
        try:
            timed_out = not _wait(proc, deadline - time.monotonic())
            if timed_out and init is not None:
                # the kernel kills every process of the namespace when its first one dies; bwrap then returns
                _kill_pidfd(init)
                _wait(proc, REAP_S)
            if timed_out:
                kill_group(proc.pid)  # only if bwrap did not return
                proc.wait()
            # bwrap may return as soon as the program exits, before its namespace is emptied (leftover
            # processes, daemons): a dead first process means the kernel has killed and reaped all the others
            if init is not None and not _ready(init, REAP_S):
                _kill_pidfd(init)
                _ready(init, REAP_S)
        finally:
            if init is not None:
                os.close(init)
    finally:
        for fd in [*fds, info_r]:
            os.close(fd)
    seconds = time.perf_counter() - started
    out, err = _read(paths["stdout"], max_output), _read(paths["stderr"], max_output)
    rc = _returncode(proc.returncode)
    status = _classify(rc, err, timed_out)
    used = ("tmpdir", "empty_env", "session", *layers, "rlimits") + (("audit",) if audit else ())
    found = marker is not None and _contains(paths["stdout"], marker)
    return SandboxResult(status, out, err, None if timed_out else rc, round(seconds, 4), used), found


def _init_pidfd(info_r: int, timeout_s: float) -> int | None:
    """A pidfd of the run's PID-namespace init, from bwrap's ``--info-fd`` (written as soon as it has cloned
    it, so while the process surely exists), or None when bwrap failed first."""
    deadline, data = time.monotonic() + max(timeout_s, 1.0), b""
    while (found := CHILD_PID.search(data)) is None:  # written in pieces: the pid comes first
        if not _ready(info_r, deadline - time.monotonic()):
            return None
        chunk = os.read(info_r, 65536)
        if not chunk:
            return None
        data += chunk
    try:
        return os.pidfd_open(int(found.group(1)))
    except (OSError, AttributeError):
        return None


def _ready(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` becomes readable within ``timeout_s`` (``poll``: any descriptor number)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(timeout_s, 0.0) * 1000))


def _kill_pidfd(pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


def _wait(proc: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for ``proc`` up to ``timeout_s``; whether it exited. A pidfd wakes us the moment it exits
    (``Popen.wait(timeout)`` polls with sleeps of up to 50 ms)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=max(timeout_s, 0.0))
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        exited = _ready(pidfd, timeout_s)
    finally:
        os.close(pidfd)
    if exited:
        proc.wait()
    return exited


def _returncode(rc: int) -> int:
    """bwrap reports a child killed by signal N as exit 128 + N; give it back as -N, as a direct child's."""
    if rc > 128 and (rc - 128) in {s.value for s in signal.Signals}:
        return -(rc - 128)
    return rc


def _read(path: str, limit: int) -> str:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    text = data[:limit].decode("utf-8", "replace")
    return text + ("\n[output truncated]" if len(data) > limit else "")


def _contains(path: str, needle: bytes, chunk: int = 1 << 20) -> bool:
    """Whether ``needle`` occurs in the file (read in chunks: at most ``fsize_mb`` of output)."""
    tail = b""
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle) :]
    return False


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
    ``(True, "passed")`` when the program exits 0 after running to its end (a fresh marker written last proves
    it), else ``(False, "<status>: <last stderr line>")``."""
    marker = f"arcflow-tests-finished-{secrets.token_hex(16)}"
    program = code + HARNESS.format(tests=tests, entry=entry_point or "") + FINISHED.format(marker=marker)
    res, finished = _run(
        program,
        stdin="",
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        files=None,
        nproc=16,
        max_output=64 * 1024,
        fsize_mb=16,
        disk_mb=64,
        site_packages=True,
        audit=True,
        marker=marker.encode(),
    )
    if res.ok and finished:
        return True, "passed"
    if res.ok:
        return False, "error: the program exited 0 before its tests had run to the end"
    if res.status == "timeout":
        return False, f"timeout after {timeout_s}s"
    return False, res.reason()
