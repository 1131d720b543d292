"""Broken pipeline.yaml files: every problem is reported at its exact line and YAML path, with a useful fix.

Each case is a small real pipeline file written to ``tmp_path``; ``a.txt`` next to it is an input file that
exists. An expectation is ``(line, dotted path, [substrings of message + hint])``; line ``None`` means a
``--set`` problem.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

from flows.errors import Problem, SpecError
from flows.validate import load_pipeline
from tasks import registry
from tasks.base import DataType, Kind

HEAD = """\
name: t
sources:
  docs: {paths: [a.txt]}
nodes:
"""  # lines 1-4; the first node starts on line 5

Expect = tuple[int | None, str, list[str]]


@dataclass
class Case:
    id: str
    text: str
    expect: list[Expect]
    overrides: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # substrings that must appear in no problem


def _y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _nodes(text: str) -> str:
    """Node entries, indented under HEAD's ``nodes:``."""
    return textwrap.indent(_y(text), "  ")


CASES = [
    Case(
        "yaml_syntax",
        "name: t\nnodes:\n  a: [1, 2\n",
        [(3, "", ["invalid YAML", "flow sequence on line 3", "close the bracket"])],
    ),
    Case("yaml_tab", "name: t\nnodes:\n\ta: {uses: sample}\n", [(3, "", ["invalid YAML", "tabs"])]),
    Case(
        "yaml_bad_mapping",
        "name: t\nnodes:\n  a: uses: sample\n",
        [(3, "", ["mapping values are not allowed", "quote a value"])],
    ),
    Case(
        "not_a_mapping", "- a\n- b\n", [(1, "", ["must be a YAML mapping, got a list", "name: my_pipeline"])]
    ),
    Case("empty_file", "", [(1, "", ["got an empty file"])]),
    Case("missing_name", "nodes: {}\n", [(1, "name", ["missing required key 'name'", "name: my_pipeline"])]),
    Case(
        "bad_name", "seed: 1\nname: 'my pipeline!'\n", [(2, "name", ["'my pipeline!'", "e.g. 'my_pipeline'"])]
    ),
    Case(
        "unknown_top_key",
        "name: t\nnodse: {}\n",
        [(2, "nodse", ["unknown key 'nodse'", "did you mean 'nodes'"])],
    ),
    Case(
        "unknown_top_key_far", "name: t\nzzz: 1\n", [(2, "zzz", ["unknown key 'zzz'", "valid keys: name,"])]
    ),
    Case(
        "unknown_node_key",
        HEAD
        + _nodes("""
          s:
            uses: sample
            input: docs
            params: {fraction: 0.5}
        """),
        [(7, "nodes.s.input", ["unknown key 'input'", "did you mean 'inputs'"])],
    ),
    Case(
        "unknown_kind_close",
        HEAD
        + _nodes("""
          f:
            inputs: [docs]
            uses: filtr
        """),
        [(7, "nodes.f.uses", ["unknown kind 'filtr'", "did you mean 'filter'", "valid kinds:", "sample"])],
    ),
    Case(
        "unknown_kind_far",
        HEAD + "  f: {uses: qqqqzz}\n",
        [(5, "nodes.f.uses", ["unknown kind 'qqqqzz'", "valid kinds:", "demo_corpus", "sample", "union"])],
        absent=["did you mean"],
    ),
    Case(
        "missing_uses",
        HEAD + "  f:\n    inputs: [docs]\n",
        [(5, "nodes.f.uses", ["missing required key 'uses'", "uses: KIND", "sample"])],
    ),
    Case(
        "unknown_param_key",
        HEAD
        + _nodes("""
          s:
            uses: sample
            inputs: [docs]
            params:
              fracton: 0.5
        """),
        [(9, "nodes.s.params.fracton", ["unknown key 'fracton'", "did you mean 'fraction'"])],
    ),
    Case(
        "bad_param_type",
        HEAD
        + _nodes("""
          s:
            uses: sample
            inputs: [docs]
            params:
              limit: lots
        """),
        [(9, "nodes.s.params.limit", ["valid integer", "'lots'", "keep at most this many"])],
    ),
    Case(
        "param_out_of_range",
        HEAD
        + _nodes("""
          s:
            uses: sample
            inputs: [docs]
            params:
              seed: 3
              fraction: 1.5
        """),
        [(10, "nodes.s.params.fraction", ["less than or equal to 1", "1.5"])],
    ),
    Case(
        "param_model_rule",
        HEAD + "  s:\n    uses: sample\n    inputs: [docs]\n",
        [(5, "nodes.s.params", ["set `fraction`, `limit` or both"])],
        absent=["Value error"],
    ),
    Case(
        "param_literal",
        "name: t\nnodes:\n  d:\n    uses: demo_corpus\n    params:\n      parts: [licenses, stdlib_cod]\n",
        [(6, "nodes.d.params.parts[1]", ["'stdlib_cod'", "did you mean 'stdlib_code'"])],
    ),
    Case(
        "params_not_mapping",
        "name: t\nnodes:\n  d:\n    uses: demo_corpus\n    params: [1]\n",
        [(5, "nodes.d.params", ["expected a mapping", "got a list"])],
    ),
    Case(
        "filter_bad_sql",
        HEAD
        + _nodes("""
          f:
            uses: filter
            inputs: [docs]
            params:
              expr: "length(text >= "
        """),
        [(9, "nodes.f.params.expr", ["cannot parse expression 'length(text >= '"])],
    ),
    Case(
        "filter_reason_not_snake",
        HEAD
        + _nodes("""
          f:
            uses: filter
            inputs: [docs]
            params:
              expr: "length(text) > 3"
              reason: Too-Short
        """),
        [(10, "nodes.f.params.reason", ["'Too-Short'", "snake_case"])],
    ),
    Case(
        "missing_input_close",
        HEAD + "  s:\n    uses: sample\n    inputs: [doc]\n    params: {limit: 1}\n",
        [(7, "nodes.s.inputs[0]", ["input 'doc' is not a node or source", "did you mean 'docs'"])],
    ),
    Case(
        "missing_input_far",
        HEAD + "  s:\n    uses: sample\n    inputs: [zzz]\n    params: {limit: 1}\n",
        [(7, "nodes.s.inputs[0]", ["input 'zzz'", "nodes and sources: docs"])],
    ),
    Case(
        "input_is_itself",
        HEAD + "  u:\n    uses: union\n    inputs: [docs, u]\n",
        [(7, "nodes.u.inputs[1]", ["'u' lists itself as an input", "remove 'u'"])],
        absent=["cycle"],
    ),
    Case(
        "cycle_2",
        HEAD
        + _nodes("""
          a:
            uses: union
            inputs: [docs, b]
          b:
            uses: union
            inputs: [a]
        """),
        [(7, "nodes.a.inputs[1]", ["cycle: a -> b -> a", "remove", "'b' from nodes.a.inputs"])],
    ),
    Case(
        "cycle_3",
        HEAD
        + _nodes("""
          a:
            uses: union
            inputs: [c]
          b:
            uses: union
            inputs: [a]
          c:
            uses: union
            inputs: [b]
        """),
        [(7, "nodes.a.inputs[0]", ["cycle: a -> b -> c -> a", "'c' from nodes.a.inputs"])],
    ),
    Case(
        "too_many_inputs",
        HEAD
        + _nodes("""
          d2:
            uses: demo_corpus
          s:
            uses: sample
            inputs: [docs, d2]
            params: {fraction: 0.5}
        """),
        [(9, "nodes.s.inputs", ["kind 'sample' takes exactly 1 input, got 2", "uses: union"])],
    ),
    Case(
        "too_few_inputs",
        HEAD + "  s:\n    uses: sample\n    params: {fraction: 0.5}\n",
        [(5, "nodes.s.inputs", ["takes exactly 1 input, got 0", "add `inputs: [NODE]`"])],
    ),
    Case(
        "source_with_inputs",
        HEAD + "  d:\n    uses: demo_corpus\n    inputs: [docs]\n",
        [(7, "nodes.d.inputs", ["takes exactly 0 inputs, got 1", "reads no inputs"])],
    ),
    Case(
        "duplicate_key",
        HEAD
        + _nodes("""
          s:
            uses: sample
            inputs: [docs]
          s:
            uses: sample
            params: {limit: 2}
        """),
        [
            (8, "nodes.s", ["duplicate key 's', first set on line 5", "remove or rename"]),
            (8, "nodes.s.inputs", ["takes exactly 1 input, got 0"]),
        ],
    ),
    Case(
        "executor_address",
        "name: t\nexecutor:\n  n_workers: 2\n  address: sched:8786\n",
        [(4, "executor.address", ["'sched:8786' has no scheme", "tcp://sched:8786"])],
        absent=["Value error"],
    ),
    Case(
        "cron_field_count",
        "name: t\nschedules:\n  - cron: '0 3 *'\n",
        [(3, "schedules[0].cron", ["'0 3 *' has 3 field(s), not 5", "'0 3 * * *'"])],
    ),
    Case(
        "cron_bad_field",
        "name: t\nschedules:\n  - timezone: UTC\n    cron: '0 3 * * funday'\n",
        [(4, "schedules[0].cron", ["'0 3 * * funday' is invalid", "day-of-week"])],
    ),
    Case(
        "schedule_timezone",
        "name: t\nschedules:\n  - cron: '@daily'\n    timezone: Europe/Pari\n",
        [(4, "schedules[0].timezone", ["unknown timezone 'Europe/Pari'", "did you mean 'Europe/Paris'"])],
    ),
    Case(
        "schedule_unknown_node",
        HEAD + "  s: {uses: sample, inputs: [docs], params: {limit: 1}}\n"
        "schedules:\n  - cron: '0 3 * * *'\n    nodes: [docs, sampel]\n",
        [(8, "schedules[0].nodes[1]", ["unknown node 'sampel'"])],
    ),
    Case(
        "node_id_not_snake",
        HEAD + "  BadSample:\n    uses: sample\n    inputs: [docs]\n    params: {limit: 1}\n",
        [(5, "nodes.BadSample", ["id 'BadSample' must be lower_snake_case", "rename it to 'bad_sample'"])],
    ),
    Case(
        "source_id_not_snake",
        "name: t\nsources:\n  web-pages: {paths: [a.txt]}\n",
        [(3, "sources.web-pages", ["lower_snake_case", "'web_pages'"])],
    ),
    Case(
        "source_and_node_same_name",
        HEAD + "  docs:\n    uses: demo_corpus\n",
        [(5, "nodes.docs", ["'docs' is both a source and a node", "rename one"])],
    ),
    Case(
        "files_match_nothing",
        "name: t\nsources:\n  docs:\n    paths: [a.txt, missing/*.jsonl]\n",
        [(4, "sources.docs.paths[1]", ["missing/*.jsonl", "matches no file", "relative paths start at"])],
    ),
    Case(
        "source_unknown_key",
        "name: t\nsources:\n  docs: {paths: [a.txt], formt: jsonl}\n",
        [(3, "sources.docs.formt", ["unknown key 'formt'", "did you mean 'format'"])],
    ),
    Case(
        "source_not_mapping",
        "name: t\nsources:\n  docs: a.txt\n",
        [(3, "sources.docs", ["expected a mapping", "'a.txt'", "docs: {paths: [a.txt]}"])],
    ),
    Case(
        "node_not_mapping",
        "name: t\nnodes:\n  d: demo_corpus\n",
        [(3, "nodes.d", ["expected a mapping", "d: {uses: demo_corpus}"])],
    ),
    Case("nodes_is_a_list", "name: t\nnodes:\n  - d\n", [(2, "nodes", ["expected a mapping", "got a list"])]),
    Case(
        "resources_key",
        "name: t\nnodes:\n  d:\n    uses: demo_corpus\n    resources: {gpu: 1}\n",
        [(5, "nodes.d.resources.gpu", ["unknown key 'gpu'", "did you mean 'gpus'"])],
    ),
    Case(
        "retries_negative",
        "name: t\nnodes:\n  d:\n    uses: demo_corpus\n    retries: -1\n",
        [(5, "nodes.d.retries", ["greater than or equal to 0", "-1"])],
    ),
    Case(
        "merged_anchor_line",
        _y("""
        name: t
        nodes:
          d:
            uses: demo_corpus
            params: &p
              items_per_shard: 0
          e:
            uses: demo_corpus
            params: *p
        """),
        [
            (6, "nodes.d.params.items_per_shard", ["greater than or equal to 1"]),
            (9, "nodes.e.params.items_per_shard", ["greater than or equal to 1"]),
        ],
    ),
    Case(
        "several_problems_in_file_order",
        _y("""
        name: t
        nodse: {}
        sources:
          docs: {paths: [a.txt]}
        nodes:
          f:
            uses: filtr
          g:
            uses: sample
            inputs: [q]
            params: {fraction: 2}
          h:
            uses: union
            inputs: [f, g]
            input: [docs]
        """),
        [
            (2, "nodse", ["did you mean 'nodes'"]),
            (7, "nodes.f.uses", ["unknown kind 'filtr'"]),
            (10, "nodes.g.inputs[0]", ["input 'q'"]),
            (11, "nodes.g.params.fraction", ["less than or equal to 1"]),
            (15, "nodes.h.input", ["did you mean 'inputs'"]),
        ],
        absent=["input 'f'", "input 'g'"],
    ),  # f and g exist, even though they are broken themselves
    # ---- --set overrides: problems they cause are located at --set, not at a line of the file ----
    Case(
        "set_bad_value",
        HEAD + "  s:\n    uses: sample\n    inputs: [docs]\n    params: {fraction: 0.5}\n",
        [(None, "nodes.s.params.fraction", ["less than or equal to 1", "3"])],
        overrides=["nodes.s.params.fraction=3"],
    ),
    Case(
        "set_unknown_param",
        HEAD + "  s:\n    uses: sample\n    inputs: [docs]\n    params: {fraction: 0.5}\n",
        [(None, "nodes.s.params.frac", ["unknown key 'frac'", "did you mean 'fraction'"])],
        overrides=["nodes.s.params.frac=0.1"],
    ),
    Case(
        "set_malformed",
        HEAD + "  s:\n    uses: sample\n    inputs: [docs]\n    params: {fraction: 0.5}\n",
        [(None, "nodes.s.params.fraction", ["has no '='", "KEY.PATH=VALUE"])],
        overrides=["nodes.s.params.fraction"],
    ),
    Case(
        "set_unknown_node",
        HEAD + "  s:\n    uses: sample\n    inputs: [docs]\n    params: {fraction: 0.5}\n",
        [(None, "nodes.ss", ["no node 'ss' to override", "did you mean 's'"])],
        overrides=["nodes.ss.params.fraction=0.1"],
    ),
    Case(
        "set_into_scalar",
        "name: t\n",
        [(None, "name.x", ["name is a string 't', not a mapping"])],
        overrides=["name.x=1"],
    ),
    Case(
        "set_bad_yaml_value",
        "name: t\nnodes:\n  d: {uses: demo_corpus}\n",
        [(None, "nodes.d.params.parts", ["'[a' is not valid YAML", "quote it"])],
        overrides=["nodes.d.params.parts=[a"],
    ),
    Case(
        "set_and_file_problems",
        "name: t\nnodes:\n  d:\n    uses: demo_corpus\n    retries: -2\n",
        [
            (5, "nodes.d.retries", ["greater than or equal to 0"]),
            (None, "nodes.d.params.items_per_shard", ["greater than or equal to 1"]),
        ],
        overrides=["nodes.d.params.items_per_shard=0"],
    ),
]


