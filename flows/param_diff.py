"""Param differences at the leaves, for `plan`, `status` and `show`: ``buckets.2.epochs: 3 -> 4``.

Nested mappings and equal-length lists are compared item by item, so a change deep inside a list of buckets names
its own path instead of printing both whole lists (which a table then cuts). Long values are shortened.
"""

from __future__ import annotations

import json
from typing import Any

MAX_VALUE_CHARS = 60
UNSET = "(unset)"


def _text(value: Any) -> str:
    if value is _Missing:
        return UNSET
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


class _Missing:
    pass


def param_changes(old: Any, new: Any, path: str = "") -> list[str]:
    """``["path: old -> new", ...]`` for every leaf that differs between ``old`` and ``new`` (JSON-like)."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{path}.{key}" if path else str(key)
            out += param_changes(old.get(key, _Missing), new.get(key, _Missing), sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += param_changes(a, b, f"{path}.{i}" if path else str(i))
        return out
    if isinstance(old, list) and isinstance(new, list):
        return [f"{path}: {len(old)} items -> {len(new)} items ({_text(old)} -> {_text(new)})"]
    return [f"{path}: {_text(old)} -> {_text(new)}"]
