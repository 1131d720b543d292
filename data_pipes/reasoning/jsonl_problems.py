"""User problem sets: JSONL files in the schema of docs/REASONING.md, malformed lines quarantined with a
reason.

Each line is an object with ``prompt`` (required), ``answer`` or ``tests`` (at least one), and optional
``id``, ``domain``, ``difficulty``, ``entry_point`` and ``meta``. Rows name the file by the ``name`` the caller
gives (a path relative to the declared files' folder), never by where it lies on this machine, so the output is
the same in any folder. Without an ``id`` the id is a stable hash of that name and the line number. Errors: ``problems_bad_json``, ``problems_not_object``,
``problems_missing_prompt``, ``problems_no_answer_or_tests``, ``problems_bad_field``,
``problems_unreadable_file``.
"""

from __future__ import annotations

import json
import os

from data_pipes.io.records import make_id
from data_pipes.reasoning.problem_table import problem_row

TEXT_FIELDS = ("prompt", "answer", "tests", "entry_point", "domain", "difficulty", "id")


def _bad(path: str, n: int, error: str) -> dict[str, str]:
    """A quarantined line; ``path`` is the file's name in the rows."""
    return {
        "id": make_id("problems_jsonl", path, n),
        "source": f"jsonl:{os.path.basename(path)}",
        "url": f"{path}#{n}",
        "error": error,
    }


def _row(path: str, n: int, obj: object) -> dict[str, str]:
    """One line's row; ``path`` is the file's name in the rows."""
    if not isinstance(obj, dict):
        return _bad(path, n, f"problems_not_object: line is {type(obj).__name__}, expected an object")
    for key in TEXT_FIELDS:
        if key in obj and not isinstance(obj[key], str | int | float):
            return _bad(
                path, n, f"problems_bad_field: {key!r} must be a string, got {type(obj[key]).__name__}"
            )
    prompt = str(obj.get("prompt") or "").strip()
    if not prompt:
        return _bad(path, n, "problems_missing_prompt: no non-empty 'prompt'")
    answer, tests = str(obj.get("answer", "") or ""), str(obj.get("tests", "") or "")
    if not answer.strip() and not tests.strip():
        return _bad(
            path, n, "problems_no_answer_or_tests: a problem needs 'answer' or 'tests' to be checkable"
        )
    meta = obj.get("meta") or {}
    if not isinstance(meta, dict):
        return _bad(path, n, "problems_bad_field: 'meta' must be an object")
    name = os.path.basename(path)
    pid = str(obj["id"]) if "id" in obj else make_id("problems_jsonl", path, n)
    return problem_row(
        id=f"jsonl:{name}:{pid}",
        prompt=prompt,
        answer=answer,
        tests=tests,
        entry_point=str(obj.get("entry_point", "") or ""),
        domain=str(obj.get("domain") or ("code" if tests else "math")),
        difficulty=str(obj.get("difficulty", "") or "unknown"),
        source=f"jsonl:{name}",
        url=f"{path}#{n}",
        meta={**meta, "path": path, "line": n},
    )


def jsonl_rows(path: str, name: str | None = None) -> list[dict[str, str]]:
    """Rows of the file at ``path``, in line order, naming it ``name`` (default: its file name); a quarantined
    line is a dict with an ``error`` key."""
    where = path
    path = name or os.path.basename(where)
    try:
        with open(where, "rb") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        return [_bad(path, 0, f"problems_unreadable_file: {str(exc).replace(where, path)}")]
    out = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            out.append(_bad(path, n, f"problems_bad_json: {exc}"))
            continue
        out.append(_row(path, n, obj))
    return out