def _problems(tmp_path: Path, text: str, overrides: list[str] | None = None) -> tuple[str, list[Problem]]:
    (tmp_path / "a.txt").write_text("a real document\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path), overrides or [])
    return str(path), caught.value.problems


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_broken_pipeline(tmp_path: Path, case: Case) -> None:
    file, problems = _problems(tmp_path, case.text, case.overrides)
    rendered = "\n".join(p.render() for p in problems)
    assert len(problems) == len(case.expect), rendered
    for problem, (line, path, parts) in zip(problems, case.expect, strict=True):
        assert (problem.file, problem.line) == ((file, line) if line is not None else ("--set", None)), (
            rendered
        )
        assert problem.path == path, rendered
        said = f"{problem.message} {problem.hint}"
        for part in parts:
            assert part in said, f"{part!r} not in {said!r}"
    for part in case.absent:
        assert part not in rendered, rendered


def test_render_names_file_line_path_and_hint(tmp_path: Path) -> None:
    file, problems = _problems(tmp_path, "name: t\nnodse: {}\n")
    assert problems[0].render() == f"{file}:2: nodse: unknown key 'nodse' (did you mean 'nodes'?)"
    assert str(SpecError(problems)) == problems[0].render()


def test_missing_file() -> None:
    with pytest.raises(SpecError) as caught:
        load_pipeline("/nonexistent/pipeline.yaml")
    assert caught.value.problems[0].message == "pipeline file not found"


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(b"name: t\ndescription: caf\xe9\n")
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path))
    (problem,) = caught.value.problems
    assert problem.line == 2 and "not UTF-8" in problem.message


