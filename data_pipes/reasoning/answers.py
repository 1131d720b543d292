"""Reading a response: the ``<think>`` trace, the visible answer part, the final answer and code blocks."""

from __future__ import annotations

import re

THINK_RE = re.compile(r"^\s*<think>(.*?)</think>\s*", re.S)
ANSWER_RE = re.compile(r"(?im)^\s*(?:\*\*)?(?:final answer|answer)(?:\*\*)?\s*[:：]\s*(.+?)\s*$")
CODE_RE = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.S)


def split_think(text: str) -> tuple[str | None, str]:
    """(trace, visible part). ``trace`` is None when the response has no leading ``<think>`` block; an
    unclosed ``<think>`` keeps everything as trace and leaves the visible part empty."""
    m = THINK_RE.match(text)
    if m:
        return m.group(1).strip(), text[m.end() :].strip()
    if text.lstrip().startswith("<think>"):
        return text.lstrip()[len("<think>") :].strip(), ""
    return None, text.strip()


def _boxed(text: str) -> str | None:
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def final_answer(text: str) -> str | None:
    """The answer a response commits to: the last ``Answer:`` line after the trace, else the last
    ``\\boxed{}``, else the last non-empty line. None when there is nothing visible."""
    _trace, visible = split_think(text)
    if not visible:
        return None
    hits = ANSWER_RE.findall(visible)
    if hits:
        return hits[-1].strip().strip("*").strip()
    boxed = _boxed(visible)
    if boxed is not None:
        return boxed
    lines = [ln.strip() for ln in visible.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def extract_code(text: str) -> str | None:
    """The longest fenced Python block of the visible part (models often add a usage example after it)."""
    _trace, visible = split_think(text)
    blocks = CODE_RE.findall(visible or text)
    return max(blocks, key=len) if blocks else None
