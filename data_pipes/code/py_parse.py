"""Python source parsed with ``ast``, or ``None`` for a file that does not parse, whatever the reason.

Besides syntax errors and null bytes, CPython's parser fails on nesting it cannot hold (``RecursionError`` /
``MemoryError``, e.g. 100,000 chained operators), and its memory grows with the square of a dotted name's
length in an import (``import a.a.a...`` of 16,000 parts takes 300 MB; of 300,000, more than the machine):
a source holding a dotted name of ``MAX_DOTTED_PARTS`` parts or more is not given to the parser.
"""

from __future__ import annotations

import ast
import re

from data_pipes.ast_parse import parse

MAX_DOTTED_PARTS = 256
_LONG_DOTTED = re.compile(rf"(?:\w+[ \t]*\.[ \t]*){{{MAX_DOTTED_PARTS - 1}}}")


def parse_python(text: str) -> ast.Module | None:
    """The module's tree, or None when it does not parse (see the module docstring)."""
    if _LONG_DOTTED.search(text):
        return None
    try:
        return parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
