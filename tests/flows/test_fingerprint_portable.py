"""Fingerprints are made of content and declared params only: a pipeline and its data copied to another folder, or
files touched without being changed, give the same fingerprints; a changed byte or name does not."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from flows.engine import Engine
from flows.fingerprint import portable_params
from tests.flows._determinism import store_hashes
from tests.flows._pipeline_util import load, run_all, write_corpus

NODES = {
    "docs": {"uses": "files", "params": {"paths": ["data"]}},
    "short": {"uses": "filter", "inputs": ["docs"], "params": {"expr": "length(text) < 2000"}},
}


def _project(root: Path) -> Path:
    import yaml

    write_corpus(root, n_files=6)
    path = root / "pipeline.yaml"
    spec = {
        "name": "portable",
        "workdir": ".arcflow",
        "nodes": NODES,
        "executor": {"n_workers": 1, "processes": False},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _fingerprints(path: Path) -> dict[str, str | None]:
    """What a plan says before running: the sources' fingerprints (others wait for their inputs)."""
    engine = Engine(load(path))
    try:
        return {p.node: p.fingerprint for p in engine.plan()}
    finally:
        engine.close()


def _run(path: Path) -> dict[str, tuple[str, str]]:
    run_all(load(path))
    return store_hashes(path.parent / ".arcflow")


def test_portable_params_are_relative_to_the_pipeline_folder(tmp_path: Path) -> None:
    file = str(tmp_path / "pipeline.yaml")
    params = {"paths": [str(tmp_path / "data"), "/srv/corpora/web"], "model_path": str(tmp_path), "n": 3}
    got = portable_params(params, ("paths", "model_path"), file)
    assert got == {"paths": ["data", "/srv/corpora/web"], "model_path": ".", "n": 3}
    assert portable_params(params, (), file) == params


def test_the_same_project_in_another_folder_has_the_same_fingerprints(tmp_path: Path) -> None:
    first = _project(tmp_path / "one")
    copy = tmp_path / "elsewhere" / "two"
    shutil.copytree(tmp_path / "one", copy)
    for f in (copy / "data").iterdir():  # a copy has other mtimes: they must not matter
        os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**12))
    fps = _fingerprints(first)
    assert fps["docs"] is not None and _fingerprints(copy / "pipeline.yaml") == fps
    ran = _run(first)
    assert _run(copy / "pipeline.yaml") == ran  # every node: same fingerprint, same bytes

    changed = copy / "data" / sorted(os.listdir(copy / "data"))[0]
    changed.write_bytes(changed.read_bytes().replace(b"<", b"[", 1))
    assert _fingerprints(copy / "pipeline.yaml")["docs"] != fps["docs"]

    shutil.copytree(tmp_path / "one", tmp_path / "three")
    data = tmp_path / "three" / "data"
    first_file = sorted(os.listdir(data))[0]
    os.rename(data / first_file, data / ("renamed-" + first_file))
    assert _fingerprints(tmp_path / "three" / "pipeline.yaml")["docs"] != fps["docs"]


def test_git_history_fingerprint_does_not_depend_on_the_checkout_folder(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    origin = tmp_path / "origin"
    origin.mkdir()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "a",
        "GIT_AUTHOR_EMAIL": "a@e.org",
        "GIT_COMMITTER_NAME": "a",
        "GIT_COMMITTER_EMAIL": "a@e.org",
        "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
    }
    (origin / "mod.py").write_text("def f():\n    return 1\n")
    for cmd in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "first"]):
        subprocess.run(["git", *cmd], cwd=origin, env=env, check=True)
    nodes = {"hist": {"uses": "git_history", "params": {"paths": ["."], "name": "proj"}}}
    import yaml

    fps = []
    for name in ("a", "b"):
        folder = tmp_path / name / "checkout"
        subprocess.run(["git", "clone", "-q", str(origin), str(folder)], check=True)
        (folder / "pipeline.yaml").write_text(yaml.safe_dump({"name": "h", "nodes": nodes}))
        fps.append(_fingerprints(folder / "pipeline.yaml")["hist"])
    assert fps[0] == fps[1] and fps[0] is not None
    (origin / "mod.py").write_text("def f():\n    return 2\n")
    subprocess.run(["git", "commit", "-q", "-am", "second"], cwd=origin, env=env, check=True)
    subprocess.run(["git", "pull", "-q"], cwd=tmp_path / "b" / "checkout", env=env, check=True)
    assert _fingerprints(tmp_path / "b" / "checkout" / "pipeline.yaml")["hist"] != fps[0]
