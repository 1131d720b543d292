"""Parquet: one row is one document, read in record batches so a large file is never loaded whole.

Row ``n`` (0-based over the whole file) is record ``n``. A file that cannot be opened, or lacks the text
column, gives one quarantined record for the whole file (``parquet_unreadable`` / ``missing_text_field``); a
file that breaks part-way gives the rows read so far and one ``parquet_corrupt`` record for the rest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipes.io.records import quarantined_record
from data_pipes.io.remote import is_url, open_url
from data_pipes.io.rows import ReadContext, row_record

BATCH_ROWS = 256
_ARROW_ERRORS = (OSError, ValueError, pa.ArrowException)


def read_parquet(ctx: ReadContext, batch_rows: int = BATCH_ROWS) -> Iterator[dict[str, str]]:
    """Yield one record per row of ``ctx.path``; never raises for bad input."""
    file_id, file_url = ctx.hashed_id("file"), ctx.shown
    try:
        parquet = pq.ParquetFile(open_url(ctx.path) if is_url(ctx.path) else ctx.path)
        columns = parquet.schema_arrow.names
    except _ARROW_ERRORS as exc:
        error = ctx.shown_error(f"parquet_unreadable: {exc} (file {ctx.path})")
        yield quarantined_record(rid=file_id, source=ctx.source, url=file_url, error=error)
        return
    if ctx.text_field not in columns:
        error = (
            f"missing_text_field: no column {ctx.text_field!r} (columns: {', '.join(columns)}; "
            f"set text_field) (file {ctx.shown})"
        )
        yield quarantined_record(rid=file_id, source=ctx.source, url=file_url, error=error)
        return
    n = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows):
            for row in batch.to_pylist():
                yield row_record(row, ctx, n)
                n += 1
    except _ARROW_ERRORS as exc:
        error = ctx.shown_error(f"parquet_corrupt: {exc} (file {ctx.path}, after row {n})")
        rest_id = ctx.hashed_id(f"{n}+")
        yield quarantined_record(rid=rest_id, source=ctx.source, url=ctx.locator(n), error=error)
