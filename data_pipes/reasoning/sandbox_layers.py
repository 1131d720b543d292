"""The sandbox's kernel boundary: the bubblewrap (``bwrap``) command line that runs one execution.

Every execution gets, from ``bwrap`` (Debian package ``bubblewrap``):

* fresh user, PID, network, IPC, UTS, cgroup and mount namespaces; further user namespaces disabled inside;
* ``--die-with-parent`` and ``--new-session``; all capabilities dropped (``--cap-drop ALL``), ``no_new_privs``;
* a root file system that is a fresh tmpfs holding only read-only binds of what the interpreter needs (its
  installation, its standard library, the site-packages it may import, the shared libraries, the loader's
  cache), a fresh ``/proc`` of its own PID namespace, a minimal read-only ``/dev``, and a writable, size-limited
  tmpfs work directory (``/sandbox``); nothing else of the machine exists for the child (no ``/home`` or
  ``/work``, of ``/root`` only a pyenv interpreter's own folder, of ``/etc`` only ``ld.so.cache`` and ``alternatives``);
* when the PID namespace's first process dies, the kernel kills everything left in it: daemons included; that
  process (bwrap's reaper, same uid, no rlimits) is hidden (``/proc/1`` covered): no writing code into it through ``/proc/1/mem``.

As root, the run also gets a fresh, otherwise unused uid (one per run): file permissions apply to it on the
read-only binds, and ``RLIMIT_NPROC`` is enforced (the kernel never enforces it for uid 0). An unprivileged
``bwrap`` cannot reach an interpreter under a directory only root may traverse (pyenv under a 0700
``/root``), so as root a privileged ``bwrap`` builds the read-only tree once per process in a mount namespace
kept by a descriptor (``stage_namespace``); each run enters it (``nsenter``), drops to its fresh uid
(``setpriv``) and starts the inner, unprivileged ``bwrap`` that creates every namespace above over that tree.
Not root: one ``bwrap`` does both.

``check_available`` probes this once per process and raises ``SandboxUnavailable`` with what to do when
``bwrap`` is missing or the kernel refuses unprivileged user namespaces.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import threading
from dataclasses import dataclass

from data_pipes.reasoning.sandbox_seccomp import filter_fd

UID_BASE = 1_700_000_000  # far above any real account; one fresh uid per run below UID_BASE + UID_SPAN
UID_SPAN = 100_000_000
WORK = "/sandbox"  # the writable work directory inside
VENV = "/venv"  # where a virtual environment's site-packages appear inside
SYSTEM_PATH = "/usr/bin:/bin"  # searched after PATH for bwrap and setpriv
LAYERS_BASE = ("bwrap", "userns", "pidns", "netns", "ipcns", "utsns", "mountns", "no_caps")


class SandboxUnavailable(RuntimeError):
    """The kernel boundary cannot be set up here (``bwrap`` missing, user namespaces refused)."""


@dataclass(frozen=True)
class Tree:
    """The read-only file tree of the interpreter: (source, destination) binds, (target, link) symlinks, and the
    interpreter's path inside."""

    binds: tuple[tuple[str, str], ...]
    symlinks: tuple[tuple[str, str], ...]
    python: str


def bwrap_path() -> str:
    found = shutil.which("bwrap", path=f"{os.environ.get('PATH', '')}:{SYSTEM_PATH}")
    if not found:
        raise SandboxUnavailable(
            "the code sandbox needs bubblewrap: `bwrap` is not on PATH. Install Debian's `bubblewrap` package "
            "(apt-get install -y bubblewrap; ./scripts/setup does it when run as root)"
        )
    return found


def nsenter_path() -> str:
    found = shutil.which("nsenter", path=f"{os.environ.get('PATH', '')}:{SYSTEM_PATH}")
    if not found:
        raise SandboxUnavailable("running the sandbox as root needs `nsenter` (Debian package util-linux)")
    return found


