"""What a finished node's counts mean for the run: a node that quarantined every one of its input rows fails it.

A node that quarantines every row it read has no usable output: it is almost always a setup problem (a wrong
format, a missing package, a step that raises on every document), not bad rows. Its output is still stored, so the
quarantined rows and their errors can be read, but the run fails naming the node, and the nodes downstream of it
are skipped (as after any failed node). A node that read no rows at all is not "all quarantined", and a node that
quarantined some of its rows completes (its counts, summary and the run table show them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flows.errors import AllQuarantinedError

__all__ = [
    "AllQuarantinedError",
    "outside_fingerprint_hint",
    "rows_phrase",
    "all_quarantined",
    "all_quarantined_error",
    "blocked_reason",
    "failed_status",
    "quarantine_folder",
    "run_outcome",
    "selection_outcome",
    "if_unchanged_outcome",
    "failing_input_reason",
    "blocked_input_advice",
    "missing_input_reason",
    "fails_again_action",
    "unless_fails_again",
    "plan_blocked_reason",
    "SKIPPED",
    "skipped_message",
]

#: the name of the (Completed) Prefect state a node ends in when a node upstream of it failed: it never ran, so it
#: is no error of its own (Prefect logs a Completed state at INFO, any other final state at ERROR)
SKIPPED = "Skipped"


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


#: error types a reader gives one quarantined record for a whole file (or the rest of one): such a file counts as
#: one input row in a node's counts
FILE_ERRORS = (
    "parquet_unreadable",
    "parquet_corrupt",
    "warc_unreadable",
    "warc_truncated",
    "unreadable_directory",
)


def rows_phrase(n: int) -> str:
    """``1 input row`` / ``3 input rows``."""
    return f"{n:,} input row{'' if n == 1 else 's'}"


def file_note(errors: Mapping[str, int], first: str | None) -> str:
    """A note when some quarantined records stand for whole files (a file that cannot be read, or a Parquet file
    without the text column): each counts as one input row, whatever rows the file holds."""
    whole_file = any(e in FILE_ERRORS for e in errors) or (first or "").startswith("no column ")
    return (
        " (a file that cannot be read, or lacks the text column, counts as one input row)"
        if whole_file
        else ""
    )


def outside_fingerprint_hint(node_id: str, pipeline_file: str) -> str:
    """The way out when the cause was outside the fingerprint: a rerun would reuse the stored output otherwise."""
    file = "" if pipeline_file == "pipeline.yaml" else f" -f {pipeline_file}"
    return (
        "if you fixed something arcflow cannot see (a file it does not fingerprint, a package, an environment "
        f"variable), recompute it with `arcflow run --from {node_id}{file}`"
    )


def first_error(folder: str, error_type: str, limit: int = 200) -> str | None:
    """The message of the first quarantined row with ``error_type`` (without its ``type: `` prefix), cut to
    ``limit`` characters; None when the rows cannot be read here (an object store, a file gone)."""
    if "://" in folder:
        return None
    try:
        import polars as pl

        hit = (
            pl.scan_parquet(os.path.join(folder, "*.parquet"))
            .select("error")
            .filter(pl.col("error").str.starts_with(f"{error_type}:"))
            .head(1)
            .collect()
        )
    except Exception:  # noqa: BLE001 - the counts are said without it
        return None
    if hit.height == 0:
        return None
    text = " ".join(str(hit["error"][0]).split())[len(error_type) + 1 :].strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def all_quarantined_error(
    node_id: str, manifest: dict[str, Any], store_location: str, pipeline_file: str
) -> AllQuarantinedError:
    """The error a run ends with for ``node_id``: the count, the main errors with the first message of the most
    common one, where the rows are, the commands that show them and how to recompute it. One line, so the run's
    failure summary keeps it whole."""
    n = int(manifest["counts"]["in"])
    errors = manifest.get("quarantine_errors") or {}
    top = ", ".join(f"{e}: {c:,}" for e, c in list(errors.items())[:3])
    more = f", {len(errors) - 3} more error type(s)" if len(errors) > 3 else ""
    folder = quarantine_folder(store_location, manifest["fingerprint"])
    first = first_error(folder, next(iter(errors))) if errors else None
    example = f"; the first {next(iter(errors))}: {first}" if first else ""
    were = "was" if n == 1 else "were"
    return AllQuarantinedError(
        f"all {rows_phrase(n)} {were} quarantined ({top}{more}{example}){file_note(errors, first)}, so its output "
        f"is not used downstream; the rows with their `error` are in {folder}/part-*.parquet: `arcflow show "
        f'{node_id} -f {pipeline_file}` lists the errors, `{sys.executable} -c "import polars as pl; '
        f"print(pl.read_parquet('{folder}/*.parquet'))\"` prints the rows; "
        f"{outside_fingerprint_hint(node_id, pipeline_file)}"
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


def selection_outcome(
    plans: Iterable[Any],
    manifest_of: Any,
    deps: Mapping[str, Iterable[str]],
    selected: Iterable[str],
    stored: Callable[[str], bool] | None = None,
) -> tuple[
    dict[str, dict[str, Any]],
    dict[str, list[str]],
    dict[str, list[str]],
    dict[str, dict[str, dict[str, dict[str, Any]]]],
]:
    """What a run of the ``selected`` nodes would meet (`arcflow plan` with --node, --from or --to), from the whole
    plan in topological order: ``failed``, the selected nodes it would reuse whose stored output quarantined every
    row (node -> manifest); ``on_input``, the selected nodes reading such an output of a node outside the selection
    (node -> those inputs: the run fails there with a MissingInputError); ``missing``, the selected nodes reading a
    node outside the selection that has no output a run can read (``stored(node)`` says whether its last stored
    output is there; not up to date and not stored: the run fails there with a MissingInputError), as node ->
    {input: {failing node upstream of that input: its manifest}} (empty when nothing fails upstream: it was never
    built); ``blocked``, the selected nodes downstream of any of these inside the selection (node -> the failing
    nodes upstream: skipped)."""
    plans = list(plans)
    chosen = set(selected)
    every, every_blocked = run_outcome(plans, manifest_of, deps)
    state = {x.node: x.status for x in plans}
    failed: dict[str, dict[str, Any]] = {}
    on_input: dict[str, list[str]] = {}
    missing: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    blocked: dict[str, list[str]] = {}
    for x in plans:
        if x.node not in chosen:
            continue
        inside = [d for d in deps[x.node] if d in chosen]
        stops = failed.keys() | on_input.keys() | missing.keys()
        upstream = sorted({f for d in inside for f in ([d] if d in stops else blocked.get(d, []))})
        if upstream:
            blocked[x.node] = upstream
        elif x.node in every:
            failed[x.node] = every[x.node]
        elif bad := sorted(d for d in deps[x.node] if d in every and d not in chosen):
            on_input[x.node] = bad
        elif stored is not None and (
            gone := {
                d: {f: every[f] for f in every_blocked.get(d, [])}
                for d in deps[x.node]
                if d not in chosen and state.get(d) != "up_to_date" and not stored(d)
            }
        ):
            missing[x.node] = gone
    return failed, on_input, blocked, missing


def if_unchanged_outcome(
    plans: Iterable[Any],
    unforced: Iterable[Any],
    manifest_of: Any,
    deps: Mapping[str, Iterable[str]],
    selected: Iterable[str],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """What a run of the ``selected`` nodes meets when a recomputed input comes out unchanged (`arcflow plan
    --from raw`): ``again``, the selected nodes computed only if an input changes (``pending``) whose stored output
    for the unchanged inputs quarantined every row (node -> manifest: the run reuses it and fails there again);
    ``unless``, the selected nodes downstream of those (node -> them: skipped if they fail again). ``unforced`` is
    the plan of a run without --node/--from/--force, which says what those unchanged inputs give."""
    plans = list(plans)
    chosen = set(selected)
    would_fail, _ = run_outcome(unforced, manifest_of, deps)
    again = {x.node: would_fail[x.node] for x in plans if x.status == "pending" and x.node in would_fail}
    again = {n: m for n, m in again.items() if n in chosen}
    unless: dict[str, list[str]] = {}
    for x in plans:
        if x.node not in chosen or x.node in again:
            continue
        ups = sorted(
            {f for d in deps[x.node] if d in chosen for f in ([d] if d in again else unless.get(d, []))}
        )
        if ups:
            unless[x.node] = ups
    return again, unless


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
    return f"failed (all {n:,} row{'' if n == 1 else 's'} quarantined)", [
        f"`arcflow show {node_id}{file}` lists the errors ({top}{more})",
        f"the rows are in {folder}/part-*.parquet",
        "a run reuses this output and fails here until its input, params or code change; "
        + outside_fingerprint_hint(node_id, pipeline_file),
    ]


def blocked_reason(upstream: list[str]) -> str:
    """Why `arcflow status` and `arcflow show` call a node blocked: the nodes upstream that fail a run."""
    names = ", ".join(repr(u) for u in upstream)
    return f"blocked by {names} (every row quarantined): a run fails there and skips this node"


def failing_input_reason(node_id: str, inputs: list[str]) -> str:
    """Why `arcflow plan` says a selected node fails: an input outside the selection quarantined every row."""
    names = ", ".join(repr(i) for i in inputs)
    return (
        f"input {names} quarantined every row it read, so a run fails here (MissingInputError); fix it, then "
        f"`arcflow run --to {node_id}`"
    )


def blocked_input_advice(
    node_id: str, input_name: str, failing: Mapping[str, dict[str, Any]], pipeline_file: str
) -> str:
    """Why an input of ``node_id`` was never built (the nodes upstream of it that quarantined every row they read
    fail every run, which skips it) and what to do: fix their cause, then run to ``node_id`` (or from the failing
    node when the fix is outside what arcflow fingerprints). One line."""
    file = "" if pipeline_file == "pipeline.yaml" else f" -f {pipeline_file}"
    names = ", ".join(repr(f) for f in failing)
    counts = "; ".join(
        f"{f!r}: all {rows_phrase(int(m['counts']['in']))} quarantined" for f, m in failing.items()
    )
    show = ", ".join(f"`arcflow show {f}{file}`" for f in failing)
    froms = " / ".join(f"`arcflow run --from {f}{file}`" for f in failing)
    return (
        f"a run skips {input_name!r} because {names} upstream of it failed ({counts}); fix that cause ({show} "
        f"lists the errors), then run `arcflow run --to {node_id}{file}`, or {froms} if the fix is outside what "
        "arcflow fingerprints (a file it does not read, a package, an environment variable)"
    )


def missing_input_reason(
    node_id: str, gone: Mapping[str, Mapping[str, dict[str, Any]]], pipeline_file: str
) -> list[str]:
    """Why `arcflow plan` says a selected node fails: an input outside the selection has no stored output (one
    reason an input), with the failing node upstream that keeps it from being built, if any."""
    file = "" if pipeline_file == "pipeline.yaml" else f" -f {pipeline_file}"
    out = []
    for name, failing in gone.items():
        head = f"input {name!r} has no stored output, so a run fails here (MissingInputError)"
        if failing:
            out.append(f"{head}: {blocked_input_advice(node_id, name, failing, pipeline_file)}")
        else:
            out.append(f"{head}; run `arcflow run --to {node_id}{file}` to build it first")
    return out


def fails_again_action(manifest: dict[str, Any]) -> str:
    """`arcflow plan`'s action for a node computed only if its input changes whose stored output for the unchanged
    input quarantined every row."""
    n = int(manifest["counts"]["in"])
    return f"compute if input changes; else fails again: all {n:,} row{'' if n == 1 else 's'} quarantined"


def unless_fails_again(action: str, upstream: list[str]) -> str:
    """`arcflow plan`'s action for a node downstream of such a node: computed unless it fails again."""
    return f"{action} (unless {' or '.join(repr(u) for u in upstream)} fails again)"


def plan_blocked_reason(upstream: list[str], failed: Mapping[str, Any]) -> str:
    """Why `arcflow plan` says a node is skipped: as ``blocked_reason`` when every node it waits on quarantined
    every row; otherwise (one fails on such an input) without saying so of them."""
    if all(u in failed for u in upstream):
        return blocked_reason(upstream)
    return f"blocked by {', '.join(repr(u) for u in upstream)}: a run fails there and skips this node"


def skipped_message(failed: list[str], skipped: Mapping[str, list[str]]) -> str:
    """The message of a skipped node's state: the failed inputs by name, else the skipped inputs with the failed
    nodes upstream of them (``skipped``: skipped input -> those nodes), so that the failed node is always named:
    ``upstream failed: bad`` / ``upstream skipped: after_bad (failed: bad)``. As the run's summary says it."""
    if failed:
        return f"upstream failed: {', '.join(failed)}"
    roots = sorted({r for rs in skipped.values() for r in rs})
    return f"upstream skipped: {', '.join(skipped)}" + (f" (failed: {', '.join(roots)})" if roots else "")
