"""Run a training launcher so that it, and every rank it starts, ends when the process that started it is gone.

A training node starts the DeepSpeed launcher (or torchrun) as a subprocess of `arcflow run`; killed with SIGKILL,
`arcflow run` cleans up nothing, and the launcher and its ranks, reparented to init, would go on training and
writing checkpoints. ``PR_SET_PDEATHSIG`` does not fit: the launcher is started from a worker thread, and the
kernel sends that signal when the creating *thread* ends, not the process. So :func:`model.train.launch.
launch_command` (given ``watch_parent``) puts this file in front of the launcher's argv (run by its path: it needs
only the standard library; ``-P`` keeps its folder off ``sys.path``)::

    python -P model/train/launch_watchdog.py PARENT_PID -- LAUNCHER_ARGV...

It starts the launcher in a process group of its own (the ranks inherit it) and waits for it, exiting with its
exit code (128 + N for a launcher ended by signal N). A daemon thread checks twice a second that this process's
parent is still ``PARENT_PID``; once it is not (the parent died and this process was reparented, or it was gone
before the check began), the launcher's whole group gets SIGTERM (DeepSpeed's launcher stops its ranks on it), then
SIGKILL :data:`GRACE_S` seconds later should the launcher still run, and this process exits. SIGINT and SIGTERM
sent to this process (a Ctrl-C reaches the run's process group, which the launcher left) go to the launcher's group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

POLL_S = 0.5
GRACE_S = 10.0


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to process group ``pgid``; nothing when the group is gone."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(proc: subprocess.Popen, grace_s: float = GRACE_S) -> None:
    """SIGTERM the group of ``proc`` (its leader), and SIGKILL it should ``proc`` still run ``grace_s`` later; the
    group gets SIGKILL in any case, for ranks that outlive their launcher."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        pass
    signal_group(proc.pid, signal.SIGKILL)


def watch(proc: subprocess.Popen, parent_pid: int, poll_s: float = POLL_S, grace_s: float = GRACE_S) -> None:
    """Block until this process's parent is no longer ``parent_pid`` (or ``proc`` ended), then stop ``proc``'s
    group and exit this process (exit code 1)."""
    while os.getppid() == parent_pid:
        if proc.poll() is not None:
            return
        time.sleep(poll_s)
    stop_group(proc, grace_s)
    os._exit(1)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or not argv[0].isdigit() or argv[1] != "--":
        sys.exit("usage: python -P model/train/launch_watchdog.py PARENT_PID -- ARGV...")
    parent_pid = int(argv[0])
    proc = subprocess.Popen(argv[2:], start_new_session=True)

    def forward(signum: int, _frame: FrameType | None) -> None:
        signal_group(proc.pid, signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    threading.Thread(
        target=watch, args=(proc, parent_pid), name="arcflow-launch-watchdog", daemon=True
    ).start()
    code = proc.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
