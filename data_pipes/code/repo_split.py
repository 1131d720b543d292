"""Cutting a long repository sample into parts along its dependency order.

The members (files in dependency order, then commits) are cut into consecutive parts of at most ``budget``
characters each (a member longer than that alone makes its own part). Where to cut: among the boundaries that
leave a part at least 3/4 full, the one that separates the fewest import edges (an imported file before the
cut, its importer after it), the latest such boundary on ties. Cutting between two packages rather than through
the middle of one keeps an application module in the same part as the modules it imports.

An importer that still lands in a later part than a module it imports gets a copy of that module at the start
of its part when the module is small (at most ``repeat_max_chars``), within ``repeat_budget`` characters per
part, in dependency order. The caller lists the repeated paths in the part's meta.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _crossing(start: int, stop: int, users: Sequence[Sequence[int]]) -> list[int]:
    """``c[i - start]`` = edges with ``start <= import < i <= importer`` for boundaries ``i`` in
    ``[start, stop]`` (``users[d]``: positions of the members that import member ``d``)."""
    diff = [0] * (stop - start + 2)
    for d in range(start, stop):
        for f in users[d]:
            if f > d:
                diff[d + 1 - start] += 1
                diff[min(f, stop) - start + 1] -= 1
    out, run = [], 0
    for k in range(stop - start + 1):
        run += diff[k]
        out.append(run)
    return out


def cut_points(sizes: Sequence[int], budget: int | None, pos_deps: Sequence[Sequence[int]]) -> list[int]:
    """Start index of every part (the first is 0) for members of ``sizes`` characters."""
    n = len(sizes)
    if budget is None or n == 0:
        return [0]
    users: list[list[int]] = [[] for _ in range(n)]
    for f, ds in enumerate(pos_deps):
        for d in ds:
            users[d].append(f)
    starts, start = [], 0
    while start < n:
        starts.append(start)
        total, end = 0, start
        while end < n and (end == start or total + sizes[end] <= budget):
            total += sizes[end]
            end += 1
        if end == n:
            break
        floor, lo, acc = budget * 0.75, start + 1, sizes[start]
        while lo < end and acc < floor:
            acc += sizes[lo]
            lo += 1
        crossing = _crossing(start, end, users)
        best = min(range(lo, end + 1), key=lambda i: (crossing[i - start], -i))
        start = best
    return starts


def repeats(
    starts: Sequence[int],
    n: int,
    sizes: Sequence[int],
    pos_deps: Sequence[Sequence[int]],
    repeat_max_chars: int,
    repeat_budget: int,
) -> list[list[int]]:
    """Per part, the positions (earlier parts) of small modules its members import, to be repeated."""
    out: list[list[int]] = []
    bounds = [*starts, n]
    for k in range(len(starts)):
        lo, hi = bounds[k], bounds[k + 1]
        wanted = sorted(
            {d for f in range(lo, hi) for d in pos_deps[f] if d < lo and sizes[d] <= repeat_max_chars}
        )
        picked, used = [], 0
        for d in wanted:
            if used + sizes[d] <= repeat_budget:
                picked.append(d)
                used += sizes[d]
        out.append(picked)
    return out


def positions(paths: Sequence[str], deps: Mapping[str, set[str]]) -> list[list[int]]:
    """``deps`` (``{path: imported paths}``) as member positions; members without a path import nothing."""
    pos = {p: i for i, p in enumerate(paths) if p}
    return [sorted(pos[d] for d in deps.get(p, ()) if d in pos) if p else [] for p in paths]
