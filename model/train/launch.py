"""The command line that starts a training run of N ranks: the DeepSpeed launcher (default; it also spreads over
the hosts of a hostfile) or torchrun, each running ``python -m model.train.main <spec.json>`` on every rank.

:func:`launch_command` returns the argv and the environment to run it with (``subprocess.Popen(argv, env=env)``);
arcflow's own process code never spawns ranks. On CPU the environment carries ``DS_ACCELERATOR=cpu`` (gloo is
chosen by the entry point) and one OpenMP thread per rank unless told otherwise.

Ranks on the launching host inherit that environment; ranks on the other hosts of a multi-host hostfile get only
what DeepSpeed's runner exports over pdsh/ssh: variables with its own prefixes (``PYTHON``, ``NCCL``, ...) and the
``NAME=VALUE`` lines of its env file (``$DS_ENV_FILE``, else ``.deepspeed_env``, read from the home and the current
directory). For such a launch :func:`launch_command` writes ``deepspeed_env`` beside the spec, holding the lines of
the user's own env files followed by the ``ARCFLOW_*`` variables that are set and the ones set here for ranks
(later lines win), and points ``DS_ENV_FILE`` at it; the user's files are read, never written.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Launcher = Literal["deepspeed", "torchrun"]
ENTRY = "model.train.main"
FORWARD_PREFIX = "ARCFLOW_"
ENV_FILE = "deepspeed_env"
DS_ENV_FILE_DEFAULT = ".deepspeed_env"


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]
    env_file: str | None = None  # the DS_ENV_FILE written for a multi-host launch


def free_port() -> int:
    """A TCP port free on this host now (the rendezvous port of a local run)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_command(
    spec_path: str,
    ranks: int,
    *,
    launcher: Launcher = "deepspeed",
    device: Literal["cpu", "cuda"] = "cpu",
    hostfile: str | None = None,
    master_port: int | None = None,
    threads: int = 1,
    python: str | None = None,
    env: dict[str, str] | None = None,
    entry: str = ENTRY,
    watch_parent: int | None = None,
) -> LaunchPlan:
    """Argv and environment for ``ranks`` ranks per host running ``entry`` (default :data:`ENTRY`; the GRPO
    stage runs ``model.rl.main``) on ``spec_path``. With ``watch_parent`` (the pid of the process that starts it)
    the launcher runs under :mod:`model.train.launch_watchdog`, in a process group of its own with its ranks, all
    stopped once that process is gone (a `kill -9` of `arcflow run`)."""
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    if hostfile is not None and launcher != "deepspeed":
        raise ValueError("a hostfile needs launcher 'deepspeed' (torchrun here runs on one host)")
    py = python or sys.executable
    port = str(master_port or free_port())
    out_env = dict(os.environ if env is None else env)
    for_ranks = {"OMP_NUM_THREADS": str(threads)}
    if device == "cpu":
        for_ranks["DS_ACCELERATOR"] = "cpu"
        for_ranks["CUDA_VISIBLE_DEVICES"] = out_env.get("CUDA_VISIBLE_DEVICES", "")
    out_env.update(for_ranks)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, out_env.get("PYTHONPATH", "")) if p)
    if launcher == "torchrun":
        argv = [py, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(ranks)]
        argv += ["--master_addr", "127.0.0.1", "--master_port", port, "-m", entry, spec_path]
        return LaunchPlan(_watched(argv, py, watch_parent), out_env)
    argv = [py, "-m", "deepspeed.launcher.runner", "--master_port", port]
    env_file = None
    if hostfile is not None:
        argv += ["--hostfile", hostfile]
        if len(hostfile_hosts(hostfile)) > 1:
            env_file = write_env_file(spec_path, out_env, for_ranks)
            out_env["DS_ENV_FILE"] = env_file
    else:
        argv += ["--num_nodes", "1", "--num_gpus", str(ranks)]
    argv += ["--module", entry, spec_path]
    return LaunchPlan(_watched(argv, py, watch_parent), out_env, env_file)


_HOST_LINE = re.compile(r"^(\S+)\s+slots=(\d+)")


def hostfile_hosts(path: str) -> list[str]:
    """The hosts of a DeepSpeed hostfile, read by DeepSpeed's own rules (``<host> slots=<n>`` lines; lines
    starting with ``#`` and blank lines skipped). A missing file, a line of another form, a host named twice or
    no host at all is an error here, before anything starts (DeepSpeed's runner would train on this host alone
    when the file is missing, and fail inside the launch on the rest)."""
    what = "set params.hostfile to a DeepSpeed hostfile (one `<host> slots=<n>` line per host) or remove it to train on this host"
    if not os.path.isfile(path):
        raise ValueError(f"hostfile {path!r} does not exist; {what}")
    hosts: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            match = _HOST_LINE.match(line)
            if match is None:
                raise ValueError(
                    f"hostfile {path!r} line {number}: {line!r} is not `<host> slots=<n>`; {what}"
                )
            if match.group(1) in hosts:
                raise ValueError(f"hostfile {path!r} line {number}: host {match.group(1)!r} is named twice")
            hosts.append(match.group(1))
    if not hosts:
        raise ValueError(f"hostfile {path!r} names no host; {what}")
    return hosts


