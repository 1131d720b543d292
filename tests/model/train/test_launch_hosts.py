"""A multi-host launch forwards arcflow's variables to the ranks of the other hosts through DeepSpeed's env file:
the plan for a two-host hostfile points ``DS_ENV_FILE`` at a ``deepspeed_env`` beside the spec holding the user's
own ``.deepspeed_env`` lines (home and current directory, left unchanged) and then the ``ARCFLOW_*`` variables and
the ones set for ranks; one host needs none. DeepSpeed's real runner, given that plan, puts them in the command it
hands pdsh (``pdsh`` and ``ssh`` here are scripts that record the command and answer the address probe)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from model.train.launch import env_file_lines, hostfile_hosts, launch_command, mask_exports, remove_env_file


def _hostfile(tmp: Path, hosts: list[str]) -> str:
    path = tmp / "hostfile"
    path.write_text("# the run's hosts\n\n" + "".join(f"{h} slots=2\n" for h in hosts))
    return str(path)


def _user_env(tmp: Path) -> tuple[dict[str, str], Path, Path]:
    """HOME and the current directory of a user with a .deepspeed_env in each; returns the env and both files."""
    home, cwd = tmp / "home", tmp / "cwd"
    home.mkdir()
    cwd.mkdir()
    (home / ".deepspeed_env").write_text("NCCL_SOCKET_IFNAME=eth0\nARCFLOW_FUSED_SWIGLU=0\n\n")
    (cwd / ".deepspeed_env").write_text("WANDB_PROJECT=glm\n")
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "ARCFLOW_FUSED_SWIGLU": "chunk", "ARCFLOW_X": "a b"}
    return env, home / ".deepspeed_env", cwd / ".deepspeed_env"


def test_two_hosts_forward_through_the_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, home_file, cwd_file = _user_env(tmp_path)
    monkeypatch.chdir(cwd_file.parent)
    spec = tmp_path / "work" / "spec.json"
    spec.parent.mkdir()
    plan = launch_command(
        str(spec),
        2,
        hostfile=_hostfile(tmp_path, ["node-a", "node-b"]),
        master_port=29999,
        threads=3,
        env=env,
    )
    assert plan.env_file == str(spec.parent / "deepspeed_env") and plan.env["DS_ENV_FILE"] == plan.env_file
    assert Path(plan.env_file).read_text().splitlines() == [
        "NCCL_SOCKET_IFNAME=eth0",
        "ARCFLOW_FUSED_SWIGLU=0",
        "WANDB_PROJECT=glm",
        "ARCFLOW_FUSED_SWIGLU=chunk",  # the run's own value comes later, so it wins
        "ARCFLOW_X=a b",
        "CUDA_VISIBLE_DEVICES=",
        "DS_ACCELERATOR=cpu",
        "OMP_NUM_THREADS=3",
    ]
    assert stat.S_IMODE(os.stat(plan.env_file).st_mode) == 0o600
    assert home_file.read_text() == "NCCL_SOCKET_IFNAME=eth0\nARCFLOW_FUSED_SWIGLU=0\n\n"
    assert cwd_file.read_text() == "WANDB_PROJECT=glm\n"
    # planned again (a rerun, with the first plan's environment): the same file, not one holding itself
    again = launch_command(str(spec), 2, hostfile=plan.argv[plan.argv.index("--hostfile") + 1], env=plan.env)
    assert Path(again.env_file or "").read_text() == Path(plan.env_file).read_text()
    remove_env_file(again)  # what the stage does once the launcher has ended: the user's keys leave the store
    assert not Path(plan.env_file).exists()
    remove_env_file(again)  # already gone: nothing to do


def test_one_host_needs_no_env_file(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    plan = launch_command(str(spec), 2, hostfile=_hostfile(tmp_path, ["node-a"]), master_port=29999)
    assert plan.env_file is None and "DS_ENV_FILE" not in plan.env
    assert not (tmp_path / "deepspeed_env").exists()


def test_a_malformed_user_env_file_is_named(tmp_path: Path) -> None:
    env, home_file, _ = _user_env(tmp_path)
    home_file.write_text("NCCL_DEBUG=INFO\nexport\n")
    with pytest.raises(ValueError, match=r"\.deepspeed_env: line 2 \('export'\) is not NAME=VALUE"):
        launch_command(str(tmp_path / "spec.json"), 1, hostfile=_hostfile(tmp_path, ["a", "b"]), env=env)


_SSH = """#!/bin/sh
case "$*" in *"hostname -I"*) echo 127.0.0.1 ;; esac
"""
_PDSH = """#!{python}
import json, sys
json.dump(sys.argv[1:], open({out!r}, "w"))
"""


def _script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_deepspeeds_runner_exports_them_to_pdsh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, _, cwd_file = _user_env(tmp_path)
    bin_dir, out = tmp_path / "bin", tmp_path / "pdsh_argv.json"
    bin_dir.mkdir()
    _script(bin_dir / "ssh", _SSH)
    _script(bin_dir / "pdsh", _PDSH.format(python=os.path.realpath(sys.executable), out=str(out)))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    monkeypatch.chdir(cwd_file.parent)
    spec = tmp_path / "work" / "spec.json"
    spec.parent.mkdir()
    plan = launch_command(str(spec), 2, hostfile=_hostfile(tmp_path, ["node-a", "node-b"]), env=env)
    res = subprocess.run(
        plan.argv, env=plan.env, cwd=cwd_file.parent, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    argv = json.loads(out.read_text())
    assert argv[:5] == ["-S", "-f", "1024", "-w", "node-a,node-b"]
    remote = " ".join(argv[5:])
    for export in (
        "export ARCFLOW_FUSED_SWIGLU=chunk;",
        'export ARCFLOW_X="a b";',
        "export OMP_NUM_THREADS=1;",
        "export DS_ACCELERATOR=cpu;",
        "export NCCL_SOCKET_IFNAME=eth0;",
        "export WANDB_PROJECT=glm;",
    ):
        assert export in remote, remote
    assert "deepspeed.launcher.launch" in remote and str(spec) in remote
    # the runner logs that command with the values: what the stage writes to launch.log masks them
    logged = (res.stdout + res.stderr).encode()
    assert b"export WANDB_PROJECT=glm;" in logged
    masked = b"".join(mask_exports(line) for line in logged.splitlines(keepends=True))
    assert b"export WANDB_PROJECT=***;" in masked and b"export NCCL_SOCKET_IFNAME=***;" in masked
    assert b"glm" not in masked and b"eth0" not in masked and b"a b" not in masked


def test_env_file_comments_are_dropped_and_mpi_exports_masked(tmp_path: Path) -> None:
    path = tmp_path / ".deepspeed_env"
    path.write_text("# old: HF_TOKEN=abc\n  # indented\nHF_TOKEN=xyz\n\nA_B=1=2\n")
    assert env_file_lines(str(path)) == ["HF_TOKEN=xyz", "A_B=1=2"]
    path.write_text("HF TOKEN=xyz\n")
    with pytest.raises(ValueError, match=r"line 1 \('HF TOKEN=\.\.\.'\) is not NAME=VALUE") as err:
        env_file_lines(str(path))
    assert "xyz" not in str(err.value)
    line = b"cmd = mpirun -n 4 -x HF_TOKEN=xyz -genv AWS_SECRET=s3 python -u x.py\n"
    assert mask_exports(line) == b"cmd = mpirun -n 4 -x HF_TOKEN=*** -genv AWS_SECRET=*** python -u x.py\n"


def test_a_missing_or_hostless_hostfile_is_an_error_not_a_local_run(tmp_path: Path) -> None:
    spec = str(tmp_path / "spec.json")
    with pytest.raises(ValueError, match=r"does not exist; set params.hostfile"):
        launch_command(spec, 1, hostfile=str(tmp_path / "nope"))
    empty = tmp_path / "hosts"
    empty.write_text("# workers to come\n\n   \n")
    with pytest.raises(ValueError, match="names no host"):
        launch_command(spec, 1, hostfile=str(empty))
    empty.write_text("node-a slots=8  # the first\n# node-b slots=8\nnode-c slots=8\n")
    assert hostfile_hosts(str(empty)) == ["node-a", "node-c"]  # as DeepSpeed's runner reads it
    empty.write_text("node-a slots=8\nnode-b\n")
    with pytest.raises(ValueError, match=r"line 2: 'node-b' is not `<host> slots=<n>`"):
        launch_command(spec, 1, hostfile=str(empty))
    empty.write_text("node-a slots=8\nnode-a slots=4\n")
    with pytest.raises(ValueError, match="line 2: host 'node-a' is named twice"):
        launch_command(spec, 1, hostfile=str(empty))
