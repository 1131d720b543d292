"""The agent's tools: calculator safety, the python sandbox tool, BM25 search, read-only file tools."""

from __future__ import annotations

import os

import pytest

from data_pipes.reasoning.tools import (
    ToolError,
    calculate,
    calculator_tool,
    file_tools,
    python_tool,
    search_tool,
)
from data_pipes.reasoning.tools_search import BM25Index


def test_calculator() -> None:
    calc = calculator_tool()
    assert calc({"expression": "(3 + 4) * 12 - 2 ** 3"}) == "76"
    assert calc({"expression": "7 / 2"}) == "3.5" and calc({"expression": "sqrt(16) + abs(-1)"}) == "5"
    assert calc({"expression": "10 // 3 + 10 % 3"}) == "4"
    for bad in (
        "__import__('os').system('true')",
        "().__class__",
        "1 / 0",
        "9 ** 9 ** 9",
        "x + 1",
        "'a' * 3",
        "open('f')",
        "[1, 2]",
        "",
    ):
        with pytest.raises(ToolError):
            calculate(bad)
    with pytest.raises(ToolError):
        calc({"expr": "1"})  # unknown argument


def test_python_tool() -> None:
    py = python_tool(timeout_s=3, memory_mb=256)
    assert py({"code": "print(sum(range(10)))"}) == "45"
    with pytest.raises(ToolError, match="timeout"):
        python_tool(timeout_s=1)({"code": "while True: pass"})
    with pytest.raises(ToolError, match="forbidden"):
        py({"code": "open('/etc/passwd').read()"})


def test_search_ranks_the_page_with_the_terms() -> None:
    docs = [
        (f"d{i}", f"https://x/{i}", t)
        for i, t in enumerate(
            ["the quick brown fox", "a lazy dog sleeps", "fox and dog and fox again", "nothing relevant here"]
        )
    ]
    index = BM25Index(docs)
    hits = index.search("fox", k=2)
    assert [h.doc_id for h in hits] == ["d2", "d0"] and hits[0].score > hits[1].score
    assert index.search("zebra") == []
    out = search_tool(index)({"query": "lazy dog"})
    assert out.startswith("[1] id=d1 url=https://x/1")


def test_file_tools_stay_inside(tmp_path) -> None:
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("hello\n")
    (root / "sub" / "b.py").write_text("x = 1\n")
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(tmp_path / "outside.txt", root / "link.txt")
    ls, read = file_tools(str(root))
    assert ls({}) == "a.txt\nlink.txt\nsub/" and ls({"path": "sub"}) == "b.py"
    assert read({"path": "sub/b.py"}) == "x = 1\n"
    for path in ("../outside.txt", "/etc/passwd", "link.txt", "sub/../../outside.txt"):
        with pytest.raises(ToolError, match="outside the workspace"):
            read({"path": path})
    with pytest.raises(ToolError):
        ls({"path": ".."})
    with pytest.raises(ToolError):
        read({"path": "missing.txt"})