def setpriv_path() -> str:
    found = shutil.which("setpriv", path=f"{os.environ.get('PATH', '')}:{SYSTEM_PATH}")
    if not found:
        raise SandboxUnavailable("running the sandbox as root needs `setpriv` (Debian package util-linux)")
    return found


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@functools.lru_cache(maxsize=2)
def interpreter_tree(site_packages: bool = True) -> Tree:
    """What this interpreter needs, found from its own configuration (not a fixed list): the installation
    folder when it is not the system's (``/usr``), else the standard library folders and the binary; the
    virtual environment's site-packages (at ``/venv``) or the system's dist-packages; the shared libraries."""
    exe = os.path.realpath(sys.executable)
    home = os.path.realpath(sys.base_prefix)
    if not os.access(exe, os.X_OK) or not os.path.isdir(home):
        raise SandboxUnavailable(
            f"the code sandbox binds the interpreter's installation, but uid {os.getuid()} cannot reach "
            f"{sys.executable} -> {exe} (home {home}): run as a user who can read it, or use an interpreter "
            "installed where that user can"
        )
    system_home = home in ("/", "/usr", "/usr/local")
    binds: list[tuple[str, str]] = []
    symlinks: list[tuple[str, str]] = []

    def bind(src: str, dest: str | None = None) -> None:
        dest = dest or src
        if os.path.exists(src) and not any(_under(dest, d) for _, d in binds):
            binds[:] = [(s, d) for s, d in binds if not _under(d, dest)] + [(src, dest)]

    if system_home:
        for key in ("stdlib", "platstdlib"):
            bind(os.path.realpath(sysconfig.get_path(key)))
        bind(exe)
    else:
        bind(home)  # pyenv or a self-built Python: the whole installation folder, nothing above it
        if not _under(exe, home):
            bind(exe)
    venv = os.path.realpath(sys.prefix) if sys.prefix != sys.base_prefix else None
    python = exe
    if venv:
        bind(os.path.join(venv, "pyvenv.cfg"), f"{VENV}/pyvenv.cfg")
        symlinks.append((exe, f"{VENV}/bin/python"))
        python = f"{VENV}/bin/python"
    if site_packages:
        for sp in site.getsitepackages():
            real = os.path.realpath(sp)
            bind(real, VENV + real[len(venv) :] if venv and _under(real, venv) else real)
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for lib in ("/usr/lib", "/lib"):
        if not os.path.islink(lib):
            bind(os.path.join(lib, multiarch) if multiarch else lib)
    for lib in ("/usr/lib64", "/lib64"):
        if not os.path.islink(lib):
            bind(lib)
    bind("/etc/ld.so.cache")
    bind("/etc/alternatives")  # Debian's library symlinks (libblas.so.3, ...) point through it
    for top in ("/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"):
        if os.path.islink(top):
            symlinks.append((os.readlink(top), top))
    return Tree(tuple(binds), tuple(symlinks), python)


def _dirs_for(paths: list[str]) -> list[str]:
    """Every ancestor folder of ``paths``, parents first (created 0755: bwrap's own default is 0700 as root)."""
    out: set[str] = set()
    for p in paths:
        p = os.path.dirname(p)
        while p not in ("/", ""):
            out.add(p)
            p = os.path.dirname(p)
    return sorted(out, key=lambda d: (d.count("/"), d))


def tree_args(tree: Tree, extra_dirs: tuple[str, ...] = ()) -> list[str]:
    dests = [d for _, d in tree.binds] + [link for _, link in tree.symlinks] + [f"{d}/." for d in extra_dirs]
    args: list[str] = []
    for d in _dirs_for(dests):
        args += ["--perms", "0755", "--dir", d]
    for src, dest in tree.binds:
        args += ["--ro-bind", src, dest]
    for target, link in tree.symlinks:
        args += ["--symlink", target, link]
    return args


