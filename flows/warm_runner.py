"""A warm process for `arcflow run` next to the local server: Prefect, the kinds and the CLI already imported.

Every `arcflow run` in a fresh interpreter spends seconds importing Prefect (its settings models alone take about a
second) and every node kind, whatever it then runs; for a cached rerun or a small node that is most of the time.
`arcflow server start` therefore also starts this runner. It imports all of that once, then waits on a Unix socket
(``runner.sock`` in the server's state folder). `arcflow run` (the console script, :func:`flows.launch.main`) hands
it the command line, the working directory, the environment and its own stdin/stdout/stderr (file descriptors passed
over the socket), and the runner forks a child that runs the command exactly as the CLI would, writing straight to
the user's terminal. Ctrl-C in the terminal is forwarded to the child; its exit code is the command's.

The child is a fresh fork, so nothing leaks from one run into the next. The runner is bypassed (the command runs
the usual way) whenever its imports could differ from a fresh process's: a project source file changed since it
started, or a package was installed or removed (it then restarts itself on the new code); the command sets Prefect
settings of its own (``PREFECT_*`` variables other than the home); or it asks for ``-v``. The parent never starts a
thread, an event loop or a connection before forking.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

PROJECT_PACKAGES = ("flows", "tasks", "data_pipes", "model")
MAX_HEADER = 1 << 20


def socket_path(state_dir: Path) -> Path:
    return state_dir / "runner.sock"


def _project_files() -> dict[str, tuple[int, int]]:
    """mtime and size of every imported project module, plus the kind folder (a new kind is a new file)."""
    out: dict[str, tuple[int, int]] = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and (name.split(".")[0] in PROJECT_PACKAGES or name == "__main__"):
            try:
                st = os.stat(path)
            except OSError:
                continue
            out[path] = (st.st_mtime_ns, st.st_size)
    import tasks

    for folder in tasks.__path__:
        out[folder] = (os.stat(folder).st_mtime_ns, 0)
    for folder in sys.path:  # a package installed, upgraded or removed changes its site-packages folder
        if folder.endswith("site-packages") and os.path.isdir(folder):
            out[folder] = (os.stat(folder).st_mtime_ns, 0)
    return out


def _fresh(snapshot: dict[str, tuple[int, int]]) -> bool:
    for path, (mtime, size) in snapshot.items():
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_mtime_ns != mtime or (size and st.st_size != size):
            return False
    return True


def _preload() -> None:
    """What a run imports, so that a forked child has it for free."""
    import flows.cli  # noqa: F401  (typer, rich, validation)
    import flows.cli_progress  # noqa: F401
    import flows.engine  # noqa: F401
    import flows.prefect_flow  # noqa: F401  (prefect)
    from tasks.registry import kind_names

    kind_names()  # every kind module


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    data = b""
    while not data.endswith(b"\n"):
        msg, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(3 * fds.itemsize))
        if not msg:
            raise ConnectionError("client went away")
        data += msg
        if len(data) > MAX_HEADER:
            raise ValueError("request too large")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return json.loads(data), list(fds)


def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the client's process (its fds, cwd, env, argv) and run the CLI."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = request["argv"]
        from rich.console import Console

        import flows.cli

        flows.cli.console = Console()  # detect the user's terminal (colours, width), not the runner's
        flows.cli.err = Console(stderr=True)
        try:
            flows.cli.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            code = 130
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - the terminal may be gone; the exit code still matters
            pass
        try:
            _send(conn, {"exit": code})
        finally:
            os._exit(code)


def serve(state_dir: Path) -> None:
    """Preload, then fork one child per request until stopped. Restarts itself when project code changes."""
    _preload()
    snapshot = _project_files()
    path = socket_path(state_dir)
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    os.chmod(path, 0o600)
    server.listen(16)
    server.settimeout(1.0)
    while True:
        while True:  # reap finished children (also those forked before a restart), logging what each cost
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            cpu = usage.ru_utime + usage.ru_stime
            sys.stderr.write(
                f"{time.strftime('%H:%M:%S')} pid {pid}: exit {os.waitstatus_to_exitcode(status)}, cpu {cpu:.2f} s\n"
            )
            sys.stderr.flush()
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        conn.settimeout(None)
        try:
            request, fds = _recv_request(conn)
        except (OSError, ValueError):
            conn.close()
            continue
        if not _fresh(snapshot) or len(fds) != 3:
            _send(conn, {"stale": True})
            conn.close()
            for fd in fds:
                os.close(fd)
            if not _fresh(snapshot):  # reload the new code: a fresh interpreter, same arguments
                server.close()
                path.unlink(missing_ok=True)
                os.execv(sys.executable, [sys.executable, "-m", "flows.warm_runner", str(state_dir)])
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            server.close()
            _child(conn, request, fds)
        sys.stderr.write(f"{time.strftime('%H:%M:%S')} pid {pid}: arcflow {' '.join(request['argv'][1:])}\n")
        sys.stderr.flush()
        for fd in fds:
            os.close(fd)
        try:
            _send(conn, {"pid": pid})
        except OSError:
            pass
        conn.close()


def forward(state_dir: Path, argv: list[str], env: dict[str, str], timeout_s: float = 2.0) -> int | None:
    """Run ``argv`` in the warm runner; its exit code, or None when the runner is absent or declines (run the
    command the usual way then)."""
    path = socket_path(state_dir)
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout_s)
    try:
        conn.connect(str(path))
        header = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env}).encode() + b"\n"
        fds = array.array("i", [0, 1, 2])
        conn.sendmsg([header], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
        reader = conn.makefile("rb")
        first = json.loads(reader.readline() or b"{}")
    except (OSError, ValueError):
        conn.close()
        return None
    if "pid" not in first:
        conn.close()
        return None
    child = int(first["pid"])

    def relay(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, relay)
    conn.settimeout(None)
    while True:
        try:
            line = reader.readline()
            break
        except InterruptedError:
            continue
    conn.close()
    try:
        return int(json.loads(line)["exit"])
    except (ValueError, KeyError, TypeError):
        sys.stderr.write("arcflow: the run ended without an exit status (killed?)\n")
        return 1


def main() -> None:
    state_dir = Path(sys.argv[1])
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    started = time.monotonic()
    try:
        serve(state_dir)
    finally:
        socket_path(state_dir).unlink(missing_ok=True)
        sys.stderr.write(f"warm runner stopped after {time.monotonic() - started:.0f}s\n")


if __name__ == "__main__":
    main()
