"""Orchestration overheads, each against its anchor measured in the same run.

(a) a no-op rerun of the fully cached default pipeline (`arcflow run`, a fresh process) minus a bare one-task
    Prefect flow (a fresh process, the same ephemeral API); target <= 2 s;
(b) `plan` of a synthetic pipeline of 50 nodes with 10,000 shards each; target <= 1 s;
(c) per-shard overhead of the Dask path (engine, markers, manifest) against calling the same shard function in a
    loop; target <= 5 ms per shard.

    python benchmarks/orchestration.py [--skip a,b,c] [--shards 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(
    os.environ,
    PREFECT_SERVER_ANALYTICS_ENABLED="false",
    PREFECT_LOGGING_LEVEL="WARNING",
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
)
BARE_FLOW = """
from prefect import flow, task
@task
def one():
    return 1
@flow
def bare():
    return one()
if __name__ == "__main__":
    bare()
"""


def _timed(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def bench_cached_rerun(repeats: int = 3) -> None:
    arcflow = [sys.executable, "-m", "flows.cli", "run", "-f", str(ROOT / "pipeline.yaml")]
    print("(a) warming: a full run of the default pipeline ...", flush=True)
    subprocess.run(arcflow, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_flow.py"
        bare.write_text(BARE_FLOW)
        ours, base = [], []
        for _ in range(repeats):
            base.append(_timed([sys.executable, str(bare)], ROOT))
            ours.append(_timed(arcflow, ROOT))
    o, b = min(ours), min(base)
    print(
        f"(a) cached rerun {o:.2f} s, bare one-task flow {b:.2f} s (best of {repeats}): "
        f"overhead {o - b:.2f} s (target <= 2 s), ratio {o / b:.2f}x"
    )


def bench_plan(n_nodes: int = 50, n_shards: int = 10_000) -> None:
    from flows.engine import Engine
    from flows.store import Store
    from flows.validate import load_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        for i in range(n_shards):  # the source: 10,000 small files, one shard each
            (data / f"f{i:05d}.txt").write_text(f"document {i}\n")
        nodes: dict = {"n00": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 1e-6}}}
        for i in range(1, n_nodes):  # a tree: each node reads one or two earlier nodes
            ins = [f"n{(i - 1):02d}"] + ([f"n{i // 2:02d}"] if i > 2 and i // 2 != i - 1 else [])
            kind = (
                {"uses": "union", "inputs": ins}
                if len(ins) > 1
                else {"uses": "filter", "inputs": ins, "params": {"expr": f"length(text) > {i}"}}
            )
            nodes[f"n{i:02d}"] = kind
        path = root / "pipeline.yaml"
        path.write_text(yaml.safe_dump({"name": "synthetic", "workdir": str(root / "store"), "nodes": nodes}))
        pipeline = load_pipeline(str(path))
        engine = Engine(pipeline)
        store = Store(str(root / "store"))
        # Fill the store as a finished run would leave it: a manifest and a 10,000-entry shard list per node.
        content: dict[str, str] = {}
        for node_id in pipeline.order:
            node = pipeline.nodes[node_id]
            parts = engine.parts(node, [(i, content[i]) for i in node.inputs])
            fp = engine.fingerprint_of(parts)
            content[node_id] = f"content-{node_id}"
            shards = [
                {
                    "index": s,
                    "file": f"part-{s:05d}.parquet",
                    "in": 1,
                    "kept": 1,
                    "dropped": 0,
                    "quarantined": 0,
                    "content_hash": "0" * 64,
                    "seconds": 0.001,
                }
                for s in range(n_shards)
            ]
            manifest = {
                "node": node_id,
                "fingerprint": fp,
                "content_hash": content[node_id],
                "shards": n_shards,
                "counts": {"in": n_shards, "kept": n_shards, "dropped": 0, "quarantined": 0},
            }
            os.makedirs(store.output_dir(fp), exist_ok=True)
            store.write_manifest(fp, manifest, shards)
            store.update_ref(
                "synthetic", node_id, {**parts, "fingerprint": fp, "content_hash": content[node_id]}
            )
        times = []
        for _ in range(3):
            t = time.perf_counter()
            plans = Engine(load_pipeline(str(path))).plan()
            times.append(time.perf_counter() - t)
        assert all(p.status == "up_to_date" for p in plans), [p for p in plans if p.status != "up_to_date"][
            :3
        ]
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "flows.cli", "plan", "-f", str(path)],
            env=ENV,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        cli = time.perf_counter() - t
    print(
        f"(b) plan of {n_nodes} nodes x {n_shards:,} shards: {min(times):.3f} s in-process (target <= 1 s); "
        f"`arcflow plan` as a fresh process {cli:.2f} s"
    )


def bench_shard_overhead(n_shards: int) -> None:
    import polars as pl

    from flows.engine import Engine, node_seed
    from flows.validate import load_pipeline
    from tasks.base import ShardTask
    from tasks.shard_worker import execute_shard

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        for i in range(n_shards):
            pl.DataFrame(
                {
                    "id": [f"d{i}"],
                    "text": [f"text {i}"],
                    "source": ["s"],
                    "url": [""],
                    "lang": [""],
                    "meta": ["{}"],
                }
            ).write_parquet(data / f"p{i:05d}.parquet")
        results = {}
        for workers in (1, 2):
            spec = {
                "name": "overhead",
                "workdir": str(root / f"store{workers}"),
                "executor": {"n_workers": workers, "processes": True},
                "nodes": {
                    "src": {
                        "uses": "files",
                        "params": {"paths": ["data"], "format": "parquet", "shard_mb": 1e-6},
                    },
                    "f": {"uses": "filter", "inputs": ["src"], "params": {"expr": "length(text) > 5"}},
                },
            }
            (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
            pipeline = load_pipeline(str(root / "pipeline.yaml"))
            engine = Engine(pipeline)
            engine.run_node("src")
            engine.executor.client()  # cluster start-up is not per-shard overhead
            t = time.perf_counter()
            engine.run_node("f")
            results[workers] = time.perf_counter() - t
            inputs = engine._input_refs(pipeline.nodes["f"])
            engine.close()
        node = pipeline.nodes["f"]
        out = root / "loop"
        t = time.perf_counter()
        for i, path in enumerate(inputs[0].shards):
            execute_shard(
                "filter",
                node.params,
                ShardTask(i, {"path": path, "input": "src"}),
                str(out),
                node_seed(0, "f"),
            )
        loop = time.perf_counter() - t
    per = (results[1] - loop) / n_shards * 1000
    print(
        f"(c) {n_shards:,} shards: loop {loop:.2f} s ({loop / n_shards * 1000:.2f} ms/shard); dask 1 worker "
        f"{results[1]:.2f} s, 2 workers {results[2]:.2f} s; overhead {per:.2f} ms/shard with 1 worker "
        f"(target <= 5 ms), {(results[2] * 2 - loop) / n_shards * 1000:.2f} ms/shard-core with 2"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: a,b,c")
    ap.add_argument("--shards", type=int, default=2000, help="shards for (c)")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    if "b" not in skip:
        bench_plan()
    if "c" not in skip:
        bench_shard_overhead(args.shards)
    if "a" not in skip:
        bench_cached_rerun()


if __name__ == "__main__":
    main()
