"""JavaScript and TypeScript imports of relative specifiers, resolved like Node and TypeScript do.

Read: ``import ... from "./x"``, ``import "./x"``, ``export ... from "./x"``, ``require("./x")`` and
``import("./x")``. Only relative specifiers (``./``, ``../``) are in-repository; bare ones are packages. A
specifier resolves to the file itself, then with each extension of ``EXTENSIONS`` appended, then to
``index`` + extension inside it as a folder; a ``.js``/``.jsx``/``.mjs``/``.cjs`` specifier also tries the
TypeScript file of the same stem (TypeScript's ESM convention). Not handled: ``paths``/``baseUrl`` aliases
of ``tsconfig.json``, ``package.json`` ``exports``; comments are not stripped, so a commented-out import
still counts.
"""

from __future__ import annotations

import posixpath
import re

from data_pipes.code.deps_index import RepoIndex

EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".json")
_TS_OF_JS = {".js": (".ts", ".tsx"), ".jsx": (".tsx",), ".mjs": (".mts",), ".cjs": (".cts",)}
_SPECIFIER = re.compile(
    r"""(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)(["'])(\.{1,2}/[^"'\n]*|\.{1,2})\1"""
)


def specifiers(text: str) -> list[str]:
    """Relative module specifiers of one JS/TS file, in order."""
    return [m.group(2) for m in _SPECIFIER.finditer(text)]


def resolve(index: RepoIndex, path: str, spec: str) -> str | None:
    base = posixpath.join(posixpath.dirname(path), spec)
    stem, ext = posixpath.splitext(base)
    cands = [base] + [base + e for e in EXTENSIONS]
    cands += [stem + e for e in _TS_OF_JS.get(ext, ())]
    cands += [posixpath.join(base, "index" + e) for e in EXTENSIONS]
    return index.first(cands)


def js_imports(path: str, text: str, index: RepoIndex) -> set[str]:
    """Repository files that the JS/TS file ``path`` imports."""
    found = {resolve(index, path, spec) for spec in specifiers(text)}
    found.discard(None)
    found.discard(path)
    return found  # type: ignore[return-value]
