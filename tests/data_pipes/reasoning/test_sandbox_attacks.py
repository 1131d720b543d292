"""Attacks on the sandbox's kernel boundary, with the audit hook off (``audit=False``: nothing may depend on it)
and on. Each attack must fail and come back as a ``SandboxResult`` (its status, exit code and stderr say how
it was stopped), never as an exception in the caller; no secret may appear in its output; nothing it started
may outlive ``run_python``; a server this test runs on the host's loopback must see no connection.

The suite runs as the test's own user (root in CI) and again, in one child process, as an unprivileged user
(``nobody`` through ``setpriv``), from a copy of the sandbox modules that user can read; it is skipped there,
with the reason, only where no interpreter is executable by that user.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from data_pipes.reasoning.sandbox import run_code_tests, run_python

REPO = Path(__file__).resolve().parents[3]
SECRET = "ARCFLOW-SECRET-" + uuid.uuid4().hex
NOBODY = 65534


@dataclass(frozen=True)
class Attack:
    name: str
    code: (
        str  # @ROOT_SECRET@, @WORLD_SECRET@, @OUTSIDE@, @HOST_PID@, @LEAKED_FD@, @PORT@, @ABSTRACT@, @TOKEN@
    )
    statuses: tuple[str, ...]  # how it may end without the audit hook
    stderr: tuple[str, ...] = ()  # one of these must be in stderr (how it was stopped)
    kw: tuple[tuple[str, object], ...] = ()


# the program a spawned process runs: read the root-only file
CHILD = 'child = "import sys; sys.stdout.write(open(%r).read())" % (@ROOT_SECRET@,)\n'
LIBC = "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
RAISE = "if r != 0:\n    e = ctypes.get_errno()\n    raise OSError(e, os.strerror(e))\n"
PTRACE = LIBC + "r = libc.ptrace(16, {pid}, 0, 0)  # PTRACE_ATTACH\n" + RAISE
SLEEPER = "import time\nwhile True:\n    time.sleep(0.05)"
ATTACKS = [
    Attack("read root-only file", "print(open(@ROOT_SECRET@).read())", ("error",), ("FileNotFoundError",)),
    Attack(
        "read world-readable file outside",
        "print(open(@WORLD_SECRET@).read())",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "list the outside folder",
        "import os\nprint(os.listdir(@OUTSIDE@))",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "spawn python (subprocess)",
        CHILD + "import subprocess, sys\nsubprocess.run([sys.executable, '-c', child], check=True)",
        ("error",),
        ("CalledProcessError",),
    ),
    Attack(
        "spawn cat (subprocess)",
        "import subprocess\nsubprocess.run(['cat', @ROOT_SECRET@], check=True)",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "os.system cat",
        "import os, sys\nrc = os.system('cat ' + @ROOT_SECRET@ + ' || /bin/cat ' + @ROOT_SECRET@)\n"
        "sys.exit(f'os.system exit status {rc}')",
        ("error",),
        ("os.system exit status",),
    ),
    Attack(
        "ctypes execve",
        LIBC + CHILD + "import sys\nargv = [sys.executable.encode(), b'-c', child.encode()]\n"
        "A = ctypes.c_char_p * 4\nE = ctypes.c_char_p * 1\n"
        "r = libc.execve(argv[0], A(*argv, None), E(None))\n" + RAISE,
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "_posixsubprocess.fork_exec",
        CHILD + "import _posixsubprocess, os, sys\nr, w = os.pipe()\nargs = [sys.executable, '-c', child]\n"
        "common = [args, [os.fsencode(sys.executable)], True, (w,), None, None, -1, -1, -1, -1, -1, -1, r, w,\n"
        "          False, False, -1, None, None, -1, -1, None]\n"
        "try:\n    pid = _posixsubprocess.fork_exec(*common)\nexcept TypeError:\n"
        "    pid = _posixsubprocess.fork_exec(*common, True)\n"
        "_, status = os.waitpid(pid, 0)\nsys.exit(os.waitstatus_to_exitcode(status))",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "/proc/<host ppid>/root",
        "print(open('/proc/@HOST_PID@/root' + @ROOT_SECRET@).read())",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "/proc/<ppid>/root",
        "import os\nprint(open(f'/proc/{os.getppid()}/root' + @ROOT_SECRET@).read())",
        ("error",),
        ("FileNotFoundError", "PermissionError"),
    ),
    Attack(
        "/proc/<host ppid>/fd (leaked fd)",
        "print(open('/proc/@HOST_PID@/fd/@LEAKED_FD@').read())",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "/proc/self/fd (leaked fd)",
        "print(open('/proc/self/fd/@LEAKED_FD@').read())",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "read the leaked fd",
        "import os\nprint(os.read(@LEAKED_FD@, 100))",
        ("error",),
        ("Bad file descriptor",),
    ),
    Attack(
        "prctl raise ambient capability",
        LIBC + "r = libc.prctl(47, 2, 2, 0, 0)  # PR_CAP_AMBIENT_RAISE CAP_DAC_READ_SEARCH\n" + RAISE,
        ("error",),
        ("Operation not permitted",),
    ),
    Attack(
        "capset all capabilities",
        LIBC
        + "hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)\ndata = (ctypes.c_uint32 * 6)(*([0xFFFFFFFF] * 6))\n"
        "r = libc.capset(hdr, data)\n" + RAISE,
        ("error",),
        ("Operation not permitted",),
    ),
    Attack(
        "capsh",
        "import subprocess\nsubprocess.run(['capsh', '--caps=cap_dac_read_search+eip', '--', '-c', 'cat ' + @ROOT_SECRET@],"
        " check=True)",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "a new user namespace through bwrap",
        "import subprocess, sys\nsubprocess.run(['/usr/bin/bwrap', '--unshare-user', '--ro-bind', '/', '/', sys.executable,"
        " '-c', 'print(1)'], check=True)",
        ("error",),
        ("CalledProcessError", "FileNotFoundError"),
    ),
    Attack(
        "a new user namespace through unshare",
        LIBC + "r = libc.unshare(0x10000000)  # CLONE_NEWUSER\n" + RAISE,
        ("error",),
        ("Operation not permitted",),
    ),
    Attack(
        "write outside (host folder)",
        "open(@OUTSIDE@ + '/pwned', 'w').write('x')",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack("write /", "open('/pwned', 'w').write('x')", ("error",), ("Read-only file system",)),
    Attack(
        "write /tmp",
        "open('/tmp/pwned', 'w').write('x')",
        ("error",),
        ("Read-only file system", "FileNotFoundError"),
    ),
    Attack(
        "write /dev/shm", "open('/dev/shm/pwned', 'w').write('x')", ("error",), ("Read-only file system",)
    ),
    Attack(
        "write site-packages",
        "import os\nd = __import__('sysconfig').get_path('purelib')\nopen(os.path.join(d, 'pwned.py'), 'w').write('x')",
        ("error",),
        ("Read-only file system", "FileNotFoundError"),
    ),
    Attack(
        "write the interpreter",
        "import sys\nopen(sys.executable, 'ab').write(b'x')",
        ("error",),
        ("Read-only file system", "PermissionError"),
    ),
    Attack(
        "remount the tree writable",
        LIBC + "r = libc.mount(None, b'/', None, 0x20 | 0x1000, None)  # MS_REMOUNT|MS_BIND\n" + RAISE,
        ("error",),
        ("Operation not permitted",),
    ),
    Attack(
        "tcp to the host's loopback server",
        "import socket\nsocket.create_connection(('127.0.0.1', @PORT@), timeout=2).sendall(b'@TOKEN@')",
        ("error",),
        ("ConnectionRefusedError", "unreachable"),
    ),
    Attack(
        "abstract unix socket of the host",
        "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect(@ABSTRACT@)\ns.sendall(b'@TOKEN@')",
        ("error",),
        ("ConnectionRefusedError",),
    ),
    Attack(
        "tcp to the internet",
        "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=2)",
        ("error",),
        ("unreachable",),
    ),
    Attack(
        "fork bomb",
        "import os, sys\ncode = 'import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n"
        "        pass'\nwhile True:\n    try:\n        if os.fork() == 0:\n"
        "            os.execv(sys.executable, [sys.executable, '-c', code, '@TOKEN@'])\n    except OSError:\n        pass",
        ("timeout",),
        kw=(("timeout_s", 1.5), ("nproc", 8)),
    ),
    Attack(
        "fill the disk",
        "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'x' * (4 << 20))\n    i += 1",
        ("error",),
        ("No space left on device",),
        kw=(("disk_mb", 16),),
    ),
    Attack("ptrace the namespace's pid 1", PTRACE.format(pid=1), ("error",), ("Operation not permitted",)),
    Attack(
        "ptrace the host parent", PTRACE.format(pid="@HOST_PID@"), ("error",), ("Operation not permitted",)
    ),
    Attack(
        "ptrace its own child",
        LIBC + "import time\npid = os.fork()\nif pid == 0:\n    time.sleep(5)\n    os._exit(0)\n"
        "r = libc.ptrace(16, pid, 0, 0)\n" + RAISE,
        ("error",),
        ("Operation not permitted",),
        kw=(("timeout_s", 4),),
    ),
    Attack(
        "daemonise past the timeout (setsid + double fork)",
        "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', {SLEEPER!r}, '@TOKEN@'])\n    os._exit(0)\n"
        "while True:\n    time.sleep(0.05)",
        ("timeout",),
        kw=(("timeout_s", 1),),
    ),
    Attack(
        "daemonise and exit",
        "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', {SLEEPER!r}, '@TOKEN@'])\n    os._exit(0)\n"
        "time.sleep(0.3)",
        ("ok",),
    ),
    Attack(
        "leave a process behind",
        f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {SLEEPER!r}, '@TOKEN@'])\ntime.sleep(0.3)",
        ("ok",),
    ),
    Attack(
        "write code into pid 1 (bwrap's reaper: no rlimits) through /proc/1/mem",
        "import os\nfound = [p for p in ('/proc/1/task/1/mem', '/proc/1/mem') if os.path.exists(p)]\n"
        "os.open(found[0] if found else '/proc/1/mem', os.O_RDWR)",
        ("error",),
        ("FileNotFoundError",),
    ),
    Attack(
        "memfd pages beyond the memory limit",
        "import os\nfds = [os.memfd_create(f'm{i}') for i in range(8)]\nfor fd in fds:\n"
        "    for _ in range(4):\n        os.write(fd, b'x' * (4 << 20))",
        ("error",),
        ("Operation not permitted",),
        kw=(("memory_mb", 64),),
    ),
    Attack(
        "System V shared memory beyond the memory limit (detached segments)",
        LIBC + "libc.shmat.restype = ctypes.c_void_p\nfor _ in range(6):\n"
        "    sid = libc.shmget(0, ctypes.c_size_t(32 << 20), 0o1600)\n    if sid < 0:\n"
        "        e = ctypes.get_errno()\n        raise OSError(e, os.strerror(e))\n"
        "    addr = libc.shmat(sid, None, 0)\n    ctypes.memset(addr, 1, 32 << 20)\n    libc.shmdt(ctypes.c_void_p(addr))",
        ("error",),
        ("Operation not permitted",),
        kw=(("memory_mb", 96),),
    ),
    Attack(
        "System V message queues (kernel memory outside the limit)",
        LIBC
        + "if libc.msgget(0, 0o1600) < 0:\n    e = ctypes.get_errno()\n    raise OSError(e, os.strerror(e))",
        ("error",),
        ("Operation not permitted",),
    ),
    Attack(
        "reserve the host's disk through stdout (fallocate KEEP_SIZE: no RLIMIT_FSIZE)",
        LIBC + "r = libc.fallocate(1, 1, ctypes.c_long(0), ctypes.c_long(1 << 30))  # 1 GiB\n" + RAISE,
        ("error",),
        ("Operation not supported",),
    ),
    Attack(
        "kill the host parent",
        "import os, signal\nos.kill(@HOST_PID@, signal.SIGKILL)",
        ("error",),
        ("ProcessLookupError",),
    ),
]


def _render(code: str, ctx: dict) -> str:
    for key, value in ctx.items():
        code = code.replace(
            f"@{key}@", value if key in ("HOST_PID", "LEAKED_FD", "PORT", "TOKEN") else repr(value)
        )
    return code


def survivors(token: str) -> list[int]:
    """Processes anywhere on the machine whose command line carries ``token``."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    if token.encode() in fh.read():
                        found.append(int(name))
            except OSError:
                continue
    return found


