"""The host's own ceiling on strong scaling: the shard-heavy nodes' work in K independent processes at once.

By default (``--variant bare``) no Dask, no Prefect, no scheduler: for each K in --procs, K processes (spawned)
each run the web branch's three
shard-heavy nodes (`text`: extract_html, `lang`: langid, `clean`: heuristic_filters, with the params of
`benchmarks/scale.py --strong`'s pipeline) over their own copy of the same input shards, through the same call a
Dask worker makes for one shard (`tasks.shard_worker.execute_shard`: the registry's kind, its `run_shard`, the
shard's accounting checked), node after node as the pipeline runs them. Every process first imports, loads the
models and runs the chain once on a few rows (not timed), then waits at a barrier, so the K timed parts start
together. Per process: the wall and CPU seconds of the timed part, and per node the shard-seconds its
ShardResults report (measured inside `run_shard`, as in the strong series' node tables).

``--variant dask`` and ``dask-arcflow`` run the same chain as one task on each of K single-threaded ``dask
worker`` processes started against ``--scheduler`` (still no arcflow engine, no Prefect; the tasks start their
timed parts at one moment instead of a barrier): with Dask's default worker settings, or with a cluster worker's
settings (``flows.placement.worker_environment``) and glibc's own malloc trimming. Against the bare processes,
what the Dask worker process itself adds to the same work.

Per K: mean and max per-process wall and CPU, the slowdown against K=1 (mean wall at K over mean wall at 1) and
the efficiency ceiling it implies for any scheduler on this host, 1 / slowdown: with K workers each shard takes
that much longer however the work is spread. The host's CPU time split from /proc/stat during the timed part
(user, system, idle, steal: steal is time the hypervisor ran something else on this VM's vCPUs) and the mean
`cpu MHz` of /proc/cpuinfo (a VM may report a fixed value) go with it.

The input: --corpus is a folder of `part-NNNNN.parquet` files written by `benchmarks/scale.py` (its generator's
columns id, url, html, lang_hint, gen_kind); --shards of them, evenly spaced among the first --within files (the
series' corpus), go through the `files` kind once (as the `pages` node does, not timed) and every process gets a
copy of the resulting document shards.

    python benchmarks/contention.py --corpus CACHE/docs-per-file-250/skip-ja-zh/corpus-seed0 --within 64 \\
        --shards 3 --procs 1,2,4,8,16 --skip-langs ja,zh --out contention.json

`benchmarks/scale_device.sh contention:1,4,8,16` runs it on the GPU host's generated corpus.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODES = ("text", "lang", "clean")  # the shard-heavy nodes of scale.py's strong pipeline, in pipeline order
SEED = 1234  # scale.py's pipeline seed
ONE_THREAD = ("POLARS_MAX_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def node_specs(files: list[Path], skip_langs: str) -> dict[str, dict]:
    """{node: {"uses": kind, "params": {...}}} of scale.py's strong pipeline over ``files`` (pages, text, lang,
    clean), so the work is the series' own."""
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # after PYTHONPATH: a --code copy wins
    from benchmarks.scale import _strong_yaml

    spec = json.loads(
        _strong_yaml(files, Path(tempfile.gettempdir()) / "unused", "tcp://unused:0", skip_langs)
    )
    return {name: spec["nodes"][name] for name in ("pages", *NODES)}


def _params(spec: dict) -> object:
    from tasks.registry import get_kind_class

    return get_kind_class(spec["uses"]).Params.model_validate(spec.get("params", {}))


def _run_node(spec: dict, inputs: list[Path], out_dir: Path) -> tuple[list[Path], float, int]:
    """One node over ``inputs`` (document shards), each shard as a Dask worker runs it: (output shards, the
    ShardResults' seconds, documents in)."""
    from tasks.base import ShardTask
    from tasks.shard_worker import execute_shard

    params = _params(spec)
    out_dir.mkdir(parents=True, exist_ok=True)
    outs, seconds, docs = [], 0.0, 0
    for i, path in enumerate(inputs):
        task = ShardTask(i, {"path": str(path), "input": "prev"}, label=str(path))
        result = execute_shard(spec["uses"], params, task, str(out_dir), SEED)
        outs.append(Path(result.path) if result.path else out_dir / Path(path).name)
        seconds += result.seconds
        docs += result.rows_in
    return outs, seconds, docs


