"""Python imports, read with ``ast`` and resolved to files of the repository.

``import a.b.c`` and ``from a.b import c`` are resolved against every *source root*: the repository root,
``src/``, and the parent folder of every top-level package (a folder with ``__init__.py`` whose parent has
none), so both flat and ``src/`` layouts work. A dotted name resolves to ``a/b/c.py`` or
``a/b/c/__init__.py``; ``from a.b import c`` first tries ``c`` as a submodule of ``a.b``, else ``a.b``
itself. Relative imports (``from .. import x``) start from the importing file's package. Each import names
its most specific module only: the parent packages' ``__init__.py`` files that Python also runs are not
edges (they usually import their submodules, which would make every package a cycle). A file that does not
parse has no imports.

Imports under ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) never run: they are *type-only* edges, weaker
than runtime ones, and lose when the order must break a cycle (``python_import_kinds``). A module imported
both ways is a runtime edge.
"""

from __future__ import annotations

import ast
import posixpath

from data_pipes.code.deps_index import RepoIndex
from data_pipes.code.py_parse import parse_python

EXTENSIONS = (".py", ".pyi")


def source_roots(index: RepoIndex) -> list[str]:
    """Folders that top-level module names are relative to, most likely first."""
    roots = {"", "src"}
    for path in index.paths:
        if posixpath.basename(path) != "__init__.py":
            continue
        package = posixpath.dirname(path)
        parent = posixpath.dirname(package)
        if posixpath.join(parent, "__init__.py") not in index.paths:
            roots.add(parent)
    return sorted(roots, key=lambda r: (r.count("/") if r else -1, r))


def module_file(index: RepoIndex, base: str, dotted: str) -> str | None:
    """The file of module ``dotted`` under folder ``base``: a module file or a package's ``__init__``."""
    stem = posixpath.join(base, *dotted.split(".")) if dotted else base
    package = [posixpath.join(stem, "__init__" + ext) for ext in EXTENSIONS]
    if not dotted:  # ``from . import x`` where x is not a submodule: the package itself
        return index.first(package)
    return index.first([stem + ext for ext in EXTENSIONS] + package)


def _absolute(index: RepoIndex, roots: list[str], dotted: str) -> str | None:
    for root in roots:
        found = module_file(index, root, dotted)
        if found:
            return found
    return None


def _package_dir(path: str, level: int) -> str | None:
    """The folder a relative import of ``level`` dots starts from (``None``: beyond the repository)."""
    folder = posixpath.dirname(path)
    for _ in range(level - 1):
        if not folder:
            return None
        folder = posixpath.dirname(folder)
    return folder


RUNTIME, TYPE_ONLY = "runtime", "type"


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``tree`` with whether it sits under ``if TYPE_CHECKING:``. Only statement
    blocks are walked (imports are statements), not expressions."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, typed = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append((node, typed))
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend((child, True) for child in node.body)
            stack.extend((child, typed) for child in node.orelse)
            continue
        for name in _BLOCKS:
            block = getattr(node, name, None)
            if block:
                stack.extend((child, typed) for child in block)
    return out


def python_import_kinds(
    path: str, text: str, index: RepoIndex, roots: list[str] | None = None
) -> dict[str, str]:
    """Repository files that the Python file ``path`` imports: ``{file: "runtime" | "type"}``; ``roots`` is
    ``source_roots(index)`` (computed here when not given)."""
    tree = parse_python(text)
    if tree is None:
        return {}
    roots = source_roots(index) if roots is None else roots
    kinds: dict[str, str] = {}
    for node, typed in _imports(tree):
        found: set[str | None] = set()
        if isinstance(node, ast.Import):
            found.update(_absolute(index, roots, alias.name) for alias in node.names)
        else:
            module = node.module or ""
            if node.level:
                base = _package_dir(path, node.level)
                if base is None:
                    continue
                resolve = lambda dotted, b=base: module_file(index, b, dotted)  # noqa: E731
            else:
                resolve = lambda dotted: _absolute(index, roots, dotted)  # noqa: E731
            for alias in node.names:
                sub = f"{module}.{alias.name}" if module else alias.name
                found.add((alias.name != "*" and resolve(sub)) or resolve(module))
        for dep in found:
            if dep is not None and dep != path and kinds.get(dep) != RUNTIME:
                kinds[dep] = TYPE_ONLY if typed else RUNTIME
    return kinds


def python_imports(path: str, text: str, index: RepoIndex) -> set[str]:
    """Repository files that the Python file ``path`` imports (runtime and type-only)."""
    return set(python_import_kinds(path, text, index))