@pytest.fixture(scope="module")
def world():
    """Secrets outside the sandbox (root-only 0600 and world-readable), a folder for writes, an fd leaked by
    this process, a TCP server on 127.0.0.1 and an abstract unix socket server."""
    outside = Path(tempfile.mkdtemp(prefix="arcflow-attack-"))
    outside.chmod(0o755)
    root_secret, world_secret = outside / "root-only.txt", outside / "world.txt"
    root_secret.write_text(SECRET)
    root_secret.chmod(0o600)
    world_secret.write_text(SECRET)
    world_secret.chmod(0o644)
    opened = os.open(root_secret, os.O_RDONLY)
    leaked = fcntl.fcntl(opened, fcntl.F_DUPFD, 100)  # high: no descriptor of the sandboxed program has it
    os.close(opened)
    os.set_inheritable(leaked, True)
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)
    tcp.setblocking(False)
    abstract = "\0arcflow-attack-" + uuid.uuid4().hex
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(abstract)
    unix.listen(16)
    unix.setblocking(False)
    ctx = {
        "ROOT_SECRET": str(root_secret),
        "WORLD_SECRET": str(world_secret),
        "OUTSIDE": str(outside),
        "HOST_PID": str(os.getpid()),
        "LEAKED_FD": str(leaked),
        "PORT": str(tcp.getsockname()[1]),
        "ABSTRACT": abstract,
    }
    yield {"ctx": ctx, "servers": (tcp, unix), "outside": outside, "leaked": leaked}
    tcp.close()
    unix.close()
    os.close(leaked)
    shutil.rmtree(outside, ignore_errors=True)