class _TestTokenizerKind(Kind):
    """A tiny source that produces a tokenizer, to exercise the producer/consumer type check."""

    name: ClassVar[str] = "test_tokenizer_source"
    output_type: ClassVar[DataType] = DataType.TOKENIZER


@pytest.fixture
def tokenizer_kind() -> Iterator[str]:
    registry.kind_names()  # load the real kinds first, so ours is the only addition
    registry.register(_TestTokenizerKind)
    try:
        yield _TestTokenizerKind.name
    finally:
        registry._KINDS.pop(_TestTokenizerKind.name, None)


def test_type_mismatch_between_producer_and_consumer(tmp_path: Path, tokenizer_kind: str) -> None:
    text = HEAD + _nodes(f"""
          tok:
            uses: {tokenizer_kind}
          s:
            uses: sample
            inputs: [tok]
            params: {{limit: 3}}
        """)
    file, problems = _problems(tmp_path, text)
    assert [(p.file, p.line, p.path) for p in problems] == [(file, 9, "nodes.s.inputs[0]")]
    assert problems[0].message == (
        f"type mismatch: 'tok' ({tokenizer_kind}) produces tokenizer, but 's' (sample) consumes documents"
    )
    assert problems[0].hint == "nodes that produce documents: docs"


def test_type_check_accepts_matching_types(tmp_path: Path, tokenizer_kind: str) -> None:
    (tmp_path / "a.txt").write_text("a real document\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        HEAD
        + f"  tok: {{uses: {tokenizer_kind}}}\n  s: {{uses: sample, inputs: docs, params: {{limit: 1}}}}\n"
    )
    pipeline = load_pipeline(str(path))
    assert pipeline.deps == {"docs": [], "tok": [], "s": ["docs"]}


