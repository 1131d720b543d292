"""Condensation order: cycles, files waiting on a cycle, type-only edges and tests, plus the edge counts."""

from __future__ import annotations

from data_pipes.code.repo_condense import components, condensation_order, edge_counts, is_late
from data_pipes.code.repo_order import dependency_edges, dependency_order, split_edges


def test_components_in_import_first_order() -> None:
    graph = {"w": {"x"}, "x": {"y"}, "y": {"x", "z"}, "z": set()}
    assert components(graph, graph) == [["z"], ["x", "y"], ["w"]]


def test_file_waiting_on_a_cycle_comes_after_it() -> None:
    # w only waits on the x <-> y cycle; the global smallest in-degree rule (all three have 1) would emit w first
    graph = {"w": {"x"}, "x": {"y"}, "y": {"x"}}
    order = condensation_order(graph)
    assert order == ["x", "y", "w"]
    counts = edge_counts(order, graph)
    assert (counts.runtime, counts.runtime_satisfied, counts.runtime_in_cycles) == (3, 2, 2)
    assert counts.runtime_outside_cycles == (1, 1)


def test_cycle_breaks_at_smallest_in_degree_inside_the_component() -> None:
    # a imports b and c; b and c import a: b has the fewest imports inside the cycle, ties by path
    assert condensation_order({"a": {"b", "c"}, "b": {"a"}, "c": {"a"}}) == ["b", "a", "c"]


def test_type_only_edges_lose_inside_a_cycle() -> None:
    # a imports b at run time, b imports a only for type checking: b first, whatever the paths
    order = condensation_order({"a": {"b"}, "b": set()}, {"b": {"a"}})
    assert order == ["b", "a"]
    counts = edge_counts(order, {"a": {"b"}}, {"b": {"a"}})
    assert (counts.runtime_satisfied, counts.runtime, counts.type_only_satisfied, counts.type_only) == (
        1,
        1,
        0,
        1,
    )
    # outside a cycle a type-only edge is still honoured
    assert condensation_order({"a": set(), "b": set()}, {"a": {"b"}}) == ["b", "a"]


def test_python_type_checking_imports_are_weak() -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/app.py": "from typing import TYPE_CHECKING\nfrom .helpers import h\n"
        "if TYPE_CHECKING:\n    from .ctx import Ctx\n",
        "pkg/ctx.py": "from . import app\n",
        "pkg/helpers.py": "import typing\nif typing.TYPE_CHECKING:\n    from .app import App\nelse:\n    import pkg.glob\n",
        "pkg/glob.py": "x = 1\n",
    }
    edges = dependency_edges(files)
    assert edges["pkg/app.py"] == {"pkg/helpers.py": "runtime", "pkg/ctx.py": "type"}
    assert edges["pkg/helpers.py"] == {"pkg/app.py": "type", "pkg/glob.py": "runtime"}
    order = dependency_order(files)
    strong, weak = split_edges(edges)
    counts = edge_counts(order, strong, weak)
    assert counts.runtime_satisfied == counts.runtime == 3
    assert order.index("pkg/glob.py") < order.index("pkg/helpers.py") < order.index("pkg/app.py")
    assert order.index("pkg/app.py") < order.index("pkg/ctx.py")


def test_tests_and_examples_follow_the_package() -> None:
    graph = {
        "examples/demo.py": {"pkg/app.py"},
        "pkg/app.py": set(),
        "tests/test_app.py": {"pkg/app.py"},
        "zzz/other.py": set(),
        "pkg/app_test.go": set(),
    }
    order = condensation_order(graph)
    assert order == ["pkg/app.py", "zzz/other.py", "examples/demo.py", "pkg/app_test.go", "tests/test_app.py"]
    assert is_late("src/x.test.ts") and is_late("conftest.py") and not is_late("pkg/testing_utils.py")