def make_pages(specs: dict[str, dict], work: Path) -> list[Path]:
    """The `files` kind over each corpus file (one shard each, as the `pages` node makes them)."""
    from tasks.base import ShardTask
    from tasks.shard_worker import execute_shard

    spec = specs["pages"]
    params = _params(spec)
    out_dir = work / "pages"
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for i, path in enumerate(spec["params"]["paths"]):
        task = ShardTask(i, {"files": [path], "source": "pages"}, label=path)
        result = execute_shard(spec["uses"], params, task, str(out_dir), SEED)
        shards.append(Path(result.path))
    return shards


def _timed_chain(rank: int, specs: dict, shards: list[str], work: str, wait: object) -> dict:
    """Warm up on a few rows (imports, models), ``wait()`` for the others, then the timed chain."""
    import polars as pl

    base = Path(work)
    warm_in = base / "warm" / "in"
    warm_in.mkdir(parents=True)
    pl.read_parquet(shards[0]).head(8).write_parquet(warm_in / "part-00000.parquet")
    inputs = [warm_in / "part-00000.parquet"]
    for node in NODES:
        inputs, _, _ = _run_node(specs[node], inputs, base / "warm" / node)
    wait()  # type: ignore[operator]
    t0, c0 = time.perf_counter(), time.process_time()
    inputs = [Path(s) for s in shards]
    per_node: dict[str, dict[str, float]] = {}
    for node in NODES:
        n0, nc0 = time.perf_counter(), time.process_time()
        inputs, seconds, docs = _run_node(specs[node], inputs, base / node)
        per_node[node] = {
            "wall_s": time.perf_counter() - n0,
            "cpu_s": time.process_time() - nc0,
            "shard_s": seconds,
            "docs": docs,
        }
    return {
        "rank": rank,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "nodes": per_node,
    }


def _child(rank: int, specs: dict, shards: list[str], work: str, barrier: object, queue: object) -> None:
    """One bare process: the timed chain after a barrier, its result through the queue."""
    try:
        queue.put(_timed_chain(rank, specs, shards, work, lambda: barrier.wait(timeout=180)))  # type: ignore[attr-defined]
    except BaseException as exc:  # noqa: BLE001 - the parent reports it with the rank
        with_barrier = getattr(barrier, "abort", None)
        if with_barrier:
            with_barrier()
        queue.put({"rank": rank, "error": f"{type(exc).__name__}: {exc}"})  # type: ignore[attr-defined]


def _dask_task(rank: int, specs: dict, shards: list[str], work: str, start_at: float) -> dict:
    """The same chain as one task on a Dask worker; the K tasks start their timed parts at ``start_at``. Run as
    a script, this module is ``__main__``, whose functions cloudpickle sends by value: neither the scheduler nor
    the workers need to import ``benchmarks``."""
    late = {"s": 0.0}

    def wait() -> None:
        late["s"] = time.time() - start_at
        time.sleep(max(0.0, start_at - time.time()))

    try:
        out = _timed_chain(rank, specs, shards, work, wait)
    except BaseException as exc:  # noqa: BLE001 - reported with the rank
        return {"rank": rank, "error": f"{type(exc).__name__}: {exc}"}
    out["late_s"] = max(
        0.0, late["s"]
    )  # > 0: this task was not warm by start_at (the start was not together)
    return out


def _proc_stat() -> list[int]:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal (jiffies)."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:9]]


def _mhz() -> float | None:
    try:
        values = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
    except OSError:
        return None
    return statistics.fmean(values) if values else None