def test_registered_test_kind_is_gone_afterwards() -> None:
    assert "test_tokenizer_source" not in registry.kind_names()


def test_good_pipeline_with_override(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a real document\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(HEAD + "  s:\n    uses: sample\n    inputs: [docs]\n    params: {fraction: 0.5}\n")
    pipeline = load_pipeline(str(path), ["nodes.s.params.fraction=0.25", "schedules=[{cron: '0 3 * * *'}]"])
    assert pipeline.nodes["s"].params.fraction == 0.25
    assert pipeline.order == ["docs", "s"]
    assert pipeline.nodes["docs"].params.paths == [str(tmp_path / "a.txt")]


# ---- hostile files: each is one clear problem at its line, never a traceback or a runaway parse ----
def _laughs(levels: int) -> str:
    lines = ["name: t", 'l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


HOSTILE = [
    ("deep_nesting", "name: t\nnodes:\n  a: " + "[" * 500 + "]" * 500 + "\n", 3, ["nested more than 64"]),
    ("deep_mappings", "name: t\nx:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 80)), 67, ["nested"]),
    ("huge_integer", "name: t\nseed: " + "7" * 5001 + "\n", 2, ["integer with 5001 digits", "quote it"]),
    ("billion_laughs", _laughs(9), 7, ["expand to more than 100,000 values"]),
    ("custom_tag", "name: t\nseed: !python/name:os.system 1\n", 2, ["cannot read value"]),
]


@pytest.mark.parametrize(("text", "line", "parts"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_yaml_is_one_clear_problem(tmp_path: Path, text: str, line: int, parts: list[str]) -> None:
    file, problems = _problems(tmp_path, text)
    assert [(p.file, p.line) for p in problems] == [(file, line)], problems
    said = f"{problems[0].message} {problems[0].hint}"
    for part in parts:
        assert part in said, said


def test_alias_reuse_within_the_bound_still_loads(tmp_path: Path) -> None:
    """Aliases are fine as long as their expansion stays small: three levels of nine is 819 values."""
    text = _laughs(3).replace("name: t\n", "name: t\nnodes: {}\n").replace("l0:", "x_l0:")
    text = text.replace("\nl", "\nx_l")
    _, problems = _problems(tmp_path, text)  # the x_l* keys are unknown: a schema problem each, no limit
    assert all("unknown key" in p.message for p in problems), problems


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    file, problems = _problems(tmp_path, "name: t\n# " + "x" * 1_100_000 + "\n")
    assert [p.file for p in problems] == [file]
    assert "larger than 1,000,000 bytes" in problems[0].message


@pytest.mark.parametrize(("key", "what"), [("true", "a boolean"), ("null", "null"), ("~", "null")])
def test_node_named_by_a_yaml_keyword(tmp_path: Path, key: str, what: str) -> None:
    text = HEAD + f"  s: {{uses: sample, inputs: [docs], params: {{limit: 1}}}}\n  {key}:\n    uses: sample\n"
    file, problems = _problems(tmp_path, text)
    first = problems[0]
    assert (first.file, first.line, first.path) == (file, 6, f"nodes.{key}")
    assert f"node name '{key}' is read by YAML as {what}" in first.message
    assert f"'{key}':" in first.hint


def test_quoted_keyword_is_a_plain_node_name(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a real document\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(HEAD + "  'true': {uses: sample, inputs: [docs], params: {limit: 1}}\n")
    assert load_pipeline(str(path)).order == ["docs", "true"]


def test_yaml_1_2_reads_no_as_norwegian(tmp_path: Path) -> None:
    """YAML 1.1 read `no`, `on` and `off` as booleans; the file (and --set values) are YAML 1.2."""
    (tmp_path / "a.txt").write_text("a real document\n")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        HEAD
        + "  l:\n    uses: langid\n    inputs: [docs]\n    params:\n      languages: {no: 0.5, en: 0.3}\n"
    )
    pipeline = load_pipeline(str(path))
    assert pipeline.nodes["l"].params.model_dump()["languages"] == {"no": 0.5, "en": 0.3}
    again = load_pipeline(str(path), ["nodes.l.params.languages={no: 0.2, sv: 0.1}"])
    assert again.nodes["l"].params.model_dump()["languages"] == {"no": 0.2, "sv": 0.1}


def test_pack_without_a_tokenizer_input(tmp_path: Path) -> None:
    """`pack` declares it needs one tokenizer input and at least one documents input (Kind.input_counts)."""
    text = HEAD + "  more: {uses: sample, inputs: [docs], params: {limit: 1}}\n  p:\n    uses: pack\n"
    text += "    inputs: [docs, more]\n"
    file, problems = _problems(tmp_path, text)
    assert [(p.file, p.line, p.path) for p in problems] == [(file, 8, "nodes.p.inputs")]
    assert problems[0].message == "kind 'pack' needs exactly 1 tokenizer input(s), got 0"
    assert "produces tokenizer" in problems[0].hint


def test_pack_with_two_tokenizers(tmp_path: Path, tokenizer_kind: str) -> None:
    text = HEAD + f"  t1: {{uses: {tokenizer_kind}}}\n  t2: {{uses: {tokenizer_kind}}}\n"
    text += "  p: {uses: pack, inputs: [t1, t2, docs]}\n"
    file, problems = _problems(tmp_path, text)
    assert [(p.line, p.message) for p in problems] == [
        (7, "kind 'pack' needs exactly 1 tokenizer input(s), got 2")
    ]
