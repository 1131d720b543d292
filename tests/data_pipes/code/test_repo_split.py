"""Cutting a long repository sample along its dependency order, with small imported modules repeated."""

from __future__ import annotations

from data_pipes.code.repo_order import dependency_graph, dependency_order
from data_pipes.code.repo_order_samples import Member, parse_sample, render_parts
from data_pipes.code.repo_split import cut_points

FILLER = "# " + "x" * 300 + "\n"
FILES = {
    "a/__init__.py": "",
    "a/_small.py": "X = 0\n",
    **{f"a/m{k}.py": FILLER for k in range(4)},
    "b/__init__.py": "",
    "b/base.py": "import a._small\n" + FILLER,
    "b/app.py": "from b import base\nfrom a import _small\n" + FILLER,
}


def test_cut_where_fewest_imports_cross() -> None:
    # members 0..4; 4 imports 3: a greedy cut after 3 separates them, the cut before 3 does not
    sizes = [100] * 5
    deps = [[], [], [], [], [3]]
    assert cut_points(sizes, 400, deps) == [0, 3]
    assert cut_points(sizes, 400, [[], [], [], [], []]) == [0, 4]  # nothing crosses: fill the part
    assert cut_points(sizes, None, deps) == [0] and cut_points([], 10, []) == [0]
    assert cut_points([500, 100], 200, [[], []]) == [0, 1]  # a member longer than the budget stands alone


def test_parts_start_with_what_they_need() -> None:
    order = dependency_order(FILES)
    members = [Member(p, FILES[p], path=p) for p in order]
    graph = dependency_graph(FILES)
    whole = len(render_parts("r", members)[0].text)
    parts = render_parts("r", members, max_chars=whole * 2 // 3, deps=graph, repeat_max_chars=100)
    assert len(parts) == 2
    first, second = parts
    assert [m.path for m in second.members][-2:] == ["b/base.py", "b/app.py"]  # the package stays together
    assert [m.path for m in second.repeated] == ["a/_small.py"]  # imported by b, small: copied in front
    repo, texts = parse_sample(second.text)
    assert repo == "r" and [p for p, _ in texts] == ["a/_small.py", *[m.path for m in second.members]]
    assert all(len(p.text) <= whole * 2 // 3 for p in parts)
    assert [m.path for p in parts for m in p.members] == order  # every file once, in dependency order
    no_repeat = render_parts("r", members, max_chars=whole * 2 // 3, deps=graph, repeat_max_chars=0)
    assert all(not p.repeated for p in no_repeat)