def _check(attack: Attack, res: dict, audit: bool, token: str, world: dict) -> None:
    where = f"{attack.name} (audit={audit}): {res}"
    assert SECRET not in res["stdout"] + res["stderr"], where
    assert not survivors(token), f"{where}: processes survived the run"
    for server in world["servers"]:
        with pytest.raises(BlockingIOError):
            server.accept()
    assert sorted(p.name for p in world["outside"].iterdir()) == ["root-only.txt", "world.txt"], where
    if audit:  # the hook may stop it first; it must not make it succeed
        assert res["status"] in (*attack.statuses, "forbidden"), where
    else:
        assert res["status"] in attack.statuses, where
        if attack.stderr:
            assert any(s in res["stderr"] for s in attack.stderr), where


def _as_dict(res) -> dict:
    return {"status": res.status, "stdout": res.stdout, "stderr": res.stderr, "returncode": res.returncode}


@pytest.mark.parametrize("audit", [False, True], ids=["kernel-only", "with-audit-hook"])
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_fails(attack: Attack, audit: bool, world: dict) -> None:
    token = "arcflow-token-" + uuid.uuid4().hex
    res = run_python(_render(attack.code, {**world["ctx"], "TOKEN": token}), audit=audit, **dict(attack.kw))
    _check(attack, _as_dict(res), audit, token, world)