def _collect(queue: object, procs: list) -> list[dict]:
    """One result per process; a process that died without sending one (killed, out of memory) fails the K."""
    import queue as queue_mod

    results: list[dict] = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=2))  # type: ignore[attr-defined]
        except queue_mod.Empty:
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    p.kill()
                msg = f"{len(dead)} process(es) died (exit code {dead[0].exitcode}) without a result"
                raise SystemExit(msg) from None
    return results


class _HostSampler:
    """/proc/stat and the mean `cpu MHz` over the timed part."""

    def __init__(self) -> None:
        self.stat0, self.mhz, self._stop = _proc_stat(), [], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            value = _mhz()
            if value is not None:
                self.mhz.append(value)

    def stop(self) -> tuple[dict[str, float], float | None]:
        self._stop.set()
        self._thread.join()
        delta = [b - a for a, b in zip(self.stat0, _proc_stat(), strict=True)]
        total = sum(delta) or 1
        names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        share = {n: round(d / total, 4) for n, d in zip(names, delta, strict=True)}
        return share, (round(statistics.fmean(self.mhz), 1) if self.mhz else None)


def _row(k: int, results: list[dict], warm_s: float, share: dict, mhz: float | None) -> dict:
    errors = [r for r in results if "error" in r]
    if errors:
        raise SystemExit(f"K={k}: process {errors[0]['rank']} failed: {errors[0]['error']}")
    walls = [r["wall_s"] for r in results]
    cpus = [r["cpu_s"] for r in results]
    return {
        "k": k,
        "warm_up_s": round(warm_s, 2),
        "wall_mean_s": statistics.fmean(walls),
        "wall_max_s": max(walls),
        "cpu_mean_s": statistics.fmean(cpus),
        "cpu_max_s": max(cpus),
        "node_shard_s_mean": {n: statistics.fmean(r["nodes"][n]["shard_s"] for r in results) for n in NODES},
        "host_cpu_share": share,
        "cpu_mhz_mean": mhz,
        "processes": sorted(results, key=lambda r: r["rank"]),
    }


def _copies(k: int, pages: list[Path], work: Path) -> list[tuple[Path, list[str]]]:
    """Each of the K processes' own folder and copy of the input shards."""
    out = []
    for rank in range(k):
        own = work / f"k{k}" / f"p{rank:02d}"
        (own / "in").mkdir(parents=True)
        out.append((own, [shutil.copy(p, own / "in" / p.name) for p in pages]))
    return out


def run_k(k: int, specs: dict, pages: list[Path], work: Path) -> dict:
    """K bare processes at once over their own copies of ``pages``: their results and the host's CPU split."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(rank, specs, shards, str(own), barrier, queue))
        for rank, (own, shards) in enumerate(_copies(k, pages, work))
    ]
    t_start = time.perf_counter()
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=180)  # every child warm: the timed parts start together
    except threading.BrokenBarrierError:
        pass  # a child failed (its error comes through the queue) or one did not get there in time
    warm_s = time.perf_counter() - t_start
    sampler = _HostSampler()
    results = _collect(queue, procs)
    share, mhz = sampler.stop()
    for p in procs:
        p.join(60)
    shutil.rmtree(work / f"k{k}", ignore_errors=True)
    return _row(k, results, warm_s, share, mhz)


def _dask_env(variant: str, work: Path) -> dict[str, str]:
    """The workers' environment: ``dask-arcflow`` adds the settings a cluster's worker commands carry
    (``flows.placement.worker_environment``: the profiler off, slower ticks) and glibc's own malloc trimming
    instead of the nanny's ``MALLOC_TRIM_THRESHOLD_=65536`` (a Dask config file nulls it)."""
    env = dict(os.environ)
    if variant == "dask-arcflow":
        from flows.placement import worker_environment

        env.update(worker_environment())
        conf = work / "dask-config"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "no-trim.yaml").write_text(
            "distributed:\n  nanny:\n    pre-spawn-environ:\n      MALLOC_TRIM_THRESHOLD_: null\n"
        )
        env["DASK_CONFIG"] = str(conf)
    return env


