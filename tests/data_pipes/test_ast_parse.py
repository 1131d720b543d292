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


def test_other_libraries_ast_parse_goes_through_the_same_lock() -> None:
    """traceback (3.11 places its carets with ast.parse), Prefect and ast.literal_eval call ``ast.parse``: on
    CPython before 3.13 it is the locked, retried parse once data_pipes.ast_parse is imported."""
    import sys

    from data_pipes import ast_parse

    if sys.version_info < (3, 13):
        assert ast.parse is ast_parse._locked
    assert ast.literal_eval("[1, (2, 'a')]") == [1, (2, "a")]
    ast_parse.install()  # idempotent
    assert ast.dump(ast.parse("a = 1")) == ast.dump(ast_parse._original_parse("a = 1"))


def test_a_parse_that_meets_the_race_is_retried(monkeypatch) -> None:
    """The race itself needs another thread's unlocked conversion to interleave (a ``compile(...,
    PyCF_ONLY_AST)`` elsewhere) and cannot be produced on demand: the original parse is replaced by one that
    fails with CPython's message the first times, as the race does."""
    from data_pipes import ast_parse

    real = ast_parse._original_parse
    calls = {"n": 0}

    def flaky(source, filename="<unknown>", mode="exec", **kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise SystemError("AST constructor recursion depth mismatch (before=96, after=152)")
        return real(source, filename=filename, mode=mode, **kwargs)

    monkeypatch.setattr(ast_parse, "_original_parse", flaky)
    assert ast.dump(parse("x = 1")) == ast.dump(real("x = 1"))
    assert calls["n"] == 3

    def always(source, filename="<unknown>", mode="exec", **kwargs):
        raise SystemError("AST constructor recursion depth mismatch (before=1, after=2)")

    monkeypatch.setattr(ast_parse, "_original_parse", always)
    try:
        parse("x = 1")
    except SystemError as exc:
        assert "recursion depth mismatch" in str(exc)
    else:
        raise AssertionError("a race every time must still raise")

    def other(source, filename="<unknown>", mode="exec", **kwargs):
        raise SystemError("something else")

    monkeypatch.setattr(ast_parse, "_original_parse", other)
    calls["n"] = 0
    try:
        parse("x = 1")
    except SystemError as exc:
        assert str(exc) == "something else"
    else:
        raise AssertionError("another SystemError is not retried")
