"""Sandbox executions per second per core, against a bare ``subprocess.run`` of the same snippet.

    python benchmarks/sandbox.py [--runs 40] [--repeat 3] [--workers N]

Snippets: a small HumanEval-style program (a function plus its asserts) and a trivial one (``pass``). Each
configuration runs ``--runs`` executions one after another (one core); the whole set is repeated ``--repeat``
times and the median of the repeats is printed (the machine may be shared: the load average is printed too).
Configurations: a bare ``subprocess.run([python, "-I", "-B", "-c", snippet])`` with the same interpreter and
site-packages; the sandbox (``run_python``: bubblewrap with every namespace, seccomp, the fresh uid as root,
rlimits, audit hook); the sandbox without the audit hook; the sandbox without site-packages (``-S``). Then
``run_code_tests`` with ``--workers`` runs in flight at once (exec/s/core divides by the workers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from data_pipes.reasoning.sandbox import run_code_tests, run_python
from data_pipes.reasoning.sandbox_layers import check_available

CODE = "def add(a, b):\n    return a + b\n"
TESTS = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
PROGRAM = CODE + TESTS + "check(add)\n"
TRIVIAL = "pass\n"


def _bare(snippet: str, site: bool = True) -> None:
    flags = ["-I", "-B"] + ([] if site else ["-S"])
    done = subprocess.run([sys.executable, *flags, "-c", snippet], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr


def _sandbox(snippet: str, **kw) -> None:
    res = run_python(snippet, timeout_s=10, memory_mb=512, **kw)
    assert res.ok, res.reason()


def _time(runs: int, fn: Callable[[], None]) -> tuple[float, float]:
    """(executions per second, median seconds per execution)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return runs / sum(times), statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    print(f"kernel layers: {list(check_available())}; cores: {os.cpu_count()}; python: {sys.executable}")
    print(f"load average before: {os.getloadavg()}")
    configs: list[tuple[str, Callable[[], None]]] = [
        ("bare subprocess.run, program", lambda: _bare(PROGRAM)),
        ("sandbox, program", lambda: _sandbox(PROGRAM)),
        ("sandbox, program, no audit hook", lambda: _sandbox(PROGRAM, audit=False)),
        ("bare subprocess.run -S, program", lambda: _bare(PROGRAM, site=False)),
        ("sandbox -S, program", lambda: _sandbox(PROGRAM, site_packages=False)),
        ("bare subprocess.run, trivial", lambda: _bare(TRIVIAL)),
        ("sandbox, trivial", lambda: _sandbox(TRIVIAL)),
    ]
    for _, fn in configs:  # warm the page cache
        fn()
    rates: dict[str, list[float]] = {label: [] for label, _ in configs}
    meds: dict[str, list[float]] = {label: [] for label, _ in configs}
    for _ in range(args.repeat):
        for label, fn in configs:  # interleaved, so a burst of load hits every configuration alike
            rate, med = _time(args.runs, fn)
            rates[label].append(rate)
            meds[label].append(med)
    print(
        f"{'configuration (median of ' + str(args.repeat) + ' repeats)':40s} {'exec/s (1 core)':>16s} {'median ms':>10s}"
    )
    med_ms = {label: statistics.median(meds[label]) * 1000 for label in meds}
    for label, _ in configs:
        print(f"{label:40s} {statistics.median(rates[label]):16.1f} {med_ms[label]:10.1f}")
    print(
        f"sandbox overhead over bare subprocess.run (median ms): trivial "
        f"{med_ms['sandbox, trivial'] - med_ms['bare subprocess.run, trivial']:+.1f}, program "
        f"{med_ms['sandbox, program'] - med_ms['bare subprocess.run, program']:+.1f}"
    )
    n = args.runs * args.workers
    t = time.perf_counter()
    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(lambda _: run_code_tests(CODE, TESTS, "add", 10, 512), range(n)))
    wall = time.perf_counter() - t
    assert all(ok for ok, _ in results), [d for ok, d in results if not ok][:3]
    print(
        f"run_code_tests, {args.workers} in flight: {n / wall:.1f} exec/s total, "
        f"{n / wall / args.workers:.1f} exec/s/core"
    )
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