def run_k_dask(k: int, specs: dict, pages: list[Path], work: Path, scheduler: str, variant: str) -> dict:
    """The same K chains as tasks on K single-threaded Dask workers (``dask worker --nworkers K --nthreads 1``
    against ``scheduler``, started here with ``variant``'s settings and stopped after), one task per worker;
    no arcflow engine, no Prefect: what the Dask worker process adds to the work itself."""
    import subprocess

    from distributed import Client

    cmd = [sys.executable, "-m", "dask", "worker", scheduler, "--nworkers", str(k), "--nthreads", "1"]
    cmd += ["--no-dashboard", "--memory-limit", "6GiB", "--local-directory", str(work / "dask-worker-space")]
    log = open(work / f"dask-workers-{k}.log", "w")  # noqa: SIM115 - closed below
    env = _dask_env(variant, work)
    env["PYTHONSAFEPATH"] = "1"  # not the working directory first on sys.path (see scale_device.sh)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH", ""), str(ROOT)) if p)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        with Client(scheduler, timeout=60) as client:
            client.wait_for_workers(k, timeout=300)
            workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
            if len(workers) != k:
                raise SystemExit(f"scheduler has {len(workers)} workers, expected {k}: stop the others first")
            copies = _copies(k, pages, work)
            t_start = time.perf_counter()
            start_at = time.time() + 12.0  # warm-up (imports, models) takes 2 to 5 s
            futures = [
                client.submit(_dask_task, rank, specs, shards, str(own), start_at, workers=[addr], pure=False)
                for rank, ((own, shards), addr) in enumerate(zip(copies, workers, strict=True))
            ]
            time.sleep(max(0.0, start_at - time.time()))
            sampler = _HostSampler()
            results = client.gather(futures)
            share, mhz = sampler.stop()
    finally:
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()
    late = max(r.get("late_s", 0.0) for r in results)
    if late > 0:
        print(f"  K={k}: a task was {late:.1f} s late for the common start (not warm in 12 s)", flush=True)
    shutil.rmtree(work / f"k{k}", ignore_errors=True)
    return _row(k, results, time.perf_counter() - t_start, share, mhz)


def with_slowdown(rows: list[dict]) -> list[dict]:
    """Slowdown of each K against K=1's mean wall (and CPU), and the efficiency ceiling 1 / slowdown."""
    base = next((r for r in rows if r["k"] == 1), None)
    for r in rows:
        if base is None:
            r["slowdown"] = r["slowdown_max"] = r["cpu_slowdown"] = r["ceiling"] = None
            continue
        r["slowdown"] = r["wall_mean_s"] / base["wall_mean_s"]
        r["slowdown_max"] = r["wall_max_s"] / base["wall_mean_s"]
        r["cpu_slowdown"] = r["cpu_mean_s"] / base["cpu_mean_s"]
        r["ceiling"] = 1 / r["slowdown"]
        r["node_slowdown"] = {n: r["node_shard_s_mean"][n] / base["node_shard_s_mean"][n] for n in NODES}
    return rows


