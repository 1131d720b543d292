"""What a host loses per core when every core is busy, by kind of work: clock, memory bandwidth, memory latency.

`benchmarks/contention.py` shows that the web branch's shard work runs slower per process when K processes run
it at once, with no scheduler involved. This benchmark says which part of the machine that comes from, with three
kernels that each stress one thing and share nothing between processes:

- ``alu``: SHA-256 over a 16 KiB buffer, again and again (code and data in the core's own L1/L2): it slows down
  at K only if each core runs at a lower clock when the others are busy (turbo headroom shared by the socket,
  power limits) or if two vCPUs share one physical core (SMT siblings the VM does not show).
- ``stream``: ``a += 1`` over a 256 MiB float64 array (bandwidth-bound: every byte crosses the memory bus).
- ``random``: a gather at random indices into a 256 MiB array (latency-bound: one cache miss per element).

For each K in --procs, K spawned processes each run the kernel for a fixed amount of work after a barrier (so the
timed parts overlap); per kernel and K it prints the mean and max wall and the slowdown against K=1 (mean over
mean), and the ceiling 1 / slowdown that the kernel alone would allow. Work the size of ``--seconds`` at K=1.

    python benchmarks/host_ceiling.py --procs 1,8,16 --out ceiling.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import statistics
import time

KERNELS = ("alu", "stream", "random")
ARRAY_BYTES = 256 << 20


def _setup(kernel: str):  # noqa: ANN202 - a closure over the kernel's data
    """The kernel's data, made before the barrier, and one unit of its work (a callable)."""
    if kernel == "alu":
        buf = os.urandom(16 << 10)

        def unit() -> None:
            for _ in range(64):
                hashlib.sha256(buf).digest()

        return unit
    import numpy as np

    n = ARRAY_BYTES // 8
    a = np.ones(n, dtype=np.float64)
    if kernel == "stream":

        def unit() -> None:
            np.add(a, 1.0, out=a)

        return unit
    idx = np.random.default_rng(os.getpid()).integers(0, n, size=1 << 21)

    def unit() -> None:
        a.take(idx).sum()

    return unit


def _child(kernel: str, units: int, barrier, queue) -> None:  # noqa: ANN001
    unit = _setup(kernel)
    unit()  # warm: pages touched, code loaded
    barrier.wait(timeout=120)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(units):
        unit()
    queue.put({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0})


def calibrate(kernel: str, seconds: float) -> int:
    """How many units take about ``seconds`` in this process, alone."""
    unit = _setup(kernel)
    unit()
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.5:
        unit()
        n += 1
    per = (time.perf_counter() - t0) / n
    return max(1, round(seconds / per))


def run_k(kernel: str, k: int, units: int) -> dict:
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(kernel, units, barrier, queue)) for _ in range(k)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    walls = [r["wall_s"] for r in results]
    return {
        "k": k,
        "mean_wall_s": statistics.fmean(walls),
        "max_wall_s": max(walls),
        "mean_cpu_s": statistics.fmean(r["cpu_s"] for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--procs", default="1,8,16", help="process counts, comma-separated (1 first: the reference)")
    ap.add_argument("--kernels", default=",".join(KERNELS))
    ap.add_argument("--seconds", type=float, default=4.0, help="each process's work, as timed alone")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    ks = [int(k) for k in args.procs.split(",")]
    if ks[0] != 1:
        ap.error("--procs must start with 1 (the reference)")
    out: dict[str, list[dict]] = {}
    print(f"{'kernel':<8} {'K':>3} {'mean wall':>10} {'max wall':>9} {'cpu/wall':>9} {'slowdown':>9} {'ceiling':>8}")
    for kernel in args.kernels.split(","):
        if kernel not in KERNELS:
            ap.error(f"unknown kernel {kernel!r}: one of {', '.join(KERNELS)}")
        units = calibrate(kernel, args.seconds)
        rows = []
        for k in ks:
            row = run_k(kernel, k, units)
            row["slowdown"] = row["mean_wall_s"] / rows[0]["mean_wall_s"] if rows else 1.0
            row["ceiling"] = 1.0 / row["slowdown"]
            rows.append(row)
            print(
                f"{kernel:<8} {k:>3} {row['mean_wall_s']:>9.2f}s {row['max_wall_s']:>8.2f}s "
                f"{row['mean_cpu_s'] / row['mean_wall_s']:>9.2f} {row['slowdown']:>9.3f} {row['ceiling']:>7.0%}",
                flush=True,
            )
        out[kernel] = rows
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"cpus": os.cpu_count(), "kernels": out}, fh, indent=1)


if __name__ == "__main__":
    main()
