"""The command line that starts a training run of N ranks: the DeepSpeed launcher (default; it also spreads over
the hosts of a hostfile) or torchrun, each running ``python -m model.train.main <spec.json>`` on every rank.

:func:`launch_command` returns the argv and the environment to run it with (``subprocess.Popen(argv, env=env)``);
arcflow's own process code never spawns ranks. On CPU the environment carries ``DS_ACCELERATOR=cpu`` (gloo is
chosen by the entry point) and one OpenMP thread per rank unless told otherwise.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from typing import Literal

Launcher = Literal["deepspeed", "torchrun"]
ENTRY = "model.train.main"


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    env: dict[str, str]


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
    out_env["OMP_NUM_THREADS"] = str(threads)
    if device == "cpu":
        out_env["DS_ACCELERATOR"] = "cpu"
        out_env.setdefault("CUDA_VISIBLE_DEVICES", "")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out_env["PYTHONPATH"] = os.pathsep.join(p for p in (root, out_env.get("PYTHONPATH", "")) if p)
    if launcher == "torchrun":
        argv = [py, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(ranks)]
        argv += ["--master_addr", "127.0.0.1", "--master_port", port, "-m", entry, spec_path]
        return LaunchPlan(_watched(argv, py, watch_parent), out_env)
    argv = [py, "-m", "deepspeed.launcher.runner", "--master_port", port]
    if hostfile is not None:
        argv += ["--hostfile", hostfile]
    else:
        argv += ["--num_nodes", "1", "--num_gpus", str(ranks)]
    argv += ["--module", entry, spec_path]
    return LaunchPlan(_watched(argv, py, watch_parent), out_env)


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
