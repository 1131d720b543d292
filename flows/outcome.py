"""What a finished node's counts mean for the run: a node that quarantined every one of its input rows fails it.

A node that quarantines every row it read has no usable output: it is almost always a setup problem (a wrong
format, a missing package, a step that raises on every document), not bad rows. Its output is still stored, so the
quarantined rows and their errors can be read, but the run fails naming the node, and the nodes downstream of it
are skipped (as after any failed node). A node that read no rows at all is not "all quarantined", and a node that
quarantined some of its rows completes (its counts, summary and the run table show them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from flows.errors import AllQuarantinedError

__all__ = [
    "AllQuarantinedError",
    "all_quarantined",
    "all_quarantined_error",
    "blocked_reason",
    "failed_status",
    "quarantine_folder",
    "run_outcome",
]


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


def run_outcome(
    plans: Iterable[Any], manifest_of: Any, deps: Mapping[str, Iterable[str]]
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """What a run would meet, from a plan (``Engine.plan``, in topological order): the nodes it would reuse whose
    stored output quarantined every row (node -> manifest: the run fails there), and the nodes it would skip
    because of them (node -> the failing nodes upstream of it). ``manifest_of(fingerprint)`` reads a manifest."""
    failed: dict[str, dict[str, Any]] = {}
    blocked: dict[str, list[str]] = {}
    for x in plans:
        upstream = sorted({f for d in deps[x.node] for f in ([d] if d in failed else blocked.get(d, []))})
        if upstream:  # a run skips it whatever its own state: it never gets there
            blocked[x.node] = upstream
        elif x.status == "up_to_date" and x.fingerprint:
            manifest = manifest_of(x.fingerprint)
            if manifest is not None and all_quarantined(manifest):
                failed[x.node] = manifest
    return failed, blocked


def failed_status(
    node_id: str, manifest: dict[str, Any], store_location: str, pipeline_file: str
) -> tuple[str, list[str]]:
    """(label, reasons) for `arcflow status` of a node whose stored output quarantined every row: the count, the
    main errors, and where to read them; a run reuses that output and fails again until its input, params or code
    change."""
    n = int(manifest["counts"]["in"])
    errors = manifest.get("quarantine_errors") or {}
    top = ", ".join(f"{e}: {c:,}" for e, c in list(errors.items())[:3])
    more = f", {len(errors) - 3} more" if len(errors) > 3 else ""
    folder = quarantine_folder(store_location, manifest["fingerprint"])
    file = "" if pipeline_file == "pipeline.yaml" else f" -f {pipeline_file}"
    return f"failed (all {n:,} rows quarantined)", [
        f"`arcflow show {node_id}{file}` lists the errors ({top}{more})",
        f"the rows are in {folder}/part-*.parquet",
        "a run reuses this output and fails here until its input, params or code change",
    ]


def blocked_reason(upstream: list[str]) -> str:
    """Why `arcflow status` and `arcflow show` call a node blocked: the nodes upstream that fail a run."""
    names = ", ".join(repr(u) for u in upstream)
    return f"blocked by {names} (every row quarantined): a run fails there and skips this node"