def table(rows: list[dict], docs: int) -> str:
    head = (
        "| K | docs/process | wall mean | wall max | CPU mean | slowdown | slowdown (max) | CPU slowdown "
        "| ceiling | text | lang | clean | steal | idle | MHz |"
    )
    lines = [head, "|" + "---|" * 15]

    def f(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    for r in rows:
        ns = r.get("node_slowdown") or {}
        share = r["host_cpu_share"]
        lines.append(
            f"| {r['k']} | {docs:,} | {r['wall_mean_s']:.2f} s | {r['wall_max_s']:.2f} s | {r['cpu_mean_s']:.2f} s "
            f"| {f(r['slowdown'], '.3f')} | {f(r['slowdown_max'], '.3f')} | {f(r['cpu_slowdown'], '.3f')} "
            f"| {f(r['ceiling'] and 100 * r['ceiling'], '.0f')}% "
            f"| {f(ns.get('text'), '.2f')} | {f(ns.get('lang'), '.2f')} | {f(ns.get('clean'), '.2f')} "
            f"| {100 * share['steal']:.1f}% | {100 * share['idle']:.1f}% | {f(r['cpu_mhz_mean'], '.0f')} |"
        )
    return "\n".join(lines)


def pick_files(corpus: Path, shards: int, within: int | None) -> list[Path]:
    """``shards`` corpus files evenly spaced among the first ``within`` (all when None), in name order."""
    files = sorted(corpus.glob("part-*.parquet"))
    if within:
        files = files[:within]
    if len(files) < shards:
        raise SystemExit(
            f"{corpus}: {len(files)} part-*.parquet files (within the first {within}), need {shards}; "
            "generate the corpus first (benchmarks/scale.py --generate-only, with --corpora DIR when the shared "
            "web corpora are not in ../shared/corpora)"
        )
    step = len(files) / shards
    return [files[int(i * step)] for i in range(shards)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--corpus", type=Path, required=True, help="folder of scale.py's part-NNNNN.parquet files"
    )
    ap.add_argument("--shards", type=int, default=3, help="corpus files (one shard each) per process")
    ap.add_argument("--within", type=int, default=None, help="pick the shards among the first N files")
    ap.add_argument("--procs", default="1,2,4,8,16", help="process counts K, run in this order")
    ap.add_argument("--skip-langs", default="", help="as scale.py --skip-langs (langid's languages)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument(
        "--variant",
        default="bare",
        choices=("bare", "dask", "dask-arcflow"),
        help="bare: spawned processes; dask: one task per single-threaded Dask worker with Dask's defaults; "
        "dask-arcflow: the same with a cluster worker's settings (flows.placement.worker_environment) and "
        "glibc's own trimming",
    )
    ap.add_argument(
        "--scheduler", default=None, help="tcp://HOST:PORT of a `dask scheduler` (the dask variants)"
    )
    args = ap.parse_args()
    if args.variant != "bare" and not args.scheduler:
        ap.error(f"--variant {args.variant} needs --scheduler tcp://HOST:PORT (a running `dask scheduler`)")
    for name in ONE_THREAD:  # one thread per process, as the series' workers (the children inherit it)
        os.environ[name] = "1"
    if str(ROOT) not in sys.path:
        sys.path.append(str(ROOT))  # after PYTHONPATH: a --code copy wins
    ks = [int(x) for x in args.procs.split(",") if x.strip()]
    files = pick_files(args.corpus, args.shards, args.within)
    work = args.work or Path(tempfile.mkdtemp(prefix="contention-"))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    specs = node_specs(files, args.skip_langs)
    pages = make_pages(specs, work)
    import pyarrow.parquet as pq

    docs = sum(pq.ParquetFile(p).metadata.num_rows for p in pages)
    print(
        f"contention: {len(files)} shards ({docs:,} documents) per process: {', '.join(f.name for f in files)}; "
        f"{os.cpu_count()} CPUs; {args.variant}",
        flush=True,
    )
    rows: list[dict] = []
    for k in ks:
        if args.variant == "bare":
            row = run_k(k, specs, pages, work)
        else:
            row = run_k_dask(k, specs, pages, work, args.scheduler, args.variant)
        rows.append(row)
        with_slowdown(rows)
        print(
            f"  K={k:>2}: warm-up {row['warm_up_s']:.1f} s, wall mean {row['wall_mean_s']:.2f} s max "
            f"{row['wall_max_s']:.2f} s, CPU mean {row['cpu_mean_s']:.2f} s, steal "
            f"{100 * row['host_cpu_share']['steal']:.1f}%"
            + (
                f", slowdown {row['slowdown']:.3f}, ceiling {100 * row['ceiling']:.0f}%"
                if row["slowdown"]
                else ""
            ),
            flush=True,
        )
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            meta = {
                "files": [f.name for f in files],
                "docs_per_process": docs,
                "cpu_count": os.cpu_count(),
                "variant": args.variant,
            }
            args.out.write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(table(rows, docs))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
