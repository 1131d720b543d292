"""Dependency order of a repository's files: import graph per language, then the condensation order.

Edges come from the ``deps_*`` modules, chosen by file extension (``LANGUAGES``); other files (docs, data,
build files) have no edges. Python imports under ``if TYPE_CHECKING:`` are *type-only* (weak) edges, every
other import is a runtime (strong) edge. ``dependency_order`` puts a file after the files it imports with
:func:`data_pipes.code.repo_condense.condensation_order`: strongly connected components first, a topological
order of them (tests and examples after the package they import), weak edges dropped inside a cycle, and
DeepSeek-Coder's smallest in-degree rule only inside a genuine runtime cycle. Ties break by path, so the order
is a pure function of the file set; the repository is sorted as one graph (independent sub-graphs interleave
by path).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from data_pipes.code.deps_c import c_imports
from data_pipes.code.deps_go import go_imports, go_modules
from data_pipes.code.deps_index import RepoIndex
from data_pipes.code.deps_js import js_imports
from data_pipes.code.deps_python import TYPE_ONLY, python_import_kinds, source_roots
from data_pipes.code.deps_rust import rust_imports
from data_pipes.code.repo_condense import condensation_order

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


def dependency_edges(files: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """``{path: {imported repository file: "runtime" | "type"}}`` for ``files`` (``{path: text}``)."""
    index = RepoIndex.of(files)
    modules = go_modules(index, dict(files))
    roots = source_roots(index)
    edges: dict[str, dict[str, str]] = {}
    for path, text in files.items():
        lang = language_of(path)
        if lang == "python":
            kinds = python_import_kinds(path, text, index, roots)
        else:
            if lang == "rust":
                deps = rust_imports(path, text, index)
            elif lang == "go":
                deps = go_imports(path, text, index, modules)
            elif lang == "javascript":
                deps = js_imports(path, text, index)
            elif lang == "c":
                deps = c_imports(path, text, index)
            else:
                deps = set()
            kinds = dict.fromkeys(deps, "runtime")
        edges[path] = {d: k for d, k in kinds.items() if d in files and d != path}
    return edges


def split_edges(edges: Mapping[str, Mapping[str, str]]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(runtime graph, type-only graph)`` of :func:`dependency_edges`'s answer."""
    strong = {p: {d for d, k in ds.items() if k != TYPE_ONLY} for p, ds in edges.items()}
    weak = {p: {d for d, k in ds.items() if k == TYPE_ONLY} for p, ds in edges.items()}
    return strong, weak


def dependency_graph(files: Mapping[str, str]) -> dict[str, set[str]]:
    """``{path: repository files it imports}`` for ``files`` (``{path: text}``), runtime and type-only."""
    return {p: set(ds) for p, ds in dependency_edges(files).items()}


def topological_order(graph: Mapping[str, set[str]], weak: Mapping[str, set[str]] | None = None) -> list[str]:
    """Files of ``graph`` (``{file: files it imports}``, runtime) and ``weak`` (type-only imports) with imports
    first (see the module docstring)."""
    return condensation_order(graph, weak)


def dependency_order(files: Mapping[str, str]) -> list[str]:
    """Paths of ``files`` (``{path: text}``) in dependency order."""
    return topological_order(*split_edges(dependency_edges(files)))
