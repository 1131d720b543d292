"""Minimal code sandbox: run a candidate and its tests in a separate, resource-limited Python process.

This is the placeholder the sandbox engineer replaces with a hardened version; the signature
``run_code_tests(code, tests, entry_point, timeout_s, memory_mb) -> (passed, detail)`` is the interface. The
child runs ``python -I`` in a fresh temporary directory with an empty environment, under ``RLIMIT_AS`` /
``RLIMIT_CPU`` / ``RLIMIT_FSIZE`` / ``RLIMIT_NPROC``, and is killed (its whole process group) at the wall
timeout. The program is the code, then the tests, then ``check(<entry_point>)`` when the tests define
``check``.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile

HARNESS = "\n\n{tests}\n\nif 'check' in globals() and {entry!r}:\n    check(globals()[{entry!r}])\n"


def _limits(timeout_s: float, memory_mb: int) -> None:
    os.setsid()
    mem = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    cpu = int(timeout_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (10 * 1024 * 1024, 10 * 1024 * 1024))
    resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))


def run_code_tests(
    code: str, tests: str, entry_point: str, timeout_s: float = 10.0, memory_mb: int = 1024
) -> tuple[bool, str]:
    """Run ``code`` + ``tests`` in a subprocess; ``(True, "passed")`` when it exits 0, else why not."""
    program = code + HARNESS.format(tests=tests, entry=entry_point or "")
    with tempfile.TemporaryDirectory(prefix="arcflow-sandbox-") as tmp:
        path = os.path.join(tmp, "candidate.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(program)
        proc = subprocess.Popen(
            [sys.executable, "-I", path],
            cwd=tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
            preexec_fn=lambda: _limits(timeout_s, memory_mb),  # noqa: PLW1509 - no threads are started here
        )
        try:
            _out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate()
            return False, f"timeout after {timeout_s}s"
        _kill_group(proc.pid)  # whatever the candidate left running in its group
    if proc.returncode == 0:
        return True, "passed"
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
    return False, f"failed: {tail[0][:300]}"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