@pytest.mark.parametrize(
    "code",
    [
        "def add(a, b):\n    return a - b\nimport sys\nsys.exit(0)",
        "def add(a, b):\n    return a - b\nimport os\nos._exit(0)",
        "def add(a, b):\n    raise SystemExit(0)",
    ],
    ids=["sys.exit(0) before the tests", "os._exit(0) before the tests", "SystemExit(0) in the function"],
)
def test_exit_zero_before_the_tests_does_not_pass(code: str) -> None:
    """A code reward must not pass a wrong solution that ends the program with status 0 before its tests ran."""
    tests = "def check(f):\n    assert f(1, 2) == 3"
    assert run_code_tests(code, tests, "add", timeout_s=5, memory_mb=256) == (
        False,
        "error: the program exited 0 before its tests had run to the end",
    )
    assert run_code_tests("def add(a, b):\n    return a + b", tests, "add", timeout_s=5, memory_mb=256) == (
        True,
        "passed",
    )


RUNNER = """
import json, os, sys
from concurrent.futures import ThreadPoolExecutor
sys.path.insert(0, sys.argv[1])
from data_pipes.reasoning.sandbox import run_python
spec = json.load(open(sys.argv[2]))
ctx = dict(spec["ctx"], HOST_PID=str(os.getpid()))
def attack(a):
    code = a["code"]
    for key, value in dict(ctx, TOKEN=a["token"]).items():
        code = code.replace("@" + key + "@", value if key in ("HOST_PID", "LEAKED_FD", "PORT", "TOKEN") else repr(value))
    r = run_python(code, audit=False, **a["kw"])
    return a["name"], {"status": r.status, "stdout": r.stdout, "stderr": r.stderr, "returncode": r.returncode,
                       "layers": list(r.layers), "uid": os.getuid()}
with ThreadPoolExecutor(4) as pool:
    print(json.dumps(dict(pool.map(attack, spec["attacks"]))))
"""


