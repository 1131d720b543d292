"""Real documents built offline for the datatrove agreement tests: several hundred texts of four kinds.

- ``package_metadata``: the installed distributions' long descriptions (the demo corpus's HTML pages, turned
  into text by ``data_pipes.web.extract``): READMEs, prose with lists, tables and code;
- ``licenses``: their licence files (legal prose, many near-duplicates);
- ``docstrings``: each standard-library module's docstrings (module, classes, functions) joined by blank lines;
- ``stdlib_code``: standard-library source files (code: most fail the filters, for many reasons).

Every part is sampled with a fixed stride, so the selection is the same in every run of one installation. A
longer text is cut to its first ``MAX_CHARS`` characters, at a line end: datatrove's spaCy word tokenizer takes
time in proportion to the characters, and the verdicts and drop reasons the tests need are all there in the first
few thousand (the whole texts are 3.3 MB, the cut ones 1.2 MB).
"""

from __future__ import annotations

import ast
import os
import sysconfig
from functools import lru_cache

from data_pipes.io.demo_corpus import list_demo_items, render_demo_item
from data_pipes.web.extract import ExtractionError, extract

PER_PART = {"package_metadata": 120, "licenses": 80, "docstrings": 120, "stdlib_code": 100}
MAX_CHARS = 5000
_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "site-packages",
    "__pycache__",
    "lib2to3",
    "turtledemo",
    "encodings",
}


def _stride(items: list, n: int) -> list:
    step = max(1, len(items) // n)
    return items[::step][:n]


def _cut(text: str) -> str:
    """The text, or its first ``MAX_CHARS`` characters up to the last line end among them (when in the second
    half)."""
    if len(text) <= MAX_CHARS:
        return text
    head = text[:MAX_CHARS]
    end = head.rfind("\n")
    return head[:end] if end > MAX_CHARS // 2 else head


def _docstring_docs(n: int) -> list[str]:
    """About ``2 * n`` standard-library files (a fixed stride over them, in sorted order), each one's docstrings
    joined: enough for the stride of ``n`` taken from them, without parsing every file."""
    root = sysconfig.get_paths()["stdlib"]
    paths = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        paths += [os.path.join(dirpath, name) for name in sorted(files) if name.endswith(".py")]
    out = []
    for path in _stride(paths, 2 * n):
        try:
            with open(path, encoding="utf-8") as fh:
                tree = ast.parse(fh.read())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
        docs = [ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, kinds)]
        text = "\n\n".join(d for d in docs if d)
        if text:
            out.append(text)
    return out


@lru_cache(maxsize=1)
def real_documents() -> tuple[tuple[str, str], ...]:
    """(part, text) pairs, in a fixed order."""
    by_part: dict[str, list[str]] = {part: [] for part in PER_PART}
    for item in list_demo_items(["package_metadata", "licenses", "stdlib_code"]):
        rec = render_demo_item(item)
        if "error" in rec:
            continue
        text = rec["text"]
        if '"format": "html"' in rec["meta"]:
            try:
                text = extract(text).text
            except ExtractionError:
                continue
        by_part[item.part].append(text)
    by_part["docstrings"] = _docstring_docs(PER_PART["docstrings"])
    return tuple((part, _cut(text)) for part, n in PER_PART.items() for text in _stride(by_part[part], n))
