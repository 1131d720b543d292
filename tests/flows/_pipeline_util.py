"""Helpers for engine tests: write a tiny real corpus and a pipeline file, run nodes through the engine."""

from __future__ import annotations

import hashlib
import os
import pydoc
import textwrap
from pathlib import Path

import yaml

from flows.engine import Engine, select
from flows.validate import Pipeline, load_pipeline

MODULES = ("json", "csv", "textwrap", "string", "shlex", "fnmatch", "glob", "base64", "heapq", "bisect")

# `--set` overrides that make the default pipeline.yaml small enough for CI to run it several times; every node
# still runs for real. Fewer demo documents in smaller shards (more shards to resume), fewer commits, problems and
# agent tasks; packed rows of 256 / 1024 tokens instead of 4K / 32K; the training stages at the `debug` flavour
# (with the tokenizer's 8192-token vocabulary) for a few steps, pretrain saving a state every 2 steps (a kill -9
# resumes from it).
SMALL_DEFAULT = [
    "nodes.demo.params.max_items_per_part=30",
    "nodes.demo.params.items_per_shard=10",
    "nodes.project_history.params.max_commits=20",
    "nodes.problems.params.reasoning_gym.0.size=12",
    "nodes.problems.params.reasoning_gym.1.size=8",
    "nodes.problems.params.reasoning_gym.2.size=8",
    "nodes.problems.params.reasoning_gym.3.size=6",
    "nodes.problems.params.problems_per_shard=10",
    "nodes.agent.params.generate={calculator: 3, python: 2, files: 2, search: 3}",
    "nodes.pretrain_4k.params.seq_len=256",
    "nodes.midtrain_32k.params.seq_len=1024",
    "nodes.pretrain.params.flavour=debug",
    "nodes.pretrain.params.overrides={vocab_size: 8192}",
    "nodes.pretrain.params.steps=6",
    "nodes.pretrain.params.batch={global_batch: 2, micro_batch: 1}",
    "nodes.pretrain.params.checkpoint_every=2",
    "nodes.midtrain.params.flavour=debug",
    "nodes.midtrain.params.steps=2",
    "nodes.sft.params.flavour=debug",
    "nodes.sft.params.seq_len=1024",
    "nodes.sft.params.steps=2",
    "nodes.rl_problems.params.reasoning_gym.0.size=24",
    "nodes.rl.params.val_problems=8",
    "nodes.rl.params.steps=2",
]


def write_corpus(root: Path, n_files: int = 10) -> Path:
    """Real pages: pydoc's HTML of standard-library modules, one file each, plus docstrings as text."""
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(n_files):
        name = MODULES[i % len(MODULES)]
        module = __import__(name)
        if i < len(MODULES):
            (data / f"{i:03d}_{name}.html").write_text(
                pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().docmodule(module))
            )
        else:
            (data / f"{i:03d}_{name}.txt").write_text(f"{i}\n" + (module.__doc__ or name))
    return data


def write_pipeline(
    root: Path,
    nodes: dict,
    *,
    name: str = "t",
    workers: int = 1,
    processes: bool = False,
    extra: dict | None = None,
) -> Path:
    spec = {
        "name": name,
        "workdir": str(root / ".arcflow"),
        "nodes": nodes,
        # inline_s 0: shard work always goes to the Dask cluster, so these tests exercise it even on tiny data
        "executor": {"n_workers": workers, "processes": processes, "inline_s": 0},
    }
    spec.update(extra or {})
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def load(path: Path, overrides: list[str] | None = None) -> Pipeline:
    return load_pipeline(str(path), overrides or [])


def run_all(pipeline: Pipeline, **selection) -> dict[str, bool]:
    """Run the selected nodes in order through the engine (no Prefect); returns node -> reused."""
    engine = Engine(pipeline)
    sel = select(pipeline, **selection)
    out = {}
    try:
        for node in sel.nodes:
            reused, _manifest = engine.run_node(node, forced=node in sel.forced)
            out[node] = reused
    finally:
        engine.close()
    return out


def output_hashes(workdir: Path) -> dict[str, str]:
    """sha256 of every Parquet file and manifest-free marker under the store's outputs."""
    out = {}
    for p in sorted((workdir / "outputs").rglob("*.parquet")):
        out[str(p.relative_to(workdir))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


__all__ = [
    "SMALL_DEFAULT",
    "write_corpus",
    "write_pipeline",
    "load",
    "run_all",
    "output_hashes",
    "dedent",
    "os",
]
