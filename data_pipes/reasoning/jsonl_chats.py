"""User chat sets: JSONL files of ``messages`` as chat records (docs/CHAT_CONTRACT.md), for the `chats` kind;
lines the `sft` stage could not render are quarantined with a reason naming ``<file>#<line>``.

Each line is an object with ``messages`` (a list of ``{"role", "content"}``), optional ``id``, ``tools`` (a list
of JSON schemas), ``mode``, ``domain``, ``difficulty``, ``teacher``, ``problem_id``, ``verified`` and ``meta``;
other keys go to ``meta``. Roles are those of the one chat template (``model/train/chat.py``): ``system``,
``user``, ``assistant``, ``observation``. Transformers' structured tool form is converted to the template's
text form, as the template itself renders it: a ``tool`` message becomes an ``observation`` wrapped in
``<tool_response>``, an assistant's ``tool_calls`` are appended to its content in the XML-like call format.
Tool calls in assistant content must parse against ``tools`` (the check sft makes before training).

Without an ``id`` the id is a stable hash of the file's name (as the caller gives it) and the line number.
Errors: ``chats_bad_json``, ``chats_not_object``, ``chats_no_messages``, ``chats_bad_role``,
``chats_bad_field``, ``chats_bad_tool_call``, ``chats_no_assistant``, ``chats_duplicate_id`` (set by the kind,
which sees every file) and ``chats_unreadable_file``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from data_pipes.code.special_tokens import TOKENS
from data_pipes.io.records import make_id
from data_pipes.reasoning.tool_calls import (
    ToolCallError,
    format_tool_call,
    format_tool_response,
    parse_tool_calls,
)

ROLES = (
    "system",
    "user",
    "assistant",
    "observation",
)  # model/train/chat.py's ROLES (a test checks they match)
TEXT_FIELDS = ("mode", "domain", "difficulty", "teacher", "problem_id")


class _Bad(ValueError):
    """A line that cannot become a chat record; the message is the quarantine error."""


def bad_row(name: str, n: int, error: str) -> dict[str, str]:
    """A quarantined line; ``name`` is the file's name in the rows."""
    return {
        "id": make_id("chats_jsonl", name, n),
        "source": f"jsonl:{os.path.basename(name)}",
        "url": f"{name}#{n}",
        "error": error,
    }


def _calls_text(calls: object, where: str) -> str:
    """Transformers' ``tool_calls`` list in the template's text form."""
    if not isinstance(calls, list):
        raise _Bad(f"chats_bad_field: {where}: 'tool_calls' must be a list, got {type(calls).__name__}")
    parts = []
    for k, call in enumerate(calls):
        fn = call.get("function", call) if isinstance(call, dict) else None
        args = fn.get("arguments", {}) if isinstance(fn, dict) else None
        if isinstance(args, str):  # OpenAI's form: the arguments as a JSON string
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                args = None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(args, dict):
            raise _Bad(
                f"chats_bad_tool_call: {where}: tool_calls[{k}] needs "
                "{'function': {'name': str, 'arguments': object or JSON-object string}}"
            )
        try:
            parts.append(format_tool_call(fn["name"], args))
        except ToolCallError as exc:
            raise _Bad(f"chats_bad_tool_call: {where}: tool_calls[{k}]: {exc}") from None
    return "\n".join(parts)


def _message(m: object, i: int) -> dict[str, str]:
    where = f"messages[{i}]"
    if not isinstance(m, dict):
        raise _Bad(
            f"chats_bad_field: {where} is {type(m).__name__}, expected an object with role and content"
        )
    role = m.get("role")
    if role == "tool":
        role = "observation"
    if role not in ROLES:
        raise _Bad(
            f"chats_bad_role: {where} has role {role!r}; use one of {list(ROLES)} (or 'tool', read as "
            "observation)"
        )
    content = m.get("content")
    calls = m.get("tool_calls")
    if content is None and role == "assistant" and calls:
        content = ""
    if not isinstance(content, str):
        raise _Bad(
            f"chats_bad_field: {where} ({role}) content must be a string, got {type(content).__name__}; "
            "join multi-part content into one string"
        )
    if m.get("role") == "tool" and not content.strip().startswith(TOKENS.tool_response_start):
        content = format_tool_response(content)
    if calls:
        if role != "assistant":
            raise _Bad(f"chats_bad_field: {where}: only assistant messages carry 'tool_calls', not {role!r}")
        calls_text = _calls_text(calls, where)
        content = f"{content}\n{calls_text}" if content else calls_text
    return {"role": role, "content": content}


