"""The problem table (docs/REASONING.md): one row per problem with a checkable answer or tests.

Problem rows are also valid documents (docs/CONTRACTS.md): ``text`` repeats the prompt, so document stages
(dedup, sampling, union) work on them unchanged.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from data_pipes.io.records import dump_meta

PROBLEM_COLUMNS: tuple[str, ...] = (
    "id",
    "text",
    "source",
    "url",
    "lang",
    "meta",
    "prompt",
    "answer",
    "tests",
    "entry_point",
    "domain",
    "difficulty",
)
PROBLEM_SCHEMA: dict[str, pl.DataType] = {c: pl.String() for c in PROBLEM_COLUMNS}
REQUIRED_FOR_GENERATION: tuple[str, ...] = (
    "id",
    "prompt",
    "answer",
    "tests",
    "entry_point",
    "domain",
    "difficulty",
    "source",
    "meta",
)
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {c: pl.String() for c in ("id", "source", "url", "error")}


def problem_row(
    *,
    id: str,
    prompt: str,
    source: str,
    domain: str,
    difficulty: str,
    answer: str = "",
    tests: str = "",
    entry_point: str = "",
    url: str = "",
    meta: dict[str, Any] | None = None,
) -> dict[str, str]:
    """One problem row with every column of the table, ``meta`` serialised as JSON."""
    return {
        "id": id,
        "text": prompt,
        "source": source,
        "url": url,
        "lang": "",
        "meta": dump_meta(meta or {}),
        "prompt": prompt,
        "answer": answer,
        "tests": tests,
        "entry_point": entry_point,
        "domain": domain,
        "difficulty": difficulty,
    }


def problems_frame(rows: list[dict[str, str]]) -> pl.DataFrame:
    return pl.DataFrame({c: [r[c] for r in rows] for c in PROBLEM_COLUMNS}, schema=PROBLEM_SCHEMA)


def quarantine_frame(rows: list[dict[str, str]]) -> pl.DataFrame:
    return pl.DataFrame(
        {c: [r.get(c, "") for r in rows] for c in QUARANTINE_SCHEMA}, schema=QUARANTINE_SCHEMA
    )


def check_problem_columns(columns: list[str], where: str) -> None:
    """A clear error when an input is not a problem table."""
    missing = [c for c in REQUIRED_FOR_GENERATION if c not in columns]
    if missing:
        raise ValueError(
            f"{where}: not a problem table, missing column(s) {missing}; feed it from a "
            f"`uses: problems` node (docs/REASONING.md)"
        )
