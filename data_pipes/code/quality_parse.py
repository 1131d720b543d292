"""The high-tier signals of a code file read with the language's own parser.

* **documented**: the share of the file's non-whitespace characters that sit in comments or docstrings.
  Python: ``tokenize`` comments plus the docstrings ``ast`` finds (the first string statement of a module,
  class or function). Rust, Go, JavaScript, C: the comment nodes of the tree-sitter grammar (the per-language
  wheels ``tree-sitter-rust``, ``-go``, ``-javascript``, ``-c`` from PyPI; each bundles its compiled grammar,
  nothing is downloaded). Other languages, a file that does not parse, or one whose tree-sitter parse goes
  over its work budget (``parse``): ``//``, ``#``, ``--`` and
  ``/* */`` comments found by a regular expression (strings are not recognised there).
* **tested**: the file is test code that tests something. Python: a test path (``tests/``, ``test_*.py``,
  ``*_test.py``, ``conftest.py``) holding a ``test*`` function or ``Test*`` class, an ``assert`` statement,
  or a ``self.assert*`` / ``pytest.raises`` call; a ``def test_client`` in application code is not a test.
  Rust: a ``#[test]``-style attribute or ``#[cfg(test)]`` (Rust keeps unit tests in the file they test). Go:
  a ``_test.go`` file with a ``func TestX`` / ``BenchmarkX`` / ``FuzzX``. JavaScript / TypeScript: a test
  path (``.test.js``, ``.spec.ts``, ``__tests__/``, ``test/``) calling ``describe`` / ``it`` / ``test``.
  Others: a test path and a test marker in the text.

The ``tree-sitter-language-pack`` wheel is not used: its 1.x releases fetch grammars at run time.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from collections.abc import Iterator
from typing import Any

from data_pipes.code.py_parse import parse_python

TEST_PATH = re.compile(
    r"(^|/)(tests?|testing|__tests__|spec)/|(^|/)(test_[^/]*|[^/]*_test|conftest)\.py$|_test\.(go|rs)$"
    r"|\.(test|spec)\.[cm]?[jt]sx?$"
)
TEST_MARKER = re.compile(r"\bassert|\bdescribe\(|\bit\(|\btest\(|@Test\b|\bEXPECT_|\bASSERT_|\bCHECK\(")
FALLBACK_COMMENT = re.compile(
    r"/\*.*?(\*/|\Z)|(?<![:\w])//[^\n]*|(^|[ \t])#(?![!\[]|include|define|if|el|end|pragma|import)[^\n]*|^[ \t]*--[ \t][^\n]*",
    re.S | re.M,
)
GRAMMARS = {
    "rust": "tree_sitter_rust",
    "go": "tree_sitter_go",
    "javascript": "tree_sitter_javascript",
    "c": "tree_sitter_c",
}
LANGUAGE_ALIASES = {"typescript": "javascript", "cpp": "c"}
_WS = re.compile(r"\s+")
_NEWLINE = re.compile(rb"\r\n|\r|\n")


def _nonws(text: str) -> int:
    return len(_WS.sub("", text))


@functools.lru_cache(maxsize=8)
def _language(language: str) -> Any | None:
    module = GRAMMARS.get(language)
    if module is None:
        return None
    try:
        import importlib

        import tree_sitter

        return tree_sitter.Language(importlib.import_module(module).language())
    except (ImportError, ValueError, OSError):
        return None


def parser(language: str) -> Any | None:
    """A fresh tree-sitter parser for ``language`` (``rust``, ``go``, ``javascript``, ``c``), or None when its
    grammar wheel is not installed. Fresh on every call: a parser is not safe to share between threads."""
    grammar = _language(language)
    if grammar is None:
        return None
    import tree_sitter

    return tree_sitter.Parser(grammar)


# Error recovery on hostile text (e.g. ``/* `` repeated in C) makes tree-sitter's work grow with the square of
# the input; the parse is cancelled past this much work, counted in tree-sitter's own progress checks (about
# one per 150 bytes of ordinary code, so a deterministic budget rather than a clock), and the file falls back
# to the regular expression.
PARSE_BUDGET_BASE = 1000
PARSE_BUDGET_BYTES_PER_CHECK = 16
_CHUNK = 1 << 16


def parse(language: str, data: bytes) -> Any | None:
    """The root node of ``data`` parsed with the grammar of ``language``, or None (no grammar, or the parse
    went over its work budget)."""
    ts = parser(language)
    if ts is None:
        return None
    budget = PARSE_BUDGET_BASE + len(data) // PARSE_BUDGET_BYTES_PER_CHECK
    checks = 0

    def over_budget(*_: object) -> bool:
        nonlocal checks
        checks += 1
        return checks > budget

    try:
        tree = ts.parse(lambda offset, _point: data[offset : offset + _CHUNK], progress_callback=over_budget)
    except ValueError:  # "Parsing failed": cancelled by over_budget
        return None
    return None if tree is None else tree.root_node


def _nodes(root: Any) -> Iterator[Any]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def _comment_chars(root: Any, data: bytes) -> int:
    """Non-whitespace characters of the outermost comment nodes (never ``node.parent``: tree-sitter finds a
    parent by walking down from the root, which is quadratic over a file of many top-level nodes)."""
    total = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if "comment" in node.type and node is not root:
            total += _nonws(data[node.start_byte : node.end_byte].decode("utf-8", "replace"))
        else:
            stack.extend(node.children)
    return total


# --- Python ------------------------------------------------------------------------------------------------


def _docstring_nodes(tree: ast.AST) -> Iterator[ast.Constant]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    yield first.value


def _python_doc_chars(text: str, tree: ast.AST) -> int:
    total = 0
    # ast offsets are UTF-8 byte columns of lines split at \r\n, \r or \n; the line starts are found once
    # (ast.get_source_segment splits the whole text again for every docstring: quadratic on a big module)
    data = text.encode("utf-8", "surrogatepass")
    starts = [0] + [m.end() for m in _NEWLINE.finditer(data)]
    for node in _docstring_nodes(tree):
        if node.end_lineno is None or node.end_col_offset is None:
            continue
        start = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        total += _nonws(data[start:end].decode("utf-8", "replace"))
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                total += _nonws(tok.string)
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    return total


def _python_tested(path: str, tree: ast.AST) -> bool:
    if not TEST_PATH.search(path):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            return True
        if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if name.startswith("assert") or name in ("raises", "warns", "approx"):
                return True
    return False


# --- tree-sitter languages ---------------------------------------------------------------------------------


def _ts_tested(language: str, path: str, data: bytes, root: Any) -> bool:
    for node in _nodes(root):
        kind = node.type
        if language == "rust" and kind == "attribute_item":
            attr = data[node.start_byte : node.end_byte].decode("utf-8", "replace")
            if re.fullmatch(r"#\[\s*((\w+::)*test|cfg\(\s*test\s*\))\s*\]", attr):
                return True
        elif language == "go" and kind == "function_declaration" and path.endswith("_test.go"):
            name = node.child_by_field_name("name")
            if name is not None and re.match(
                rb"(Test|Benchmark|Fuzz)([A-Z0-9_]|$)", data[name.start_byte : name.end_byte]
            ):
                return True
        elif language in ("javascript", "c") and kind == "call_expression" and TEST_PATH.search(path):
            fn = node.child_by_field_name("function")
            name = data[fn.start_byte : fn.end_byte] if fn is not None else b""
            wanted = (b"describe", b"it", b"test") if language == "javascript" else (b"assert",)
            if name in wanted or (language == "c" and re.match(rb"(ASSERT|EXPECT|CHECK)", name)):
                return True
    return False


def signals(text: str, path: str, language: str) -> tuple[float, bool]:
    """``(comment and docstring share of the non-whitespace characters, tested)`` of one file."""
    total = _nonws(text)
    if total == 0:
        return 0.0, False
    if language == "python":
        tree = parse_python(text)
        if tree is not None:
            return min(1.0, _python_doc_chars(text, tree) / total), _python_tested(path, tree)
    grammar = LANGUAGE_ALIASES.get(language, language)
    data = text.encode("utf-8", "surrogatepass")
    root = parse(grammar, data)
    if root is not None:
        return min(1.0, _comment_chars(root, data) / total), _ts_tested(grammar, path, data, root)
    doc = sum(_nonws(m.group(0)) for m in FALLBACK_COMMENT.finditer(text))
    tested = bool(TEST_PATH.search(path)) and TEST_MARKER.search(text) is not None
    return min(1.0, doc / total), tested
