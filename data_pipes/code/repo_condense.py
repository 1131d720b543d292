"""Dependency order as a topological order of the import graph's condensation.

The graph is ``{file: files it imports}``; a file must come *after* the files it imports. Edges are *strong*
(runtime imports) or *weak* (Python imports under ``if TYPE_CHECKING:``, which never run). The order:

1. Strongly connected components of the whole graph (Tarjan); the components form an acyclic graph (the
   condensation), emitted with Kahn's algorithm, so no file waits on a cycle it is not part of.
2. Among ready components the key is ``(late, smallest path)``: *late* files (tests, examples, benchmarks;
   ``is_late``) wait until no other component is ready, so they follow the package they exercise.
3. Inside a component of several files: if weak edges are part of it, they lose: the component is ordered
   again (step 1) on its strong edges plus the weak edges that close no cycle with them (taken in path
   order), so a type-only import is still honoured where that costs no runtime edge. What is left is a genuine runtime cycle: the
   file with the fewest imports inside the component (DeepSeek-Coder's smallest in-degree), then late last,
   then path, is emitted first; the rest is condensed again, and so on.

Departure from DeepSeek-Coder (section 2.3, Algorithm 1), which applies the smallest in-degree rule to the
whole graph: there it can pick a file that is only *waiting* on a cycle, not part of one, and emit it before
its imports. Restricting the rule to one component at a time keeps every edge outside genuine cycles
satisfied. Ties break by path, so the order is a pure function of the graph.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Graph = Mapping[str, Iterable[str]]

LATE_PATH = re.compile(
    r"(^|/)(tests?|testing|testdata|__tests__|spec|examples?|benches|benchmarks?|docs?)/"
    r"|(^|/)(test_[^/]*|[^/]*_test|conftest)\.py$|_test\.go$|\.(test|spec)\.[cm]?[jt]sx?$"
)


def is_late(path: str) -> bool:
    """Test, example, benchmark and docs files: placed after the package they import."""
    return LATE_PATH.search(path) is not None


def components(nodes: Iterable[str], deps: Graph) -> list[list[str]]:
    """Strongly connected components of ``nodes`` under ``deps`` (edges to other nodes are ignored), each
    sorted; iterative Tarjan, components in an order where imports come first."""
    members = sorted(set(nodes))
    inside = set(members)
    succ = {n: sorted(d for d in deps.get(n, ()) if d in inside and d != n) for n in members}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    for root in members:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            edges = succ[node]
            while i < len(edges) and edges[i] in index:
                if edges[i] in on_stack:
                    low[node] = min(low[node], index[edges[i]])
                i += 1
            if i < len(edges):
                work.append((node, i + 1))
                work.append((edges[i], 0))
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                out.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


@dataclass(frozen=True)
class _Graphs:
    strong: Mapping[str, set[str]]
    weak: Mapping[str, set[str]]
    late: Callable[[str], bool]

    def key(self, path: str) -> tuple[bool, str]:
        return (self.late(path), path)

    def union(self, weak: bool) -> dict[str, set[str]]:
        if not weak:
            return dict(self.strong)
        return {
            n: self.strong.get(n, set()) | self.weak.get(n, set()) for n in set(self.strong) | set(self.weak)
        }


def _acyclic_weak(comp: set[str], graphs: _Graphs) -> dict[str, set[str]]:
    """The weak edges inside ``comp`` that can be kept without closing a cycle with the strong ones (and the
    weak ones kept before them, in path order)."""
    adj = {n: set(graphs.strong.get(n, set())) & comp for n in comp}
    kept: dict[str, set[str]] = {}
    for f in sorted(comp):
        for d in sorted(graphs.weak.get(f, set()) & comp):
            seen, stack = {d}, [d]
            while stack and f not in seen:
                for nxt in adj[stack.pop()]:
                    if nxt not in seen:
                        seen.add(nxt)
                        stack.append(nxt)
            if f not in seen:
                adj[f].add(d)
                kept.setdefault(f, set()).add(d)
    return kept


def _condensed(nodes: set[str], graphs: _Graphs, weak: bool, final: bool = False) -> list[str]:
    deps = graphs.union(weak)
    comps = components(nodes, deps)
    comp_of = {n: k for k, comp in enumerate(comps) for n in comp}
    needs: list[set[int]] = [set() for _ in comps]
    users: list[set[int]] = [set() for _ in comps]
    for k, comp in enumerate(comps):
        for n in comp:
            for d in deps.get(n, ()):
                j = comp_of.get(d)
                if j is not None and j != k:
                    needs[k].add(j)
                    users[j].add(k)
    waiting = [len(s) for s in needs]
    ready = [(min(graphs.key(n) for n in comp), k) for k, comp in enumerate(comps) if not waiting[k]]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, k = heapq.heappop(ready)
        comp = comps[k]
        if len(comp) == 1:
            order.extend(comp)
        elif weak and not final and any(graphs.weak.get(n, set()) & set(comp) for n in comp):
            # weak edges lose inside a cycle: keep those that close none, order the component again
            sub = _Graphs(graphs.strong, _acyclic_weak(set(comp), graphs), graphs.late)
            order.extend(_condensed(set(comp), sub, weak=True, final=True))
        else:
            order.extend(_break_cycle(set(comp), graphs))
        for u in sorted(users[k]):
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready, (min(graphs.key(n) for n in comps[u]), u))
    return order


def _break_cycle(comp: set[str], graphs: _Graphs) -> list[str]:
    """A genuine (strong) cycle: emit the file with the fewest imports inside it, until it falls apart."""
    order: list[str] = []
    rest = set(comp)
    while rest:
        first = min(rest, key=lambda n: (len(graphs.strong.get(n, set()) & rest), *graphs.key(n)))
        order.append(first)
        rest.discard(first)
        comps = components(rest, graphs.strong)
        if len(comps) != 1 or len(comps[0]) == 1:
            order.extend(_condensed(rest, graphs, weak=False))
            break
    return order


def condensation_order(
    strong: Graph, weak: Graph | None = None, late: Callable[[str], bool] = is_late
) -> list[str]:
    """Every node of ``strong`` and ``weak`` (``{file: files it imports}``) in dependency order (module
    docstring)."""
    s = {n: {d for d in ds if d != n} for n, ds in strong.items()}
    w = {n: {d for d in ds if d != n} for n, ds in (weak or {}).items()}
    nodes = set(s) | set(w)
    s = {n: {d for d in s.get(n, set()) if d in nodes} for n in nodes}
    w = {n: {d for d in w.get(n, set()) if d in nodes} - s[n] for n in nodes}
    return _condensed(nodes, _Graphs(s, w, late), weak=True)


@dataclass(frozen=True)
class EdgeCounts:
    """How many import edges an order satisfies (the import comes first), by kind."""

    runtime: int
    runtime_satisfied: int
    runtime_in_cycles: int  # runtime edges inside a runtime strongly connected component
    runtime_in_cycles_satisfied: int
    type_only: int
    type_only_satisfied: int

    @property
    def runtime_outside_cycles(self) -> tuple[int, int]:
        """(satisfied, total) runtime edges that no order can be forced to break."""
        return (
            self.runtime_satisfied - self.runtime_in_cycles_satisfied,
            self.runtime - self.runtime_in_cycles,
        )


def edge_counts(order: list[str], strong: Graph, weak: Graph | None = None) -> EdgeCounts:
    """Count the edges of ``strong`` / ``weak`` that ``order`` satisfies (both ends in the order)."""
    pos = {n: i for i, n in enumerate(order)}
    s = {n: {d for d in ds if d in pos and d != n} for n, ds in strong.items() if n in pos}
    w = {
        n: {d for d in ds if d in pos and d != n} - s.get(n, set())
        for n, ds in (weak or {}).items()
        if n in pos
    }
    comp_of = {n: k for k, comp in enumerate(components(pos, s)) for n in comp}
    rt = [(n, d) for n, ds in s.items() for d in ds]
    cyc = [(n, d) for n, d in rt if comp_of[n] == comp_of[d]]
    ty = [(n, d) for n, ds in w.items() for d in ds]

    def sat(edges: list[tuple[str, str]]) -> int:
        return sum(pos[d] < pos[n] for n, d in edges)

    return EdgeCounts(len(rt), sat(rt), len(cyc), sat(cyc), len(ty), sat(ty))
