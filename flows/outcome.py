"""What a finished node's counts mean for the run: a node that quarantined every one of its input rows fails it.

A node that quarantines every row it read has no usable output: it is almost always a setup problem (a wrong
format, a missing package, a step that raises on every document), not bad rows. Its output is still stored, so the
quarantined rows and their errors can be read, but the run fails naming the node, and the nodes downstream of it
are skipped (as after any failed node). A node that read no rows at all is not "all quarantined", and a node that
quarantined some of its rows completes (its counts, summary and the run table show them).
"""

from __future__ import annotations

import os
from typing import Any

from flows.errors import AllQuarantinedError

__all__ = ["AllQuarantinedError", "all_quarantined", "all_quarantined_error", "quarantine_folder"]


def all_quarantined(manifest: dict[str, Any]) -> bool:
    """True when the node read at least one row and quarantined every one of them."""
    counts = manifest.get("counts") or {}
    rows_in = int(counts.get("in", 0))
    return rows_in > 0 and int(counts.get("quarantined", 0)) == rows_in


def quarantine_folder(store_location: str, fingerprint: str) -> str:
    """The folder of an output's quarantine shards (``quarantine/part-*.parquet``), in the store as named."""
    if "://" in store_location:
        return f"{store_location.rstrip('/')}/outputs/{fingerprint}/quarantine"
    return os.path.join(store_location, "outputs", fingerprint, "quarantine")


def all_quarantined_error(
    node_id: str, manifest: dict[str, Any], store_location: str, pipeline_file: str
) -> AllQuarantinedError:
    """The error a run ends with for ``node_id``: the count, the main errors, where the rows are and the commands
    that show them. One line, so the run's failure summary keeps it whole."""
    n = int(manifest["counts"]["in"])
    errors = manifest.get("quarantine_errors") or {}
    top = ", ".join(f"{e}: {c:,}" for e, c in list(errors.items())[:3])
    more = f", {len(errors) - 3} more error type(s)" if len(errors) > 3 else ""
    folder = quarantine_folder(store_location, manifest["fingerprint"])
    return AllQuarantinedError(
        f"all {n:,} input row(s) were quarantined ({top}{more}), so its output is not used downstream; the rows "
        f"with their `error` are in {folder}/part-*.parquet: `arcflow show {node_id} -f {pipeline_file}` lists "
        f"the errors, `python -c \"import polars as pl; print(pl.read_parquet('{folder}/*.parquet'))\"` prints the "
        f"rows"
    )
