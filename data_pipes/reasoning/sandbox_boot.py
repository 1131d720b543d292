"""The sandbox's bootstrap: the first (trusted) code the sandboxed interpreter runs, before the user's code.

The parent passes this file's source with ``python -I -B -c`` and its settings as ``key=value`` arguments
(``config_args``; no ``json`` import: it would pull ``re`` and ``enum`` into every run's start-up). It

1. lowers its resource limits (memory, CPU seconds, processes, file size, open files, no core dumps): the
   kernel enforces them and an unprivileged process cannot raise them again;
2. compiles ``main.py`` from the sandbox directory;
3. installs an audit hook (PEP 578) that ends the process with exit code ``EXIT_FORBIDDEN`` and a
   ``arcflow-sandbox: forbidden:`` line on stderr when the code tries something outside the sandbox: opening a
   path outside the sandbox directory (reads are allowed under the Python installation), any socket call,
   signalling another process, starting a process, loading or calling native code through ``ctypes``,
   walking the garbage collector (the way to reach this hook's state);
4. runs the user's code as ``__main__``.

It imports only the standard library and must stay self-contained: it runs in a process that cannot import
the project. The audit hook is only a second line, in-process (a determined program can look for holes in
it, and ``_posixsubprocess.fork_exec`` raises no audit event at all on 3.11); the boundary is the kernel's, set
up by the parent through bubblewrap (``sandbox_layers``), and nothing depends on this hook.
"""

from __future__ import annotations

import os
import resource
import sys

EXIT_FORBIDDEN = 86
MARK = "arcflow-sandbox: forbidden:"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_PATH_EVENTS_WRITE = {
    "os.mkdir": (0,),
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.rename": (0, 1),
    "os.replace": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "os.chflags": (0,),
    "os.lchflags": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
    "os.chdir": (0,),
}
_PATH_EVENTS_READ = {"os.listdir": 0, "os.scandir": 0, "os.getxattr": 0, "os.listxattr": 0}
_PROCESS_EVENTS = {
    "os.fork",
    "os.forkpty",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.system",
    "os.startfile",
    "subprocess.Popen",
    "pty.spawn",
}
_GC_EVENTS = {"gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys._current_frames"}


def set_limits(limits: dict[str, int]) -> None:
    """Lower soft and hard limits; ``0`` memory means no memory limit."""
    mem = limits["memory_bytes"]
    if mem:
        for res in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
            resource.setrlimit(res, (mem, mem))
    cpu = limits["cpu_s"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["fsize_bytes"], limits["fsize_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def make_hook(sandbox: str, read_roots: tuple[str, ...], allow_processes: bool):  # noqa: C901 - one dispatch
    """The audit hook. Its state lives in closure cells of immutable values."""
    own_pid = os.getpid()
    realpath, fsdecode, getpid = os.path.realpath, os.fsdecode, os.getpid
    sep = os.sep
    devices = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")

    def deny(what: str) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - best effort before the hard exit
                pass
        try:
            os.write(2, f"\n{MARK} {what}\n".encode("utf-8", "replace"))
        finally:
            os._exit(EXIT_FORBIDDEN)

    def resolve(path: object) -> str | None:
        if isinstance(path, int) or path is None:
            return None  # an already open descriptor: it was checked when opened
        return realpath(fsdecode(path))  # type: ignore[arg-type]

    def inside(path: str, roots: tuple[str, ...]) -> bool:
        return any(path == r or path.startswith(r + sep) for r in roots)

    def check_path(event: str, path: object, write: bool) -> None:
        real = resolve(path)
        if real is None or inside(real, (sandbox,)) or real in devices:
            return
        if not write and inside(real, read_roots):
            return
        deny(f"{event} {'write' if write else 'read'} outside the sandbox: {real!r}")

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            write = bool(flags & _WRITE_FLAGS) or (isinstance(mode, str) and any(c in mode for c in "wax+"))
            check_path(event, path, write)
        elif event in _PATH_EVENTS_READ:
            check_path(event, args[_PATH_EVENTS_READ[event]], False)
        elif event in _PATH_EVENTS_WRITE:
            for i in _PATH_EVENTS_WRITE[event]:
                check_path(event, args[i], True)
        elif event.startswith("socket."):
            deny(f"network: {event}{args!r}"[:300])
        elif event in ("os.kill", "os.killpg"):
            if not (event == "os.kill" and args[0] == getpid() == own_pid):
                deny(f"{event}{args!r}: signalling another process")
        elif event in _PROCESS_EVENTS:
            if not allow_processes:
                deny(f"{event}: starting processes")
        elif event.startswith("ctypes."):
            if not (event == "ctypes.dlopen" and args[0] is None):
                deny(f"{event}: native code")
        elif event in _GC_EVENTS:
            deny(f"{event}: introspection of the interpreter")

    return hook


LIMIT_KEYS = ("memory_bytes", "cpu_s", "nproc", "fsize_bytes", "nofile")


def config_args(cfg: dict) -> list[str]:
    """``cfg`` (dir, main, allow_processes, audit, limits) as the arguments ``main`` reads."""
    flat = {k: v for k, v in cfg.items() if k != "limits"} | cfg["limits"]
    return [f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in flat.items()]


def parse_args(argv: list[str]) -> dict:
    raw = dict(a.split("=", 1) for a in argv)
    return {
        "dir": raw["dir"],
        "main": raw["main"],
        "allow_processes": raw["allow_processes"] == "1",
        "audit": raw["audit"] == "1",
        "limits": {k: int(raw[k]) for k in LIMIT_KEYS},
    }


def main(argv: list[str]) -> None:
    cfg = parse_args(argv)
    sys.dont_write_bytecode = True
    set_limits(cfg["limits"])
    sandbox = os.path.realpath(cfg["dir"])
    with open(os.path.join(sandbox, cfg["main"]), encoding="utf-8") as fh:
        source = fh.read()
    code = compile(source, cfg["main"], "exec")
    # the interpreter's own import path (standard library, site-packages) is readable, nothing else
    read_roots = tuple(os.path.realpath(p) for p in sys.path if p)
    sys.path[:] = [sandbox, *[p for p in sys.path if p]]
    sys.argv = [cfg["main"]]
    hook = make_hook(sandbox, read_roots, bool(cfg["allow_processes"]))
    if cfg["audit"]:
        sys.addaudithook(hook)
    namespace = {"__name__": "__main__", "__file__": cfg["main"], "__builtins__": __builtins__}
    del hook, cfg, source
    exec(code, namespace)  # noqa: S102 - running the user's code is this module's purpose


if __name__ == "__main__":
    main(sys.argv[1:])