def namespace_args(
    disk_bytes: int, files: list[tuple[int, str]], info_fd: int | None, seccomp_fd: int | None
) -> list[str]:
    """The unprivileged ``bwrap`` part: namespaces, capabilities, ``/proc``, ``/dev``, the work tmpfs and the
    files copied into it from open descriptors."""
    args = ["--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session"]
    args += ["--cap-drop", "ALL", "--hostname", "sandbox", "--proc", "/proc", "--dev", "/dev"]
    # pid 1 is bwrap's reaper: the program's uid, but none of its rlimits. Its /proc/1/mem would let the program
    # write code into it (ptrace-access rules, not the ptrace syscall seccomp denies): hidden under an empty,
    # read-only tmpfs (the program cannot unmount it: no capabilities, seccomp)
    args += ["--perms", "0555", "--size", "4096", "--tmpfs", "/proc/1", "--remount-ro", "/proc/1"]
    args += ["--remount-ro", "/dev", "--size", str(disk_bytes), "--perms", "0755", "--tmpfs", WORK]
    made: set[str] = set()
    for fd, rel in files:
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in made:
                made.add(sub)
                args += ["--perms", "0755", "--dir", f"{WORK}/{sub}"]
        args += ["--perms", "0644", "--file", str(fd), f"{WORK}/{rel}"]
    if info_fd is not None:
        args += ["--info-fd", str(info_fd)]
    if seccomp_fd is not None:
        args += ["--seccomp", str(seccomp_fd)]
    # the root itself is a tmpfs bwrap made (unprivileged: owned by the sandbox's uid): read-only, last
    return [*args, "--remount-ro", "/", "--chdir", WORK, "--clearenv"]


