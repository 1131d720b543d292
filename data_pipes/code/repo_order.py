"""Dependency order of a repository's files: import graph per language, then a topological sort.

Edges come from the ``deps_*`` modules, chosen by file extension (``LANGUAGES``); other files (docs, data,
build files) have no edges. ``dependency_order`` is Kahn's algorithm where a file comes *after* the files it
imports:

1. the in-degree of a file is the number of distinct repository files it imports (self-imports ignored);
2. while files remain: if some remaining file has in-degree 0, emit the one with the smallest path;
   otherwise the rest is all cycles (or waits on one), so emit the remaining file with the smallest
   in-degree, ties by smallest path, as if its unmet imports came later;
3. emitting a file lowers the in-degree of every remaining file that imports it.

This is DeepSeek-Coder's rule (section 2.3, Algorithm 1: "select the node with the minimal in-degree"), with
two choices of ours made explicit: ties break by path, so the order is a pure function of the file set, and we
sort the repository as one graph rather than each connected subgraph apart (a subgraph's files still come in
a valid order; independent subgraphs interleave by path).
"""

from __future__ import annotations

import heapq
import posixpath
from collections.abc import Mapping

from data_pipes.code.deps_c import c_imports
from data_pipes.code.deps_go import go_imports, go_modules
from data_pipes.code.deps_index import RepoIndex
from data_pipes.code.deps_js import js_imports
from data_pipes.code.deps_python import python_imports
from data_pipes.code.deps_rust import rust_imports

LANGUAGES: dict[str, str] = {
    **dict.fromkeys((".py", ".pyi"), "python"),
    ".rs": "rust",
    ".go": "go",
    **dict.fromkeys((".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts"), "javascript"),
    **dict.fromkeys((".c", ".h", ".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".inl"), "c"),
}


def language_of(path: str) -> str | None:
    """The import language of ``path`` by extension, or ``None`` for files without import edges."""
    return LANGUAGES.get(posixpath.splitext(path)[1].lower())


def dependency_graph(files: Mapping[str, str]) -> dict[str, set[str]]:
    """``{path: repository files it imports}`` for ``files`` (``{path: text}``)."""
    index = RepoIndex.of(files)
    modules = go_modules(index, dict(files))
    graph: dict[str, set[str]] = {}
    for path, text in files.items():
        lang = language_of(path)
        if lang == "python":
            deps = python_imports(path, text, index)
        elif lang == "rust":
            deps = rust_imports(path, text, index)
        elif lang == "go":
            deps = go_imports(path, text, index, modules)
        elif lang == "javascript":
            deps = js_imports(path, text, index)
        elif lang == "c":
            deps = c_imports(path, text, index)
        else:
            deps = set()
        graph[path] = {d for d in deps if d in files and d != path}
    return graph


def topological_order(graph: Mapping[str, set[str]]) -> list[str]:
    """Files of ``graph`` (``{file: files it imports}``) with imports first; cycles broken by the smallest
    in-degree, ties by path (see the module docstring)."""
    indeg = {f: len({d for d in deps if d in graph and d != f}) for f, deps in graph.items()}
    users: dict[str, list[str]] = {f: [] for f in graph}
    for f, deps in graph.items():
        for d in {d for d in deps if d in graph and d != f}:
            users[d].append(f)
    ready = [f for f, n in indeg.items() if n == 0]
    heapq.heapify(ready)
    remaining = set(graph)
    order: list[str] = []
    while remaining:
        if ready:
            f = heapq.heappop(ready)
        else:  # every remaining file waits on a cycle: break it at the smallest in-degree
            f = min(remaining, key=lambda x: (indeg[x], x))
        remaining.discard(f)
        order.append(f)
        for u in users[f]:
            if u in remaining:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(ready, u)
    return order


def dependency_order(files: Mapping[str, str]) -> list[str]:
    """Paths of ``files`` (``{path: text}``) in dependency order."""
    return topological_order(dependency_graph(files))
