"""Tool calls in the GLM-4.5 XML-like template: a formatter and a parser that round-trip.

::

    <tool_call>function_name
    <arg_key>key</arg_key>
    <arg_value>value, verbatim</arg_value>
    </tool_call>

Rules:

* **Strings are verbatim** (no JSON escaping): code, quotes, newlines and backslashes appear as they are.
* **Other values are JSON** (numbers, booleans, null, lists, objects).
* **Telling them apart.** With the tool's JSON schema (``schemas={name: schema}``), a property of type
  ``string`` keeps its text and any other type is JSON-decoded: exact round trip. Without a schema, a value
  that decodes as JSON to a non-string is decoded, anything else stays text; so the *string* ``"42"`` comes
  back as the number 42 (the one ambiguity, resolved by passing the schema).
* **The one escape.** The closing tag ``</arg_value>`` cannot appear inside a value verbatim; it is written
  ``<\\/arg_value>``, and to keep that reversible any ``<`` + backslashes + ``/arg_value>`` gains one more
  backslash. Text without that exact sequence is untouched. ``</tool_call>`` inside a value needs no escape:
  the parser reads values by their own closing tag.
* Names and keys are single-line, without ``<``/``>`` or surrounding spaces.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from data_pipes.code.special_tokens import TOKENS

CALL_START, CALL_END = TOKENS.tool_call_start, TOKENS.tool_call_end
KEY_START, KEY_END = TOKENS.arg_key_start, TOKENS.arg_key_end
VALUE_START, VALUE_END = TOKENS.arg_value_start, TOKENS.arg_value_end
_ESCAPED_END = re.compile(r"<(\\*)/arg_value>")
_UNESCAPE_END = re.compile(r"<\\(\\*)/arg_value>")
_NAME = re.compile(r"[^<>\s]+|[^<>\s][^<>\n]*[^<>\s]")


class ToolCallError(ValueError):
    """A malformed tool call (what the agent's judge counts as ``agent_bad_tool_call``)."""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


def escape_value(text: str) -> str:
    return _ESCAPED_END.sub(lambda m: f"<\\{m.group(1)}/arg_value>", text)


def unescape_value(text: str) -> str:
    return _UNESCAPE_END.sub(lambda m: f"<{m.group(1)}/arg_value>", text)


def _check_name(what: str, name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ToolCallError(f"tool-call {what} {name!r} must be one line without '<', '>' or edge spaces")


def format_tool_call(name: str, args: dict[str, Any]) -> str:
    """The call in the template; strings verbatim, everything else as JSON."""
    _check_name("name", name)
    parts = [f"{CALL_START}{name}\n"]
    for key, value in args.items():
        _check_name("argument key", key)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        parts.append(f"{KEY_START}{key}{KEY_END}\n{VALUE_START}{escape_value(text)}{VALUE_END}\n")
    parts.append(CALL_END)
    return "".join(parts)


def _decode(raw: str, expected: str | None) -> Any:
    if expected == "string":
        return raw
    try:
        value = json.loads(raw)
    except ValueError:
        if expected is not None:
            raise ToolCallError(
                f"argument value {raw[:60]!r} is not valid JSON for type {expected!r}"
            ) from None
        return raw
    if expected is None and isinstance(value, str):
        return raw  # text that happens to be a JSON string literal stays as written
    return value


def _prop_type(schema: dict[str, Any] | None, key: str) -> str | None:
    if not schema:
        return None
    props = schema.get("parameters", schema).get("properties", {})
    kind = props.get(key, {}).get("type")
    return kind if isinstance(kind, str) else None


def _parse_one(text: str, pos: int, schemas: dict[str, dict] | None) -> tuple[ToolCall, int]:
    """Parse the call whose ``<tool_call>`` ends at ``pos``; returns it and the index after its end tag."""
    ends = [i for i in (text.find(KEY_START, pos), text.find(CALL_END, pos)) if i >= 0]
    if not ends:
        raise ToolCallError("unterminated <tool_call>")
    name = text[pos : min(ends)].strip()
    _check_name("name", name)
    schema = (schemas or {}).get(name)
    args: dict[str, Any] = {}
    pos = min(ends)
    while text.startswith(KEY_START, pos):
        k_end = text.find(KEY_END, pos)
        if k_end < 0:
            raise ToolCallError(f"{name}: unterminated <arg_key>")
        key = text[pos + len(KEY_START) : k_end]
        _check_name("argument key", key)
        pos = _skip_space(text, k_end + len(KEY_END))
        if not text.startswith(VALUE_START, pos):
            raise ToolCallError(f"{name}: <arg_key>{key}</arg_key> is not followed by <arg_value>")
        v_end = text.find(VALUE_END, pos)
        if v_end < 0:
            raise ToolCallError(f"{name}: unterminated <arg_value> for {key!r}")
        if key in args:
            raise ToolCallError(f"{name}: argument {key!r} given twice")
        args[key] = _decode(unescape_value(text[pos + len(VALUE_START) : v_end]), _prop_type(schema, key))
        pos = _skip_space(text, v_end + len(VALUE_END))
    if not text.startswith(CALL_END, pos):
        raise ToolCallError(f"{name}: expected <arg_key> or </tool_call> at {text[pos : pos + 30]!r}")
    return ToolCall(name, args), pos + len(CALL_END)


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def parse_tool_calls(text: str, schemas: dict[str, dict] | None = None) -> list[ToolCall]:
    """Every tool call in ``text``, in order. ``schemas`` maps tool names to their JSON schema (the tool's
    description with ``parameters``, or the parameters object itself) to type the arguments. Raises
    ``ToolCallError`` on a malformed call."""
    calls, pos = [], 0
    while (start := text.find(CALL_START, pos)) >= 0:
        call, pos = _parse_one(text, start + len(CALL_START), schemas)
        calls.append(call)
    if CALL_END in text[pos:]:
        raise ToolCallError("</tool_call> without an opening <tool_call>")
    return calls


def format_tool_response(content: str) -> str:
    """An observation message's content (docs/CHAT_CONTRACT.md)."""
    return f"{TOKENS.tool_response_start}\n{content}\n{TOKENS.tool_response_end}"


def strip_tool_response(content: str) -> str:
    start, end = TOKENS.tool_response_start, TOKENS.tool_response_end
    body = content.strip()
    if body.startswith(start) and body.endswith(end):
        body = body[len(start) : -len(end)]
        return body[1:-1] if body.startswith("\n") and body.endswith("\n") else body
    return content
