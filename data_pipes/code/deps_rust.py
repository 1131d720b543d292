"""Rust module edges: ``mod x;`` declarations and ``use crate::/self::/super::`` paths, resolved to files.

A file's crate root is the nearest folder above it holding ``lib.rs`` or ``main.rs``. ``mod x;`` in a file
whose module folder is D (D is the file's folder for ``lib.rs``, ``main.rs`` and ``mod.rs``, else the folder
named after the file) resolves to ``D/x.rs`` or ``D/x/mod.rs``. A ``use`` path (brace groups expanded) of
in-crate segments resolves to the longest prefix that is a module file (``a/b/c.rs``, ``a/b/c/mod.rs``,
then ``a/b.rs``...; the last segments may name items), and to the crate root file when no prefix is a file.
Not handled: ``#[path]`` attributes, inline ``mod x { }`` bodies (their contents count as the file's own),
paths into other crates of a workspace, and macros.
"""

from __future__ import annotations

import posixpath
import re

from data_pipes.code.deps_index import RepoIndex

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_MOD = re.compile(r"^\s*(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", re.MULTILINE)
_USE = re.compile(r"^\s*(?:pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]+);", re.MULTILINE)
_ROOT_FILES = ("lib.rs", "main.rs")


def crate_root(path: str, index: RepoIndex) -> str | None:
    """The folder of the crate root file (``lib.rs``/``main.rs``) above ``path``."""
    folder = posixpath.dirname(path)
    while True:
        if any(posixpath.join(folder, f) in index.paths for f in _ROOT_FILES):
            return folder
        if not folder:
            return None
        folder = posixpath.dirname(folder)


def module_dir(path: str) -> str:
    """The folder where ``mod x;`` in ``path`` looks for ``x``."""
    name = posixpath.basename(path)
    if name in (*_ROOT_FILES, "mod.rs"):
        return posixpath.dirname(path)
    return path[: -len(".rs")]


def module_path(path: str, root: str) -> list[str]:
    """Module segments of ``path`` inside the crate rooted at ``root`` (``[]`` for the root file)."""
    rel = posixpath.relpath(path, root) if root else path
    parts = rel[: -len(".rs")].split("/")
    if parts[-1] == "mod" or (len(parts) == 1 and rel in _ROOT_FILES):
        parts = parts[:-1]
    return parts


def expand_use(tree: str) -> list[list[str]]:
    """``a::{b, c::{d, e as f}, self}`` -> ``[[a, b], [a, c, d], [a, c, e], [a]]`` (renames and globs
    dropped)."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+[A-Za-z_]\w*", "", tree))
    out: list[list[str]] = []

    def walk(prefix: list[str], text: str) -> None:
        if "{" not in text:
            segs = [s for s in text.split("::") if s and s != "*"]
            if prefix and segs[:1] == ["self"]:  # ``a::{self}`` names ``a`` itself
                segs = segs[1:]
            out.append(prefix + segs)
            return
        head, body = text.split("{", 1)
        body = body[: body.rfind("}")]
        base = prefix + [s for s in head.split("::") if s]
        depth, start = 0, 0
        for k, ch in enumerate(body + ","):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                if body[start:k]:
                    walk(base, body[start:k])
                start = k + 1

    walk([], tree)
    return out


def _resolve_segments(index: RepoIndex, root: str, segs: list[str]) -> str | None:
    for k in range(len(segs), 0, -1):
        stem = posixpath.join(root, *segs[:k])
        found = index.first([stem + ".rs", posixpath.join(stem, "mod.rs")])
        if found:
            return found
    return index.first(posixpath.join(root, f) for f in _ROOT_FILES)


def rust_imports(path: str, text: str, index: RepoIndex) -> set[str]:
    """Repository files that the Rust file ``path`` declares (``mod``) or uses (``use crate::...``)."""
    code = _COMMENTS.sub(" ", text)
    found: set[str | None] = set()
    folder = module_dir(path)
    for name in _MOD.findall(code):
        found.add(index.first([posixpath.join(folder, name + ".rs"), posixpath.join(folder, name, "mod.rs")]))
    root = crate_root(path, index)
    if root is not None:
        here = module_path(path, root)
        for use in _USE.findall(code):
            for segs in expand_use(use):
                if not segs:
                    continue
                head = segs[0]
                if head == "crate":
                    target = segs[1:]
                elif head == "self":
                    target = here + segs[1:]
                elif head == "super":
                    ups = 0
                    while ups < len(segs) and segs[ups] == "super":
                        ups += 1
                    target = here[: max(0, len(here) - ups)] + segs[ups:]
                else:
                    continue  # another crate (std, a dependency)
                found.add(_resolve_segments(index, root, target))
    found.discard(None)
    found.discard(path)
    return found  # type: ignore[return-value]
