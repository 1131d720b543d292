"""Sandbox executions per second per core for small programs, and what each layer costs.

    python benchmarks/sandbox.py [--runs 40] [--workers N]

Each configuration runs the same small HumanEval-style program (a function plus its asserts) ``--runs`` times
one after another (one core), then the full configuration with ``--workers`` runs in flight at once (the
per-core figure divides by the workers). Layer configurations: everything this machine allows; without the
network namespace; without the uid drop; without either; without the audit hook; and without site-packages
(``python -I -S``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from data_pipes.reasoning.sandbox import run_code_tests, run_python
from data_pipes.reasoning.sandbox_layers import available_layers

CODE = "def add(a, b):\n    return a + b\n"
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
PROGRAM = CODE + TESTS + "check(add)\n"


def _time(runs: int, **kw) -> tuple[float, float]:
    """(executions per second, median seconds per execution)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        res = run_python(PROGRAM, timeout_s=10, memory_mb=512, **kw)
        assert res.ok, res.reason()
        times.append(time.perf_counter() - t)
    return runs / sum(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    layers = available_layers()
    uid = layers & {"uid", "uid+read"}
    print(f"kernel layers available: {sorted(layers)}; cores: {os.cpu_count()}")
    configs = [
        ("all layers", {}),
        ("no netns", {"layers": layers - {"netns"}}),
        ("no uid drop", {"layers": layers - uid}),
        ("no netns, no uid", {"layers": frozenset()}),
        ("all, no audit hook", {"audit": False}),
        ("all, no site-packages (-S)", {"site_packages": False}),
    ]
    print(f"{'configuration':30s} {'exec/s (1 core)':>16s} {'median ms':>10s}")
    _time(3)  # warm the page cache
    for label, kw in configs:
        rate, med = _time(args.runs, **kw)
        print(f"{label:30s} {rate:16.1f} {med * 1000:10.1f}")
    n = args.runs * args.workers
    t = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda _: run_code_tests(CODE, TESTS, "add", 10, 512), range(n)))
    wall = time.perf_counter() - t
    assert all(ok for ok, _ in results)
    print(
        f"run_code_tests, {args.workers} in flight: {n / wall:.1f} exec/s total, "
        f"{n / wall / args.workers:.1f} exec/s/core"
    )


if __name__ == "__main__":
    main()