def _unprivileged_python(tmp: Path) -> str | None:
    """An interpreter ``nobody`` can run as itself (ours, else the system's), or None. Ours under a folder it
    cannot enter (pyenv under a 0700 /root) still execs, but then loads the system's libpython: the version
    check catches that."""
    for exe, want in ((sys.executable, sys.version), ("/usr/bin/python3", None)):
        probe = subprocess.run(
            [*_drop(), exe, "-I", "-c", "import json, resource, select, sys; print(sys.version)"],
            capture_output=True,
            text=True,
            cwd=tmp,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == (want or probe.stdout).strip():
            return exe
    return None


def _drop() -> list[str]:
    return [shutil.which("setpriv") or "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def test_attacks_fail_as_an_unprivileged_user(world: dict, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        assert os.geteuid() != 0  # already unprivileged: test_attack_fails covers this user
        pytest.skip("the suite already runs unprivileged (not root): test_attack_fails covers it")
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is missing: cannot switch to an unprivileged user")
    tmp = Path(tempfile.mkdtemp(prefix="arcflow-unpriv-"))
    try:
        tmp.chmod(0o755)
        pkg = tmp / "data_pipes" / "reasoning"
        pkg.mkdir(parents=True)
        for init in (tmp / "data_pipes" / "__init__.py", pkg / "__init__.py"):
            init.write_text("")
        for src in (REPO / "data_pipes" / "reasoning").glob("sandbox*.py"):
            shutil.copy(src, pkg / src.name)
        for p in [tmp, *tmp.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        exe = _unprivileged_python(tmp)
        if exe is None:
            pytest.skip(
                f"no interpreter executable by uid {NOBODY} ({sys.executable} lies under a folder it cannot enter)"
            )
        tokens = {a.name: "arcflow-token-" + uuid.uuid4().hex for a in ATTACKS}
        spec = {
            "ctx": world["ctx"],
            "attacks": [
                {"name": a.name, "code": a.code, "kw": dict(a.kw), "token": tokens[a.name]} for a in ATTACKS
            ],
        }
        (tmp / "spec.json").write_text(json.dumps(spec))
        (tmp / "runner.py").write_text(RUNNER)
        for p in (tmp / "spec.json", tmp / "runner.py"):
            p.chmod(0o644)
        done = subprocess.run(
            [*_drop(), exe, "-I", str(tmp / "runner.py"), str(tmp), str(tmp / "spec.json")],
            capture_output=True,
            text=True,
            cwd=tmp,
            pass_fds=[world["leaked"]],  # leaked to the runner too: the sandbox must not see it
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results = json.loads(done.stdout)
        for attack in ATTACKS:
            res = results[attack.name]
            assert res["uid"] == NOBODY and "uid" not in res["layers"], res
            _check(attack, res, False, tokens[attack.name], world)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
