"""The sandbox's first eight attacks and its normal use: each attack fails and is reported, with the audit hook
(``forbidden``) and without it (``audit=False``: the kernel boundary alone); normal programs and HumanEval-style
tests work. The wider attack suite, as root and as an unprivileged user, is ``test_sandbox_attacks.py``."""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from data_pipes.reasoning import sandbox_layers
from data_pipes.reasoning.sandbox import SandboxUnavailable, run_code_tests, run_python


def test_normal_program_and_files() -> None:
    res = run_python(
        "import sys, json\nprint(json.dumps({'x': open('data.txt').read(), 'in': sys.stdin.read()}))",
        stdin="hello",
        files={"data.txt": "payload"},
    )
    assert res.status == "ok", res.stderr
    assert res.stdout.strip() == '{"x": "payload", "in": "hello"}'
    assert run_python("open('out.txt', 'w').write('x'); import tempfile; tempfile.mkstemp()").status == "ok"
    assert run_python("raise ValueError('boom')").reason() == "error: ValueError: boom"


def test_read_outside_fails(tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    for code in (
        f"print(open({str(secret)!r}).read())",
        "print(open('/etc/hostname').read())",
        "import os; os.symlink('/etc/passwd', 'p'); print(open('p').read())",
    ):
        res = run_python(code)
        assert res.status == "forbidden" and "TOPSECRET" not in res.stdout, (code, res)
        assert "outside the sandbox" in res.stderr
        res = run_python(code, audit=False)  # the kernel alone: those files do not exist in the sandbox
        assert res.status == "error" and "FileNotFoundError" in res.stderr, (code, res)
        assert "TOPSECRET" not in res.stdout + res.stderr


def test_write_outside_fails(tmp_path) -> None:
    target = tmp_path / f"pwned-{uuid.uuid4().hex}"
    res = run_python(f"open({str(target)!r}, 'w').write('x')")
    assert res.status == "forbidden" and "write outside the sandbox" in res.stderr
    assert not target.exists()
    res = run_python(f"open({str(target)!r}, 'w').write('x')", audit=False)  # not in the sandbox's tree
    assert res.status == "error" and "FileNotFoundError" in res.stderr and not target.exists()
    res = run_python("open('/pwned', 'w').write('x')", audit=False)  # the tree is read-only
    assert res.status == "error" and "Read-only file system" in res.stderr


def test_network_fails() -> None:
    code = "import socket\ns = socket.create_connection(('127.0.0.1', 22), timeout=2)\nprint('connected')"
    res = run_python(code)
    assert res.status == "forbidden" and "network" in res.stderr and "connected" not in res.stdout
    # the namespace alone: its loopback is its own (nothing listens there), and there is no other interface
    res = run_python(code, audit=False)
    assert res.status == "error" and "ConnectionRefusedError" in res.stderr, res
    res = run_python(code.replace("127.0.0.1", "1.1.1.1"), audit=False)
    assert res.status == "error" and "unreachable" in res.stderr.lower(), res


def test_fork_bomb_fails() -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    res = run_python(bomb, timeout_s=2)
    assert res.status == "forbidden" and "os.fork" in res.stderr
    # RLIMIT_NPROC counted in the run's own user namespace, then the PID namespace dies at the timeout
    res = run_python(bomb, timeout_s=1.5, nproc=8, audit=False)
    assert res.status == "timeout"


def test_memory_bomb_fails() -> None:
    res = run_python("x = bytearray(8 * 1024 ** 3)\nprint('allocated')", memory_mb=256)
    assert res.status == "memory" and "allocated" not in res.stdout
    res = run_python("xs = []\nwhile True:\n    xs.append(' ' * 10_000_000)", memory_mb=256, timeout_s=5)
    assert res.status == "memory"


def test_infinite_loop_fails() -> None:
    res = run_python("while True:\n    pass", timeout_s=1)
    assert res.status == "timeout" and res.seconds < 5
    assert run_code_tests("def f():\n    while True: pass", "f()", "", timeout_s=1) == (
        False,
        "timeout after 1s",
    )


def test_parent_environment_is_unreachable(monkeypatch) -> None:
    monkeypatch.setenv("ARCFLOW_SANDBOX_SECRET", "hunter2")
    res = run_python("import os\nprint(sorted(os.environ))\nprint(os.environ.get('ARCFLOW_SANDBOX_SECRET'))")
    assert res.status == "ok" and "hunter2" not in res.stdout
    assert "ARCFLOW_SANDBOX_SECRET" not in res.stdout
    res = run_python("import os\nprint(open(f'/proc/{os.getppid()}/environ').read())")
    assert res.status == "forbidden" and "hunter2" not in res.stdout
    res = run_python(f"print(open('/proc/{os.getpid()}/environ').read())", audit=False)  # not in its PID ns
    assert res.status == "error" and "FileNotFoundError" in res.stderr and "hunter2" not in res.stdout
    res = run_python("import os\nprint(repr(open(f'/proc/{os.getppid()}/environ').read()))", audit=False)
    assert (
        "hunter2" not in res.stdout + res.stderr
    )  # its parent there is bubblewrap's, with an empty environment


def test_kill_parent_fails() -> None:
    parent = os.getpid()
    for code in (
        f"import os, signal\nos.kill({parent}, signal.SIGKILL)",
        "import os\nos.killpg(0, 9)",
        f"import os\nos.system('kill -9 {parent}')",
    ):
        res = run_python(code)
        assert res.status == "forbidden", (code, res)
    res = run_python(f"import os, signal\nos.kill({parent}, signal.SIGTERM)", audit=False)
    assert res.status == "error" and "ProcessLookupError" in res.stderr  # not in its PID namespace
    os.kill(parent, 0)  # still alive


def test_ctypes_is_blocked() -> None:
    res = run_python("import ctypes\nctypes.CDLL('libc.so.6').kill(1, 9)")
    assert res.status == "forbidden" and "native code" in res.stderr
    parent = os.getpid()  # without the hook, native code still acts only inside the namespaces
    res = run_python(f"import ctypes\nprint(ctypes.CDLL('libc.so.6').kill({parent}, 9))", audit=False)
    assert res.status == "ok" and res.stdout.strip() == "-1"
    os.kill(parent, 0)


PROBLEMS = [
    (
        "add",
        "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
        "def add(a, b):\n    return a + b\n",
        "def add(a, b):\n    return a - b\n",
    ),
    (
        "is_palindrome",
        "def check(candidate):\n    assert candidate('abba')\n    assert not candidate('abc')\n",
        "def is_palindrome(s):\n    return s == s[::-1]\n",
        "def is_palindrome(s):\n    return True\n",
    ),
    (
        "fib",
        "def check(candidate):\n    assert [candidate(i) for i in range(7)] == [0, 1, 1, 2, 3, 5, 8]\n",
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
        "def fib(n):\n    return fib(n - 1) + fib(n - 2)\n",
    ),
]


@pytest.mark.parametrize(("entry", "tests", "right", "wrong"), PROBLEMS)
def test_run_code_tests(entry: str, tests: str, right: str, wrong: str) -> None:
    assert run_code_tests(right, tests, entry, timeout_s=5, memory_mb=256) == (True, "passed")
    passed, detail = run_code_tests(wrong, tests, entry, timeout_s=5, memory_mb=256)
    assert not passed and detail.startswith(("error:", "timeout")), detail


def test_layers_are_reported() -> None:
    res = run_python("print(1)")
    kernel = {"bwrap", "userns", "pidns", "netns", "ipcns", "utsns", "mountns", "no_caps"}
    assert {"tmpdir", "empty_env", "session", "rlimits", "audit"} | kernel <= set(res.layers)
    assert ("uid" in res.layers) == (os.geteuid() == 0)
    assert "audit" not in run_python("print(1)", audit=False).layers


def test_signal_deaths_are_reported_as_before() -> None:
    res = run_python("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert res.status == "killed" and res.returncode == -signal.SIGSEGV
    res = run_python("import sys\nsys.exit(3)")
    assert res.status == "error" and res.returncode == 3


def test_missing_bwrap_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sandbox_layers, "SYSTEM_PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match=r"bubblewrap.*apt-get install -y bubblewrap"):
        run_python("print(1)")
