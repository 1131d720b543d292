"""Go imports resolved to the files of in-repository packages.

Every ``go.mod`` of the repository maps its ``module`` path to its folder. An import path equal to a module
path or below it (``example.com/m/internal/util``) resolves to the folder under that module's folder, and the
importing file then depends on every non-test ``.go`` file directly in that folder (a Go package is a folder).
Files of one package do not import each other, so they get no edges among themselves. Imports are read from
single ``import "x"`` lines and ``import ( ... )`` blocks, aliases and ``_``/``.`` imports included.
"""

from __future__ import annotations

import posixpath
import re

from data_pipes.code.deps_index import RepoIndex

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_SINGLE = re.compile(r'^\s*import\s+(?:[A-Za-z_.][\w]*\s+)?"([^"]+)"', re.MULTILINE)
_BLOCK = re.compile(r"^\s*import\s*\((.*?)\)", re.MULTILINE | re.DOTALL)
_SPEC = re.compile(r'(?:[A-Za-z_.][\w]*\s+)?"([^"]+)"')
_MODULE = re.compile(r"^\s*module\s+(\S+)", re.MULTILINE)


def go_modules(index: RepoIndex, texts: dict[str, str]) -> dict[str, str]:
    """``{module path: folder}`` from the repository's ``go.mod`` files (their text in ``texts``)."""
    modules = {}
    for path in sorted(index.paths):
        if posixpath.basename(path) == "go.mod" and path in texts:
            match = _MODULE.search(texts[path])
            if match:
                modules[match.group(1).strip('"')] = posixpath.dirname(path)
    return modules


def import_paths(text: str) -> list[str]:
    """The import paths of one Go file, in order."""
    code = _COMMENTS.sub(" ", text)
    paths = _SINGLE.findall(code)
    for block in _BLOCK.findall(code):
        paths.extend(_SPEC.findall(block))
    return paths


def package_files(index: RepoIndex, folder: str) -> list[str]:
    return [p for p in index.files_in(folder) if p.endswith(".go") and not p.endswith("_test.go")]


def go_imports(path: str, text: str, index: RepoIndex, modules: dict[str, str]) -> set[str]:
    """Repository files of the in-repository packages that the Go file ``path`` imports."""
    found: set[str] = set()
    # longest module path first, so nested modules win over the one that contains them
    ordered = sorted(modules.items(), key=lambda kv: -len(kv[0]))
    for imp in import_paths(text):
        for module, folder in ordered:
            if imp == module or imp.startswith(module + "/"):
                rest = imp[len(module) :].lstrip("/")
                found.update(package_files(index, posixpath.join(folder, rest) if rest else folder))
                break
    found -= set(package_files(index, posixpath.dirname(path)))  # same package: no edges
    found.discard(path)
    return found
