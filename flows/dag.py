"""The DAG of a pipeline: order, cycles, and the node selections of ``run --node/--from/--to``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def find_cycles(edges: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every elementary loop reachable by DFS, each as ``[a, b, ..., a]`` (deduplicated by node set)."""
    color: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        color[node] = 1
        stack.append(node)
        for dep in edges.get(node, ()):
            if dep not in edges:
                continue
            if color.get(dep) == 1:
                loop = stack[stack.index(dep) :] + [dep]
                key = frozenset(loop)
                if key not in seen:
                    seen.add(key)
                    cycles.append(list(reversed(loop)))
            elif color.get(dep) is None:
                visit(dep)
        stack.pop()
        color[node] = 2

    for node in sorted(edges):
        if color.get(node) is None:
            visit(node)
    return cycles


def topo_order(deps: Mapping[str, Iterable[str]]) -> list[str]:
    """Kahn's algorithm over ``node -> its inputs``; ties broken by name so the order is stable."""
    deps = {n: [d for d in ds if d in deps] for n, ds in deps.items()}
    users: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            users[d].append(n)
    waiting = {n: len(set(ds)) for n, ds in deps.items()}
    ready = sorted(n for n, k in waiting.items() if k == 0)
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for u in sorted(set(users[n])):
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
        ready.sort()
    if len(order) != len(deps):
        raise ValueError(f"cycle among {sorted(set(deps) - set(order))}")
    return order


def ancestors(deps: Mapping[str, Iterable[str]], node: str) -> set[str]:
    out: set[str] = set()
    todo = list(deps[node])
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(deps[n])
    return out


def descendants(deps: Mapping[str, Iterable[str]], node: str) -> set[str]:
    users: dict[str, set[str]] = {n: set() for n in deps}
    for n, ds in deps.items():
        for d in ds:
            users[d].add(n)
    out: set[str] = set()
    todo = list(users[node])
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(users[n])
    return out
