"""data_pipes.ast_parse: parses from several threads at once give the same trees as one thread, with no
``SystemError`` from CPython 3.11's shared AST recursion counter."""

from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor

from data_pipes.ast_parse import parse

# nested expressions make the AST constructor recurse deeply, which is where the shared counter went wrong
SOURCES = [
    f"x = {'(' * depth}1{')' * depth}\n" + "def f(a):\n    return [a for a in range(3)]\n"
    for depth in range(20, 60)
]


def test_parallel_parses_equal_serial_ones() -> None:
    expected = [ast.dump(ast.parse(s)) for s in SOURCES]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            got = list(pool.map(lambda s: ast.dump(parse(s)), SOURCES))
            assert got == expected
    assert ast.dump(parse("1 + 2", mode="eval")) == ast.dump(ast.parse("1 + 2", mode="eval"))
