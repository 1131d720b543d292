"""DAG helpers (order, cycles, ancestors, descendants) and the selections of `run --node/--from/--to`."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from flows.dag import ancestors, descendants, find_cycles, topo_order
from flows.engine import select
from flows.errors import SelectionError
from flows.validate import Pipeline, load_pipeline

# node -> its inputs.  a, b are sources; c merges them; d and e branch off c; f joins the branches.
DIAMOND = {"a": [], "b": [], "c": ["a", "b"], "d": ["c"], "e": ["c"], "f": ["d", "e"]}


def _shuffled(deps: dict[str, list[str]], seed: int) -> dict[str, list[str]]:
    rng = random.Random(seed)
    keys = list(deps)
    rng.shuffle(keys)
    return {k: rng.sample(deps[k], len(deps[k])) for k in keys}


def test_topo_order_puts_inputs_first_and_breaks_ties_by_name() -> None:
    assert topo_order(DIAMOND) == ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize("seed", range(5))
def test_topo_order_is_stable_under_declaration_order(seed: int) -> None:
    assert topo_order(_shuffled(DIAMOND, seed)) == ["a", "b", "c", "d", "e", "f"]


def test_topo_order_ready_nodes_by_name_not_by_depth() -> None:
    # z is ready from the start, but sorts after a's user "b": the ready set is kept sorted as it grows
    assert topo_order({"z": [], "a": [], "b": ["a"]}) == ["a", "b", "z"]


def test_topo_order_ignores_inputs_outside_the_graph_and_repeated_edges() -> None:
    assert topo_order({"x": ["outside", "y", "y"], "y": []}) == ["y", "x"]


def test_topo_order_rejects_a_cycle_naming_its_nodes() -> None:
    with pytest.raises(ValueError, match=r"cycle among \['b', 'c'\]"):
        topo_order({"a": [], "b": ["a", "c"], "c": ["b"]})


def test_find_cycles_none_in_a_dag() -> None:
    assert find_cycles(DIAMOND) == []


def test_find_cycles_lists_loops_in_data_flow_order() -> None:
    # b reads a, c reads b, a reads c: data flows a -> b -> c -> a
    assert find_cycles({"a": ["c"], "b": ["a"], "c": ["b"]}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": ["b"], "b": ["a"]}) == [["a", "b", "a"]]


def test_find_cycles_self_loop_and_disjoint_loops() -> None:
    deps = {"s": ["s"], "p": ["q"], "q": ["p"], "x": [], "y": ["x"]}
    assert find_cycles(deps) == [["p", "q", "p"], ["s", "s"]]


def test_find_cycles_same_loop_reported_once_and_unknown_inputs_ignored() -> None:
    deps = {"a": ["b", "missing"], "b": ["a"], "c": ["a", "b"]}
    assert find_cycles(deps) == [["a", "b", "a"]]


def test_ancestors_and_descendants() -> None:
    assert ancestors(DIAMOND, "f") == {"a", "b", "c", "d", "e"}
    assert ancestors(DIAMOND, "d") == {"a", "b", "c"}
    assert ancestors(DIAMOND, "a") == set()
    assert descendants(DIAMOND, "c") == {"d", "e", "f"}
    assert descendants(DIAMOND, "a") == {"c", "d", "e", "f"}
    assert descendants(DIAMOND, "f") == set()


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    """DIAMOND as a real pipeline of real kinds (nothing runs: selection needs only the checked DAG)."""
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        textwrap.dedent("""\
        name: sel
        nodes:
          f: {uses: union, inputs: [d, e]}
          e: {uses: filter, inputs: [c], params: {expr: "length(text) > 10"}}
          d: {uses: sample, inputs: c, params: {fraction: 0.5}}
          c: {uses: union, inputs: [a, b]}
          b: {uses: demo_corpus, params: {parts: [licenses]}}
          a: {uses: demo_corpus, params: {parts: [stdlib_code]}}
        """)
    )
    return load_pipeline(str(path))


def test_pipeline_deps_and_order(pipeline: Pipeline) -> None:
    assert pipeline.deps == DIAMOND  # same graph, declared in another order
    assert pipeline.order == ["a", "b", "c", "d", "e", "f"]


@pytest.mark.parametrize(
    ("kwargs", "nodes", "forced"),
    [
        ({}, ["a", "b", "c", "d", "e", "f"], set()),
        ({"force": True}, ["a", "b", "c", "d", "e", "f"], {"a", "b", "c", "d", "e", "f"}),
        ({"node": "d"}, ["d"], {"d"}),  # just this node, on its inputs' stored outputs, always recomputed
        ({"node": "d", "force": True}, ["d"], {"d"}),
        ({"from_node": "c"}, ["c", "d", "e", "f"], {"c"}),  # the node is forced; downstream reruns if changed
        ({"from_node": "c", "force": True}, ["c", "d", "e", "f"], {"c", "d", "e", "f"}),
        ({"to_node": "d"}, ["a", "b", "c", "d"], set()),  # what d needs, reusing what is up to date
        ({"to_node": "d", "force": True}, ["a", "b", "c", "d"], {"a", "b", "c", "d"}),
        ({"from_node": "c", "to_node": "d"}, ["c", "d"], {"c"}),
        ({"from_node": "a", "to_node": "f"}, ["a", "c", "d", "e", "f"], {"a"}),  # b is not downstream of a
    ],
)
def test_select(pipeline: Pipeline, kwargs: dict, nodes: list[str], forced: set[str]) -> None:
    sel = select(pipeline, **kwargs)
    assert sel.nodes == nodes
    assert sel.forced == forced


@pytest.mark.parametrize("flag", ["node", "from_node", "to_node"])
def test_select_unknown_node_names_the_flag_and_the_nodes(pipeline: Pipeline, flag: str) -> None:
    with pytest.raises(KeyError) as caught:
        select(pipeline, **{flag: "g"})
    option = {"node": "--node", "from_node": "--from", "to_node": "--to"}[flag]
    assert caught.value.args[0] == f"{option} 'g': no such node; nodes are a, b, c, d, e, f"


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"node": "d", "from_node": "d"}, "--node d cannot be combined with --from"),
        ({"node": "d", "to_node": "e"}, "--node d cannot be combined with --to"),
        ({"from_node": "d", "to_node": "e"}, "selects nothing: e is not downstream of d"),  # two siblings
    ],
)
def test_select_rejects_conflicting_flags(pipeline: Pipeline, kwargs: dict, said: str) -> None:
    with pytest.raises(SelectionError, match=said):
        select(pipeline, **kwargs)


def test_select_unknown_node_suggests_a_close_name(pipeline: Pipeline) -> None:
    with pytest.raises(SelectionError) as caught:
        select(pipeline, node="dd")
    assert str(caught.value) == "--node 'dd': no such node; did you mean 'd'?"