def command(
    argv: list[str],
    env: dict[str, str],
    uid: int | None,
    disk_bytes: int,
    files: list[tuple[int, str]],
    info_fd: int | None,
    seccomp_fd: int | None = None,
    site_packages: bool = True,
) -> list[str]:
    """The whole command line: ``argv`` (whose first element is replaced by the interpreter's path inside)
    under bwrap, nested through ``setpriv`` to ``uid`` when that is given (root)."""
    bwrap, tree = bwrap_path(), interpreter_tree(site_packages)
    inner = namespace_args(disk_bytes, files, info_fd, seccomp_fd)
    for key, value in env.items():
        inner += ["--setenv", key, value]
    inner += ["--", tree.python, *argv[1:]]
    if uid is None:
        return [bwrap, *tree_args(tree), *inner]
    ns, root = stage_namespace()
    me = f"/proc/{os.getpid()}/fd"
    enter = [nsenter_path(), f"--mount={me}/{ns}", f"--root={me}/{root}", "--"]
    drop = [setpriv_path(), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs"]
    drop += ["--inh-caps=-all", "--"]
    return [*enter, *drop, bwrap, "--ro-bind", "/", "/", *inner]


_STAGE_LOCK = threading.Lock()
_STAGE: dict[str, tuple[int, int]] = {}


def _after_fork() -> None:  # a fork while another thread held the lock must not leave the child deadlocked
    global _STAGE_LOCK
    _STAGE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
READY = "import os, sys; os.write(1, str(os.getpid()).encode() + b'\\n'); os.read(0, 1)"


def stage_namespace() -> tuple[int, int]:
    """Descriptors (ours, close-on-exec) of a mount namespace holding the read-only tree and of the tree's root
    in it, built once per process by a privileged ``bwrap`` and kept alive by the descriptors alone (root only).

    Each run as root then enters it (``nsenter``), drops to its fresh uid (``setpriv``) and starts the inner,
    unprivileged ``bwrap`` there: the tree is reachable to that uid although the interpreter may lie under a
    0700 ``/root``, and is not built again for every run."""
    with _STAGE_LOCK:
        if "fds" in _STAGE:
            return _STAGE["fds"]
        bwrap, tree = bwrap_path(), interpreter_tree(True)
        helpers = ((bwrap, bwrap), (setpriv_path(), setpriv_path()))
        staged = Tree(tree.binds + helpers, tree.symlinks, tree.python)
        cmd = [bwrap, "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        # /tmp: the inner bwrap's own mount point; the inner takes its device nodes from this /dev, and the kernel
        # lets it mount a fresh /proc only where a complete one is visible: both are covered inside by its own
        cmd += tree_args(staged, extra_dirs=("/tmp", "/proc", WORK))
        cmd += ["--dev", "/dev", "--bind", "/proc", "/proc", "--", tree.python, "-I", "-S", "-c", READY]
        try:  # the helper says its pid once the tree is complete, then waits for our EOF
            helper = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                umask=0o022,
                cwd="/",
            )
        except OSError as exc:
            raise SandboxUnavailable(f"the code sandbox could not start bwrap: {exc}") from exc
        try:
            line = helper.stdout.readline().strip() if helper.stdout else b""
            if not line.isdigit():
                err = helper.stderr.read().decode("utf-8", "replace") if helper.stderr else ""
                raise SandboxUnavailable(
                    f"the code sandbox's bwrap could not build its tree: {err.strip()[-500:]}"
                )
            ns = os.open(f"/proc/{int(line)}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            root = os.open(f"/proc/{int(line)}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        finally:
            helper.communicate()  # EOF: the helper exits; the namespace lives on through ``ns``
        if os.fstat(ns).st_ino == os.stat("/proc/self/ns/mnt").st_ino:
            raise SandboxUnavailable("the code sandbox's bwrap did not make a mount namespace")
        _STAGE["fds"] = (ns, root)
        return ns, root


@functools.lru_cache(maxsize=1)
def check_available() -> tuple[str, ...]:
    """Run a trivial program through the whole boundary once per process; the layers it gives, or
    ``SandboxUnavailable`` saying why and what to do."""
    uid = fresh_uid() if os.geteuid() == 0 else None
    argv = [sys.executable, "-I", "-c", "import sys; print(sys.version)"]
    seccomp = filter_fd()
    cmd = command(argv, {"LANG": "C.UTF-8"}, uid, 1 << 20, [], None, seccomp, site_packages=False)
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            timeout=60,
            check=False,
            umask=0o022,
            cwd="/",
            pass_fds=[] if seccomp is None else [seccomp],
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SandboxUnavailable(f"the code sandbox could not start bwrap: {exc}") from exc
    finally:
        if seccomp is not None:
            os.close(seccomp)
        if uid is not None:
            kill_uid(uid)
    out, err = done.stdout.decode().strip(), done.stderr.decode("utf-8", "replace").strip()
    if done.returncode != 0 or out != sys.version.strip():
        hint = (
            "bwrap runs unprivileged and needs user namespaces: check `sysctl user.max_user_namespaces` (> 0), "
            "`kernel.unprivileged_userns_clone=1` (Debian kernels before 5.10), "
            "`kernel.apparmor_restrict_unprivileged_userns=0` (Ubuntu 23.10+), or a container that allows them"
        )
        raise SandboxUnavailable(
            f"the code sandbox's bwrap probe failed (exit {done.returncode}): {err[-500:] or out[-200:]}; {hint}"
        )
    return LAYERS_BASE + (("seccomp",) if seccomp is not None else ()) + (("uid",) if uid is not None else ())


def fresh_uid() -> int:
    return UID_BASE + random.SystemRandom().randrange(UID_SPAN)


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_uid(uid: int, rounds: int = 5) -> int:
    """SIGKILL every process owned by ``uid`` (a run's own uid, as root); repeats while it finds some, since a
    dying fork bomb may still be spawning; returns how many."""
    killed = 0
    for _ in range(rounds):
        found = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{name}").st_uid == uid:
                    os.kill(int(name), signal.SIGKILL)
                    found += 1
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        killed += found
        if not found:
            break
    return killed
