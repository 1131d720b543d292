"""Sandbox executions per second per core, against a bare ``subprocess.run`` of the same snippet.

    python benchmarks/sandbox.py [--runs 40] [--repeat 3] [--workers N]

Snippets: a small HumanEval-style program (a function plus its asserts) and a trivial one (``pass``). Each
configuration runs ``--runs`` executions one after another (one core); the whole set is repeated ``--repeat``
times and the median of the repeats is printed (the machine may be shared: the load average is printed too).
Configurations: a bare ``subprocess.run([python, "-I", "-B", "-c", snippet])`` with the same interpreter and
site-packages; the sandbox (``run_python``: bubblewrap with every namespace, seccomp, the fresh uid as root,
rlimits, audit hook); the sandbox without the audit hook; the sandbox without site-packages (``-S``). Then
``run_code_tests`` with ``--workers`` runs in flight at once (exec/s/core divides by the workers).

Wall times depend on the machine's load (other work takes turns on the cores). As root, where a cpuacct
cgroup (v1 ``/sys/fs/cgroup/cpuacct`` or v2 ``cpu.stat``) can be made, the benchmark also moves itself into a
fresh one and reports the CPU time each execution costs, this process and every descendant (bwrap, the
sandboxed interpreter) together: that figure does not depend on the load, and 1000 / (CPU ms) is the rate one
otherwise idle core would sustain. The cgroup is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
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


def _time(runs: int, fn: Callable[[], None], cpu: Callable[[], float] | None) -> tuple[float, float, float]:
    """(executions per second, median seconds per execution, CPU ms per execution or nan)."""
    times = []
    used = cpu() if cpu else 0.0
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    cpu_ms = (cpu() - used) / runs if cpu else float("nan")
    return runs / sum(times), statistics.median(times), cpu_ms


@contextlib.contextmanager
def cpu_meter():
    """Yield a function giving the CPU ms used so far by this process and its descendants (a fresh cgroup),
    or None where no cgroup can be made (not root, no cpuacct)."""
    for root, usage in (("/sys/fs/cgroup/cpuacct", "cpuacct.usage"), ("/sys/fs/cgroup", "cpu.stat")):
        group = os.path.join(root, f"arcflow-sandbox-bench-{os.getpid()}")
        if not os.path.exists(os.path.join(root, usage)) and not os.path.exists(
            os.path.join(root, "cgroup.procs")
        ):
            continue
        try:
            os.mkdir(group)
            with open(os.path.join(group, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
        except OSError:
            with contextlib.suppress(OSError):
                os.rmdir(group)
            continue

        def read(group: str = group, usage: str = usage) -> float:
            text = open(os.path.join(group, usage)).read()  # noqa: SIM115 - a one-line read
            if usage == "cpu.stat":  # usage_usec
                return int(text.split("usage_usec")[1].split()[0]) / 1000
            return int(text) / 1e6  # nanoseconds

        try:
            yield read
        finally:
            with open(os.path.join(root, "cgroup.procs"), "w") as fh:
                fh.write(str(os.getpid()))
            with contextlib.suppress(OSError):
                os.rmdir(group)
        return
    yield None


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
    cpus: dict[str, list[float]] = {label: [] for label, _ in configs}
    with cpu_meter() as cpu:
        for _ in range(args.repeat):
            for label, fn in configs:  # interleaved, so a burst of load hits every configuration alike
                rate, med, cpu_ms = _time(args.runs, fn, cpu)
                rates[label].append(rate)
                meds[label].append(med)
                cpus[label].append(cpu_ms)
    head = f"configuration (median of {args.repeat} repeats)"
    print(f"{head:40s} {'exec/s (1 core)':>16s} {'median ms':>10s} {'CPU ms/exec':>12s}")
    med_ms = {label: statistics.median(meds[label]) * 1000 for label in meds}
    cpu_ms = {label: statistics.median(cpus[label]) for label in cpus}
    for label, _ in configs:
        print(
            f"{label:40s} {statistics.median(rates[label]):16.1f} {med_ms[label]:10.1f} {cpu_ms[label]:12.1f}"
        )
    for kind in ("trivial", "program"):
        bare, box = f"bare subprocess.run, {kind}", f"sandbox, {kind}"
        print(
            f"sandbox overhead, {kind}: wall {med_ms[box] - med_ms[bare]:+.1f} ms (median), CPU "
            f"{cpu_ms[box] - cpu_ms[bare]:+.1f} ms; one idle core: {1000 / cpu_ms[box]:.1f} exec/s"
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
