"""User problem sets: JSONL files in the schema of docs/REASONING.md, malformed lines quarantined with a
reason.

Each line is an object with ``prompt`` (required), ``answer`` or ``tests`` (at least one), and optional
``id``, ``domain``, ``difficulty``, ``entry_point`` and ``meta``. Every text field must be a JSON string (``id``
may also be an integer, ``meta`` an object, any of them ``null`` for absent); a line with a wrongly typed field
is quarantined (``problems_bad_field``), never converted. Rows name the file by the ``name`` the caller
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

TEXT_FIELDS = ("prompt", "answer", "tests", "entry_point", "domain", "difficulty")
"""Fields that must be JSON strings when present (``null`` counts as absent); ``id`` may also be an integer and
``meta`` must be an object."""


def _bad(path: str, n: int, error: str) -> dict[str, str]:
    """A quarantined line; ``path`` is the file's name in the rows."""
    return {
        "id": make_id("problems_jsonl", path, n),
        "source": f"jsonl:{os.path.basename(path)}",
        "url": f"{path}#{n}",
        "error": error,
    }


def _got(value: object) -> str:
    shown = json.dumps(value, ensure_ascii=False)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


def _field_error(path: str, n: int, obj: dict) -> str | None:
    """The ``problems_bad_field`` message of the first wrongly typed field, or None. Nothing is converted: a
    number where a string belongs (``"tests": 5``) is a mistake in the file, not a value to guess at."""
    where = f"problems_bad_field: {path}#{n}: field"
    for key in TEXT_FIELDS:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            return (
                f"{where} {key!r} must be a string (got {_got(value)}); write it as a JSON string"
                f"{' of Python test code' if key == 'tests' else ''} or leave the field out"
            )
    pid = obj.get("id")
    if pid is not None and (isinstance(pid, bool) or not isinstance(pid, str | int)):
        return f"{where} 'id' must be a string or an integer (got {_got(pid)}); fix it or leave the field out"
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        return (
            f"{where} 'meta' must be an object (got {_got(meta)}); wrap it in {{...}} or leave the field out"
        )
    return None


def _row(path: str, n: int, obj: object) -> dict[str, str]:
    """One line's row; ``path`` is the file's name in the rows."""
    if not isinstance(obj, dict):
        return _bad(path, n, f"problems_not_object: line is {type(obj).__name__}, expected an object")
    error = _field_error(path, n, obj)
    if error:
        return _bad(path, n, error)
    prompt = str(obj.get("prompt") or "").strip()
    if not prompt:
        return _bad(path, n, "problems_missing_prompt: no non-empty 'prompt'")
    answer, tests = str(obj.get("answer", "") or ""), str(obj.get("tests", "") or "")
    if not answer.strip() and not tests.strip():
        return _bad(
            path, n, "problems_no_answer_or_tests: a problem needs 'answer' or 'tests' to be checkable"
        )
    meta = obj.get("meta") or {}
    name = os.path.basename(path)
    pid = str(obj["id"]) if obj.get("id") is not None else make_id("problems_jsonl", path, n)
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