def chat_fields(obj: object) -> dict[str, Any]:
    """A line's chat record (every CHAT_SCHEMA column but ``id``) and its own id (``None`` when it has none);
    raises :class:`_Bad` with the quarantine error."""
    if not isinstance(obj, dict):
        raise _Bad(f"chats_not_object: line is {type(obj).__name__}, expected an object with 'messages'")
    raw = obj.get("messages")
    if not isinstance(raw, list) or not raw:
        got = "missing" if raw is None else f"a {type(raw).__name__}" if raw != [] else "empty"
        raise _Bad(
            f"chats_no_messages: 'messages' is {got}; it must be a non-empty list of {{role, content}}"
        )
    messages = [_message(m, i) for i, m in enumerate(raw)]
    if not any(m["role"] == "assistant" for m in messages):
        raise _Bad(
            "chats_no_assistant: no assistant message, so nothing to learn; add the assistant's reply or "
            "drop the line"
        )
    rid = obj.get("id")
    if rid is not None and (not isinstance(rid, str | int) or isinstance(rid, bool) or str(rid) == ""):
        raise _Bad(f"chats_bad_field: 'id' must be a non-empty string or integer, got {rid!r}")
    for key in TEXT_FIELDS:
        if key in obj and not isinstance(obj[key], str):
            raise _Bad(f"chats_bad_field: {key!r} must be a string, got {type(obj[key]).__name__}")
    if obj.get("mode") not in (None, "", "thinking", "direct"):
        raise _Bad(
            f"chats_bad_field: 'mode' must be 'thinking' or 'direct' (or left out), got {obj['mode']!r}"
        )
    tools = obj.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise _Bad("chats_bad_field: 'tools' must be a list of JSON schemas (objects)")
    schemas = {t.get("name") or (t.get("function") or {}).get("name"): t for t in tools}
    for i, m in enumerate(messages):
        if m["role"] == "assistant" and TOKENS.tool_call_start in m["content"]:
            try:
                parse_tool_calls(m["content"], schemas)
            except ToolCallError as exc:
                raise _Bad(f"chats_bad_tool_call: messages[{i}]: {exc}") from None
    if "verified" in obj and not isinstance(obj["verified"], bool):
        raise _Bad(f"chats_bad_field: 'verified' must be true or false, got {obj['verified']!r}")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise _Bad("chats_bad_field: 'meta' must be an object")
    known = {"messages", "id", "tools", "verified", "meta", *TEXT_FIELDS}
    extra = {k: v for k, v in obj.items() if k not in known}
    thinking = any(m["role"] == "assistant" and m["content"].startswith("<think>") for m in messages)
    return {
        "own_id": None if rid is None else str(rid),
        "messages": messages,
        "mode": obj.get("mode") or ("thinking" if thinking else "direct"),
        "tools": json.dumps(tools, sort_keys=True, ensure_ascii=False),
        "problem_id": obj.get("problem_id", ""),
        "domain": obj.get("domain") or "chat",
        "difficulty": obj.get("difficulty", ""),
        "teacher": obj.get("teacher") or "user",
        "verified": bool(obj.get("verified", False)),
        "meta": {**extra, **meta},
    }


def chat_rows(path: str, name: str | None = None) -> list[dict[str, Any]]:
    """Rows of the JSONL file at ``path``, in line order, naming it ``name`` (default: its file name): chat
    records, or quarantined lines (a dict with an ``error`` key naming ``name#line`` and the fix)."""
    where = path
    name = name or os.path.basename(where)
    try:
        with open(where, "rb") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        return [bad_row(name, 0, f"chats_unreadable_file: {name}: {str(exc).replace(where, name)}")]
    out: list[dict[str, Any]] = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            out.append(bad_row(name, n, f"chats_bad_json: {name}#{n}: {exc}; write one JSON object per line"))
            continue
        try:
            rec = chat_fields(obj)
        except _Bad as exc:
            prefix, _, rest = str(exc).partition(": ")
            out.append(bad_row(name, n, f"{prefix}: {name}#{n}: {rest}"))
            continue
        own = rec.pop("own_id")
        rec["id"] = own if own is not None else make_id("chats_jsonl", name, n)
        rec["meta"] = json.dumps({**rec["meta"], "path": name, "line": n}, sort_keys=True, default=str)
        rec["url"] = f"{name}#{n}"  # for the duplicate-id check and its message; not a CHAT_SCHEMA column
        out.append(rec)
    return out
