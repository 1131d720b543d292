"""The one chat template: chat records (docs/CHAT_CONTRACT.md) to text, and the assistant spans the loss falls on.

:data:`CHAT_TEMPLATE` is a Jinja template in transformers' dialect. :func:`render_chat` renders it with transformers'
own renderer (the code ``apply_chat_template`` runs), and :func:`install_chat_template` writes it into a tokenizer
folder, so ``AutoTokenizer.from_pretrained(folder).apply_chat_template(messages, tools=tools, tokenize=False)``
gives the same text as training saw.

Layout (GLM-4.5's, with the role tokens of ``data_pipes/code/special_tokens.py``)::

    <|system|>\\n# Tools ... one JSON schema per line ...      only when the record offers tools (no tag
                                                            is written there, so parsing a whole chat finds
                                                            only the assistants' calls)
    <|system|>\\n{content}    <|user|>\\n{content}    <|observation|>\\n{content}
    <|assistant|>\\n<think>\\n{trace}\\n</think>\\n\\n{answer}   thinking mode: the content as the record has it
    <|assistant|>\\n<think></think>\\n{answer}                 direct mode: an empty think block is written first

Every message runs up to the next role token; there is no end-of-turn token, the next role token (or the
``<|endoftext|>`` after the last message) ends an assistant turn, as in GLM-4.5. ``add_generation_prompt`` adds
``<|assistant|>\\n`` (and ``<think></think>\\n`` when ``enable_thinking=False``).

Tool calls. Records carry them inside the assistant content, already in the GLM-4.5 XML form
(``data_pipes/reasoning/tool_calls.py`` formats and parses it). Messages in transformers' structured form
(``tool_calls: [{"function": {"name", "arguments"}}]``) are rendered by the template into the same form:
strings verbatim, other values as JSON, ``</arg_value>`` inside a value written ``<\\/arg_value>``; a ``tool``
role message is an ``observation`` wrapped in ``<tool_response>``. Observations in records are already wrapped.

Loss spans. The template marks each assistant body with ``{% generation %}``; :func:`render_chat` returns those
character spans. :func:`chat_token_mask` turns them into a per-token mask: a token whose characters start inside
a span, plus the token right after each span (the role token or end-of-text that ends the turn, so the model
learns to stop).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from data_pipes.code.special_tokens import TOKENS
from data_pipes.reasoning.tool_calls import ToolCallError, parse_tool_calls

CHAT_TEMPLATE = (
    "{%- if tools -%}"
    "{{- '<|system|>\\n# Tools\\n\\nYou may call the functions below. Their JSON schemas, one per line:\\n' -}}"
    "{%- for tool in tools -%}{{- tool | tojson -}}{{- '\\n' -}}{%- endfor -%}"
    "{{- 'Write each call in the tool-call format, strings verbatim and other values as JSON. '"
    " + 'Results come back as observations.' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- set content = message.content if message.content is string else '' -%}"
    "{%- if message.role == 'assistant' -%}"
    "{{- '<|assistant|>\\n' -}}"
    "{%- generation -%}"
    "{%- if not content.startswith('<think>') -%}{{- '<think></think>\\n' -}}{%- endif -%}"
    "{{- content -}}"
    "{%- for call in message.tool_calls or [] -%}"
    "{%- set fn = call.function if call.function is defined else call -%}"
    "{%- set args = fn.arguments if fn.arguments is mapping else {} -%}"
    "{{- '\\n' if (content or not loop.first) else '' -}}"
    "{{- '<tool_call>' + fn.name + '\\n' -}}"
    "{%- for key, value in args.items() -%}"
    "{{- '<arg_key>' + key + '</arg_key>\\n<arg_value>' -}}"
    "{%- if value is string -%}{{- value | replace('</arg_value>', '<\\\\/arg_value>') -}}"
    "{%- else -%}{{- value | tojson -}}{%- endif -%}"
    "{{- '</arg_value>\\n' -}}"
    "{%- endfor -%}"
    "{{- '</tool_call>' -}}"
    "{%- endfor -%}"
    "{%- endgeneration -%}"
    "{%- elif message.role == 'tool' -%}"
    "{{- '<|observation|>\\n<tool_response>\\n' + content + '\\n</tool_response>' -}}"
    "{%- elif message.role in ['system', 'user', 'observation'] -%}"
    "{{- '<|' + message.role + '|>\\n' + content -}}"
    "{%- else -%}"
    "{{- raise_exception('unknown chat role ' + message.role + '; use system, user, assistant, observation') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|assistant|>\\n' -}}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{- '<think></think>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)

ROLES = ("system", "user", "assistant", "observation")


class ChatRecordError(ValueError):
    """A chat record that cannot be trained on; the message names the file and row."""


@dataclass(frozen=True)
class RenderedChat:
    text: str
    spans: list[tuple[int, int]]  # character spans of the assistant bodies (the loss)


def render_chat(
    messages: Sequence[dict[str, Any]],
    tools: Sequence[dict[str, Any]] | None = None,
    *,
    add_generation_prompt: bool = False,
    **kwargs: Any,
) -> RenderedChat:
    """Render ``messages`` with :data:`CHAT_TEMPLATE` (transformers' renderer) and the assistant spans."""
    from model.hf import hf_import

    render_jinja_template = hf_import(
        "render_jinja_template", module="transformers.utils.chat_template_utils"
    )

    texts, indices = render_jinja_template(
        conversations=[list(messages)],
        tools=list(tools) if tools else None,
        chat_template=CHAT_TEMPLATE,
        return_assistant_tokens_mask=True,
        add_generation_prompt=add_generation_prompt,
        **kwargs,
    )
    spans = [(int(a), int(b)) for a, b in indices[0] if b > a]
    return RenderedChat(texts[0], spans)


def install_chat_template(tokenizer_dir: str) -> str:
    """Write :data:`CHAT_TEMPLATE` into an HF tokenizer folder (``chat_template.jinja``, which transformers
    reads as the tokenizer's ``chat_template``). Returns the file's path."""
    path = os.path.join(tokenizer_dir, "chat_template.jinja")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(CHAT_TEMPLATE)
    return path


def chat_token_mask(
    offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]], n_after: int
) -> np.ndarray:
    """[n_tokens + n_after] int8 loss mask from token character ``offsets`` and assistant ``spans``: 1 on tokens
    starting inside a span and on the token after each span's last token (``n_after`` extra tokens follow the
    text, e.g. the appended end-of-text)."""
    n = len(offsets)
    mask = np.zeros(n + n_after, dtype=np.int8)
    starts = np.array([s for s, _ in offsets], dtype=np.int64)
    for a, b in spans:
        inside = np.nonzero((starts >= a) & (starts < b))[0]
        if len(inside) == 0:
            continue
        mask[inside] = 1
        after = int(inside[-1]) + 1
        if after < len(mask):
            mask[after] = 1
    return mask