def forwarded_env(env: dict[str, str], for_ranks: Iterable[str]) -> dict[str, str]:
    """What the ranks of other hosts must get: the ``ARCFLOW_*`` variables set in ``env`` and ``for_ranks``."""
    names = sorted({n for n in env if n.startswith(FORWARD_PREFIX)} | set(for_ranks))
    for name in names:
        if "\n" in env[name]:
            raise ValueError(
                f"{name} holds a newline, which DeepSpeed's env file (one NAME=VALUE per line) cannot carry to "
                "the other hosts; set it to a one-line value"
            )
    return {n: env[n] for n in names}


def user_env_files(env: dict[str, str], cwd: str) -> list[str]:
    """The env files DeepSpeed's runner reads when arcflow sets no ``DS_ENV_FILE``: ``$DS_ENV_FILE`` (else
    ``.deepspeed_env``) under the home and ``cwd``, those that exist, each once."""
    name = env.get("DS_ENV_FILE") or DS_ENV_FILE_DEFAULT
    home = env.get("HOME") or os.path.expanduser("~")
    paths = [os.path.realpath(os.path.join(base, name)) for base in (home, cwd)]
    return [p for p in dict.fromkeys(paths) if os.path.isfile(p)]


_ENV_LINE = re.compile(r"^\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def env_file_lines(path: str) -> list[str]:
    """The ``NAME=VALUE`` lines of a DeepSpeed env file. Blank lines and ``#`` comments are dropped: DeepSpeed's
    runner fails on the first and exports the second, whose ``#`` then comments out the rest of the remote
    command (no rank starts, and pdsh still exits 0); any other line must be ``NAME=VALUE``."""
    with open(path, encoding="utf-8") as fh:
        lines = [line.rstrip("\n") for line in fh]
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not _ENV_LINE.match(line):
            shown = (
                line if "=" not in line else line.split("=", 1)[0] + "=..."
            )  # not the value: it may be a key
            raise ValueError(
                f"{path}: line {number} ({shown!r}) is not NAME=VALUE; DeepSpeed's runner reads one NAME=VALUE "
                "per line of its env file, so fix or remove that line"
            )
        kept.append(line)
    return kept


def write_env_file(spec_path: str, env: dict[str, str], for_ranks: Iterable[str]) -> str:
    """Write ``deepspeed_env`` beside ``spec_path``: the lines of the user's env files, then the variables of
    :func:`forwarded_env` (DeepSpeed's runner lets a later line win); readable by its owner only, as the user's
    files may hold keys. Returns its absolute path."""
    path = os.path.join(os.path.dirname(os.path.abspath(spec_path)), ENV_FILE)
    own = os.path.realpath(path)
    lines = [line for f in user_env_files(env, os.getcwd()) if f != own for line in env_file_lines(f)]
    lines += [f"{name}={value}" for name, value in forwarded_env(env, for_ranks).items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{line}\n" for line in lines))
    return path


# the values DeepSpeed's multi-host runners put on the command line they log (`cmd = pdsh ... export NAME=VALUE;
# ...`, mpirun's `-x NAME=VALUE`, `-genv NAME=VALUE`): the env file's lines, which may hold the user's keys
_EXPORTED = (
    re.compile(rb"(\bexport\s+[A-Za-z_][A-Za-z0-9_]*=)[^;\n]*"),
    re.compile(rb"((?:^|\s)-(?:x|genv)\s+[A-Za-z_][A-Za-z0-9_]*=)[^\s\"']*"),
)


def mask_exports(line: bytes) -> bytes:
    """``line`` of the launcher's output with every exported value shown as ``***`` (the names stay)."""
    for pattern in _EXPORTED:
        line = pattern.sub(rb"\1***", line)
    return line


def remove_env_file(plan: LaunchPlan) -> None:
    """Delete the launch's ``deepspeed_env`` (it may hold the user's keys): once the launcher has ended, as
    DeepSpeed's runner reads it at its start; a file left by a killed run is rewritten by the next launch."""
    if plan.env_file:
        try:
            os.remove(plan.env_file)
        except FileNotFoundError:
            pass


def _watched(argv: list[str], python: str, parent: int | None) -> list[str]:
    """``argv`` run under the launch watchdog of ``parent`` (as it is without one)."""
    if parent is None:
        return argv
    return [
        python,
        "-P",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch_watchdog.py"),
        str(parent),
        "--",
        *argv,
    ]
