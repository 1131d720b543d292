"""Per-step training metrics: rows kept in memory, appended to ``metrics.jsonl`` as they come (so a watcher can
stream them) and written whole to ``metrics.parquet`` at each checkpoint and at the end (atomically).

Columns: ``step`` (optimizer steps done), ``samples`` and ``tokens`` (rows and non-padding tokens consumed over all
ranks), ``batch`` (rows in this step's global batch), ``loss`` (the language-model loss, mean over the global
batch's target tokens), ``mtp_loss``, ``aux_loss``, ``lr``, ``grad_norm`` (of the raw gradients, before clipping), ``max_vio`` (largest MaxVio over the MoE layers),
``tok_s`` (non-padding tokens per second of this step, all ranks). A resumed run starts from the rows saved with its
checkpoint, so the file reads as if the run had never stopped (except ``tok_s``, which is measured).
"""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from data_pipes.io.atomic import atomic_path

SCHEMA = pa.schema(
    [
        ("step", pa.int64()),
        ("samples", pa.int64()),
        ("batch", pa.int64()),
        ("tokens", pa.int64()),
        ("loss", pa.float64()),
        ("mtp_loss", pa.float64()),
        ("aux_loss", pa.float64()),
        ("lr", pa.float64()),
        ("grad_norm", pa.float64()),
        ("max_vio", pa.float64()),
        ("tok_s", pa.float64()),
    ]
)


def write_parquet(rows: list[dict], path: str) -> None:
    """All ``rows`` as a Parquet file at ``path`` (temporary name, then rename)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table = pa.Table.from_pylist([{k: r.get(k) for k in SCHEMA.names} for r in rows], schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str) -> list[dict]:
    return pq.read_table(path).to_pylist() if os.path.isfile(path) else []


class MetricsLog:
    """The metrics of one run (rank 0 writes; other ranks keep nothing)."""

    def __init__(self, parquet_path: str, rows: list[dict] | None = None, *, active: bool = True) -> None:
        self.path = parquet_path
        self.jsonl = os.path.splitext(parquet_path)[0] + ".jsonl"
        self.rows: list[dict] = list(rows or [])
        self.active = active
        if active:
            os.makedirs(os.path.dirname(os.path.abspath(parquet_path)), exist_ok=True)
            with open(
                self.jsonl, "w", encoding="utf-8"
            ) as fh:  # the stream restarts from the checkpoint's rows
                fh.writelines(json.dumps(r) + "\n" for r in self.rows)

    def add(self, row: dict) -> None:
        if not self.active:
            return
        self.rows.append(row)
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def save(self, extra_path: str | None = None) -> None:
        """Write ``metrics.parquet`` (and a copy at ``extra_path``, e.g. inside a checkpoint)."""
        if not self.active:
            return
        if extra_path:
            write_parquet(self.rows, extra_path)
        write_parquet(self.rows, self.path)


METRICS_NAME = "metrics.parquet"