def record_messages(record: dict[str, Any], where: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages, tools) of a chat record, checked: known roles, at least one assistant turn, tool calls that
    parse. ``where`` names the record in errors (``file row N``)."""
    messages = record.get("messages") or []
    roles = [m.get("role") for m in messages]
    unknown = sorted({r for r in roles if r not in ROLES})
    if unknown:
        raise ChatRecordError(
            f"{where}: unknown role(s) {unknown}; roles are {list(ROLES)} (docs/CHAT_CONTRACT.md)"
        )
    if "assistant" not in roles:
        raise ChatRecordError(
            f"{where}: record {record.get('id')!r} has no assistant turn, so it has nothing to learn; "
            "fix or filter the upstream chat node (every SFT record needs an assistant message)"
        )
    try:
        tools = json.loads(record.get("tools") or "[]")
    except ValueError as exc:
        raise ChatRecordError(f"{where}: column tools is not a JSON list ({exc})") from None
    schemas = {t.get("name") or t.get("function", {}).get("name"): t for t in tools if isinstance(t, dict)}
    for m in messages:
        if m.get("role") == "assistant" and TOKENS.tool_call_start in (m.get("content") or ""):
            try:
                parse_tool_calls(m["content"], schemas)
            except ToolCallError as exc:
                raise ChatRecordError(f"{where}: malformed tool call in an assistant turn: {exc}") from None
    return [{"role": m["role"], "content": m.get("content") or ""} for m in messages], tools
