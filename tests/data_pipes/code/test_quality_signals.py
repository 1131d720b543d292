"""The documented / tested signals on real files: standard-library modules and tests, C headers, matplotlib's
JavaScript; Rust and Go on small files (no real ones ship with Python)."""

from __future__ import annotations

import ast
import json
import re
import sysconfig
from pathlib import Path

import polars as pl
import pytest

from data_pipes.code.quality_parse import parse, parser, signals
from data_pipes.code.quality_rules import QualityRules, classify
from data_pipes.code.repo_order import dependency_graph

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _nonws(text: str) -> int:
    return len(re.sub(r"\s+", "", text))


def _share_oracle(text: str) -> float:
    """1 - code characters / all characters, code = ``ast.unparse`` of the tree without docstrings (which
    also drops every comment): an independent route to the same figure."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    node.body = node.body[1:] or [ast.Pass()]
    return 1 - _nonws(ast.unparse(tree)) / _nonws(text)


@pytest.mark.parametrize("name", ["codeop.py", "_threading_local.py", "textwrap.py", "ast.py"])
def test_python_comment_share_on_stdlib_modules(name: str) -> None:
    text = (STDLIB / name).read_text()
    share, tested = signals(text, name, "python")
    assert share == pytest.approx(_share_oracle(text), abs=0.01)
    assert not tested
    if name == "codeop.py":  # about 60% docstrings and comments (line-start matching saw 9%)
        assert 0.55 < share < 0.65


def test_python_tested_means_real_tests_in_test_files() -> None:
    for rel in ("unittest/test/test_suite.py", "test/test_bisect.py"):
        if (STDLIB / rel).exists():
            assert signals((STDLIB / rel).read_text(), rel, "python")[1], rel
    # unittest/case.py defines TestCase and assert* methods, but it is the framework, not a test
    assert not signals((STDLIB / "unittest/case.py").read_text(), "unittest/case.py", "python")[1]
    app = (STDLIB / "textwrap.py").read_text() + "\n\ndef test_client():\n    return 1\n"
    assert not signals(app, "app/client.py", "python")[1]  # a `def test_client` in application code
    assert signals(app + "\nassert test_client() == 1\n", "tests/test_client.py", "python")[1]
    share, tested = signals("def (:\n# a note\n", "tests/test_x.py", "python")  # no parse: comment regex
    assert share == pytest.approx(6 / 11) and not tested  # "#anote" of "def(:#anote"


@pytest.mark.skipif(not Path("/usr/include/zlib.h").exists(), reason="zlib1g-dev headers not installed")
def test_c_comment_share_on_a_header() -> None:
    share, tested = signals(Path("/usr/include/zlib.h").read_text(), "zlib.h", "c")
    assert share > 0.8 and not tested  # zlib.h is mostly its manual, in comments
    assert parser("c") is not None


def test_javascript_from_matplotlib() -> None:
    import matplotlib

    path = Path(matplotlib.__file__).parent / "backends/web_backend/js/mpl.js"
    text = path.read_text()
    share, tested = signals(text, "js/mpl.js", "javascript")
    lines = sum(_nonws(m) for m in re.findall(r"(?m)^[ \t]*//[^\n]*", text))  # whole-line comments
    blocks = sum(_nonws(m) for m in re.findall(r"/\*.*?\*/", text, re.S))
    comments = lines + blocks
    assert share == pytest.approx(comments / _nonws(text), abs=0.03) and not tested
    spec = "describe('mpl', () => {\n  it('draws', () => { expect(1).toBe(1); });\n});\n"
    assert signals(spec, "web/mpl.test.js", "javascript")[1]
    assert not signals(spec, "web/mpl.js", "javascript")[1]


def test_rust_and_go_tests() -> None:
    rust = "/// Adds.\npub fn add(a: i32) -> i32 { a + 1 } // inline\n\n#[cfg(test)]\nmod tests {\n  #[test]\n  fn t() { assert_eq!(super::add(1), 2); }\n}\n"
    share, tested = signals(rust, "src/lib.rs", "rust")
    assert tested and 0.05 < share < 0.3
    fake = 'pub fn f() -> &str { "#[test]" } // mentions #[test] in a string\n'
    assert not signals(fake, "src/f.rs", "rust")[1]
    go = 'package x\n\nimport "testing"\n\n// TestAdd checks add.\nfunc TestAdd(t *testing.T) {}\n'
    assert signals(go, "x_test.go", "go")[1] and not signals(go, "x.go", "go")[1]
    assert not signals(go.replace("TestAdd(", "Testadd("), "x_test.go", "go")[1]


def test_signals_through_classify() -> None:
    paths = ["codeop.py", "unittest/test/test_suite.py", "unittest/case.py"]
    frame = pl.DataFrame(
        {
            "id": paths,
            "text": [(STDLIB / p).read_text() for p in paths],
            "meta": [json.dumps({"format": "code", "path": p, "language": "python"}) for p in paths],
        }
    )
    out = classify(frame, QualityRules())
    signals_of = dict(zip(out["id"], out["quality_signals"].to_list(), strict=True))
    assert signals_of["codeop.py"] == ["documented"]
    assert "tested" in signals_of["unittest/test/test_suite.py"]
    assert "tested" not in signals_of["unittest/case.py"]


# nesting beyond CPython's parser: a chain of 50,000 operators raises RecursionError during ast construction,
# 200,000 unary minus signs a MemoryError; both are files that do not parse, never a failed node
TOO_DEEP = {"binop.py": "x = " + "+".join(["1"] * 50_000) + "\n", "unary.py": "y = " + "-" * 200_000 + "1\n"}


@pytest.mark.parametrize("name", sorted(TOO_DEEP))
def test_python_nested_beyond_the_parser_falls_back(name: str) -> None:
    text = "# a comment\n" + TOO_DEEP[name]
    share, tested = signals(text, f"tests/test_{name}", "python")
    assert 0.0 < share < 0.01 and tested is False  # the regular-expression fallback found the comment


def test_tree_sitter_parse_is_cancelled_past_its_work_budget() -> None:
    # error recovery over `/* ` repeated makes tree-sitter's C parse quadratic (minutes for a few hundred KB):
    # the parse stops past its budget of progress checks and the file is read by the regular expression
    hostile = '#include "h.h"\n' + "/* " * 2000
    assert parse("c", hostile.encode()) is None
    share, tested = signals(hostile, "src/h.h", "c")
    assert share > 0.99 and tested is False
    # ordinary code of the same size, and minified JavaScript (the densest in progress checks), parse whole
    assert parse("c", "".join(f"/* n */ int a{i};\n" for i in range(400)).encode()) is not None
    minified = "var a=function(b){return b+1};" * 300
    assert parse("javascript", minified.encode()) is not None


def test_docstring_share_with_non_ascii_and_crlf_matches_ast_segments() -> None:
    text = '"""é doc, ünï"""\r\nclass A:\r\n    """ñ — dash"""\r\n    x = "é"  # c\rdef f():\n    "ok"\n'
    tree = ast.parse(text)
    docs = [
        n.body[0].value for n in ast.walk(tree) if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
    ]
    expected = sum(len(re.sub(r"\s+", "", ast.get_source_segment(text, d) or "")) for d in docs) + len("#c")
    share, _ = signals(text, "m.py", "python")
    assert share == pytest.approx(expected / len(re.sub(r"\s+", "", text)))


def test_python_with_a_huge_dotted_import_is_not_parsed() -> None:
    # CPython's parser needs memory growing with the square of a dotted name (16,000 parts: 300 MB)
    text = "# c\nimport " + "a." * 20_000 + "b\n"
    assert signals(text, "m.py", "python")[0] > 0  # the regular-expression fallback
    assert dependency_graph({"m.py": text, "a/__init__.py": ""})["m.py"] == set()
