"""The kernel-side layers of the sandbox: which of them this machine allows, and the command line that applies
them.

Probed once per process (``available_layers``), by running a trivial interpreter under each candidate:

* ``uid``: when we are root, the child runs as a fresh, otherwise unused user id (one per run), through
  ``setpriv`` with no supplementary groups, no capabilities and ``no_new_privs``. File permissions then apply
  to it (it cannot write anything it does not own, or read ``/proc/<pid>/environ`` of other users), it cannot
  signal our processes, and ``RLIMIT_NPROC`` (which the kernel does not enforce for root) counts exactly its
  own processes, so fork bombs stop at the limit and every leftover is found and killed by its uid.
* ``uid+read``: as ``uid``, keeping only ``CAP_DAC_READ_SEARCH`` (read and traverse any file) when the Python
  installation itself is not readable by other users (a pyenv under a 0700 ``/root``). Reads outside the
  sandbox are then stopped by the audit hook alone; writes, signals and process limits still by the kernel.
* ``netns``: a new, empty network namespace (``unshare --net``; ``unshare --user --net`` when not root):
  there is no interface but a down loopback, so every connection fails in the kernel.

Missing tools or refused namespaces degrade to fewer layers; ``SandboxResult.layers`` says which ran.
"""

from __future__ import annotations

import functools
import os
import random
import shutil
import signal
import subprocess
import sys

UID_BASE = 1_700_000_000  # far above any real account; one fresh uid per run below UID_BASE + UID_SPAN
UID_SPAN = 100_000_000


@functools.lru_cache(maxsize=1)
def available_layers() -> frozenset[str]:
    """Which kernel layers work here (cached for the process)."""
    layers: set[str] = set()
    unshare, setpriv = shutil.which("unshare"), shutil.which("setpriv")
    if unshare and _probe(netns_prefix(unshare, os.geteuid() == 0)):
        layers.add("netns")
    if os.geteuid() == 0 and setpriv:
        uid = fresh_uid()
        if _probe(uid_prefix(setpriv, uid, keep_read=False)):
            layers.add("uid")
        elif _probe(uid_prefix(setpriv, uid, keep_read=True)):
            layers.add("uid+read")
    return frozenset(layers)


def _probe(prefix: list[str]) -> bool:
    """Whether ``prefix`` runs *our* interpreter: a uid that cannot read the installation may still exec the
    binary (the path is resolved before privileges drop) and then silently load the system's libpython."""
    try:
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", "import sys, json, resource; print(sys.version)"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={},
            cwd="/",
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and done.stdout.decode().strip() == sys.version.strip()


def fresh_uid() -> int:
    return UID_BASE + random.SystemRandom().randrange(UID_SPAN)


def netns_prefix(unshare: str, root: bool) -> list[str]:
    return [unshare, "--net", "--"] if root else [unshare, "--user", "--net", "--"]


def uid_prefix(setpriv: str, uid: int, keep_read: bool) -> list[str]:
    caps = "-all,+dac_read_search" if keep_read else "-all"
    cmd = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs"]
    cmd += [f"--inh-caps={caps}", f"--bounding-set={caps}"]
    if keep_read:
        cmd.append("--ambient-caps=+dac_read_search")
    return [*cmd, "--"]


def command_prefix(use: frozenset[str], uid: int | None) -> list[str]:
    """The wrapper commands that apply the chosen layers, outermost first (the namespace is made as root,
    then privileges are dropped)."""
    prefix: list[str] = []
    if "netns" in use:
        prefix += netns_prefix(shutil.which("unshare") or "unshare", os.geteuid() == 0)
    if uid is not None and ("uid" in use or "uid+read" in use):
        prefix += uid_prefix(shutil.which("setpriv") or "setpriv", uid, keep_read="uid+read" in use)
    return prefix


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_uid(uid: int, rounds: int = 5) -> int:
    """SIGKILL every process owned by ``uid`` (the run's own uid: whatever escaped its process group).
    Repeats while it finds some, since a dying fork bomb may still be spawning; returns how many."""
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
