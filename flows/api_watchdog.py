"""Run Prefect's ephemeral API server (uvicorn) so that it ends when the `arcflow run` that started it is gone.

Prefect starts its ephemeral API as a child process and stops it at the parent's interpreter exit (atexit); a parent
killed with SIGKILL runs no atexit, and the server, reparented to init, would serve an unused database forever.
``PR_SET_PDEATHSIG`` does not fit: Prefect starts the child from a helper thread (flows/ephemeral_api.py), and the
kernel sends that signal when the creating *thread* ends, not the process. So flows/ephemeral_api.py starts the
server through this file instead (by its path: it needs only the standard library; ``-P`` keeps its folder, whose
modules would shadow the standard library's ``trace``, off ``sys.path``)::

    python -P flows/api_watchdog.py PARENT_PID -m uvicorn ARGS...

A daemon thread checks twice a second that this process's parent is still ``PARENT_PID``; once it is not (the
parent died and this process was reparented, or the parent was gone before the check began), the server gets
SIGTERM, which uvicorn takes as its graceful shutdown, and the process exits at once if that has not ended it
within :data:`GRACE_S` seconds. The server itself runs in this process's main thread as ``python -m uvicorn`` would
(its signal handlers, its exit codes: 3 for a failed start, which Prefect's own start loop looks for).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
import time

POLL_S = 0.5
GRACE_S = 10.0


def watch(parent_pid: int, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> None:
    """Block until this process's parent is no longer ``parent_pid``, then SIGTERM this process and, should it
    still run ``grace_s`` later, exit it at once (exit code 1)."""
    while os.getppid() == parent_pid:
        time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(1)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or not argv[0].isdigit() or argv[1] != "-m":
        sys.exit("usage: python -P flows/api_watchdog.py PARENT_PID -m MODULE [ARGS...]")
    parent_pid, module = int(argv[0]), argv[2]
    threading.Thread(target=watch, args=(parent_pid,), name="arcflow-api-watchdog", daemon=True).start()
    sys.argv = [module, *argv[3:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
