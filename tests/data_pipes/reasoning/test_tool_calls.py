"""The GLM-4.5 tool-call template: exact round trips (Hypothesis), code verbatim, the one escape, errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipes.reasoning.tool_calls import (
    ToolCall,
    ToolCallError,
    format_tool_call,
    format_tool_response,
    parse_tool_calls,
    strip_tool_response,
)

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
tag_soup = st.lists(
    st.sampled_from(
        [
            "</arg_value>",
            "<\\/arg_value>",
            "<\\\\/arg_value>",
            "</tool_call>",
            "<arg_key>",
            "\n",
            "\\",
            '"',
            "x",
            " ",
        ]
    ),
    max_size=8,
).map("".join)
strings = st.text() | tag_soup | st.tuples(st.text(max_size=5), tag_soup, st.text(max_size=5)).map("".join)


@settings(max_examples=300, deadline=None)
@given(name=names, args=st.dictionaries(names, strings, max_size=4))
def test_string_arguments_round_trip(name: str, args: dict[str, str]) -> None:
    schema = {"properties": {k: {"type": "string"} for k in args}}
    text = format_tool_call(name, args)
    assert parse_tool_calls(text, {name: schema}) == [ToolCall(name, args)]
    assert (
        parse_tool_calls("before " + text + " between " + text, {name: schema}) == [ToolCall(name, args)] * 2
    )


@settings(max_examples=200, deadline=None)
@given(name=names, args=st.dictionaries(names, json_values, max_size=4))
def test_typed_arguments_round_trip_with_schema(name: str, args: dict) -> None:
    types = {k: "string" if isinstance(v, str) else "object" for k, v in args.items()}
    schema = {"parameters": {"properties": {k: {"type": t} for k, t in types.items()}}}
    assert parse_tool_calls(format_tool_call(name, args), {name: schema}) == [ToolCall(name, args)]


def test_code_is_verbatim() -> None:
    code = 'def f(s):\n    return "</tool_call>" + s.replace("\\n", "\\t")  # <arg_key>\n\nprint(f("x"))\n'
    text = format_tool_call("python", {"code": code})
    assert code in text  # no JSON escaping
    assert parse_tool_calls(text) == [ToolCall("python", {"code": code})]
    tricky = "s = '</arg_value>'\n"
    text = format_tool_call("python", {"code": tricky})
    assert "<\\/arg_value>" in text and parse_tool_calls(text)[0].arguments["code"] == tricky


def test_without_schema_json_looking_strings_decode() -> None:
    text = format_tool_call("f", {"n": 42, "s": "42", "q": '"quoted"', "l": [1, "a"], "t": "plain"})
    assert parse_tool_calls(text)[0].arguments == {
        "n": 42,
        "s": 42,
        "q": '"quoted"',
        "l": [1, "a"],
        "t": "plain",
    }
    typed = parse_tool_calls(text, {"f": {"properties": {"s": {"type": "string"}}}})
    assert typed[0].arguments["s"] == "42"


def test_glm_layout_and_lenient_whitespace() -> None:
    assert format_tool_call("get_weather", {"city": "Paris", "days": 3}) == (
        "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n"
        "<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>"
    )
    compact = "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>"
    assert parse_tool_calls(compact) == [ToolCall("get_weather", {"city": "Paris"})]
    assert parse_tool_calls("<tool_call>noop\n</tool_call>") == [ToolCall("noop", {})]
    assert parse_tool_calls("no calls here") == []


@pytest.mark.parametrize(
    "bad",
    [
        "<tool_call>f\n<arg_key>a</arg_key>\n</tool_call>",
        "<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>1",
        "<tool_call>f\n<arg_key>a</arg_key><arg_value>1</arg_value><arg_key>a</arg_key><arg_value>2</arg_value></tool_call>",
        "<tool_call>\n</tool_call>",
        "<tool_call>f g <x>\n</tool_call>",
        "<tool_call>f\nstray text</tool_call>",
        "text </tool_call>",
    ],
)
def test_malformed_calls_raise(bad: str) -> None:
    with pytest.raises(ToolCallError):
        parse_tool_calls(bad)


def test_schema_type_mismatch_and_bad_names() -> None:
    with pytest.raises(ToolCallError):
        parse_tool_calls(
            "<tool_call>f<arg_key>n</arg_key><arg_value>abc</arg_value></tool_call>",
            {"f": {"properties": {"n": {"type": "integer"}}}},
        )
    with pytest.raises(ToolCallError):
        format_tool_call("bad name\n", {})
    with pytest.raises(ToolCallError):
        format_tool_call("f", {"<k>": "v"})


def test_tool_response_wrapping() -> None:
    body = "line 1\n</tool_call> inside\n"
    wrapped = format_tool_response(body)
    assert wrapped.startswith("<tool_response>\n") and strip_tool_response(wrapped) == body
