"""The document table: column names, types, and conversion from reader records to shard frames."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

DOC_COLUMNS: tuple[str, ...] = ("id", "text", "source", "url", "lang", "meta")
DOC_SCHEMA: dict[str, pl.DataType] = {name: pl.String() for name in DOC_COLUMNS}
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "id": pl.String(),
    "source": pl.String(),
    "url": pl.String(),
    "error": pl.String(),
}


def empty_documents() -> pl.DataFrame:
    return pl.DataFrame(schema=DOC_SCHEMA)


def records_to_frames(records: Iterable[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split reader records into (documents, quarantined). A record with an ``error`` key is quarantined."""
    good: dict[str, list] = {c: [] for c in DOC_COLUMNS}
    bad: dict[str, list] = {c: [] for c in QUARANTINE_SCHEMA}
    for rec in records:
        if "error" in rec:
            for c in QUARANTINE_SCHEMA:
                bad[c].append(rec.get(c, ""))
        else:
            for c in DOC_COLUMNS:
                value = rec.get(c)
                good[c].append("" if value is None else value)
    return pl.DataFrame(good, schema=DOC_SCHEMA), pl.DataFrame(bad, schema=QUARANTINE_SCHEMA)


def check_document_columns(frame: pl.DataFrame, where: str) -> None:
    missing = [c for c in DOC_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{where}: not a document table, missing column(s) {missing}; documents need {list(DOC_COLUMNS)}"
        )
