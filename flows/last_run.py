"""What the store's run records say about nodes whose last run failed, for `arcflow status` and `arcflow plan`.

A node that raised (a ``ParamError``, a missing package, a crash) stores no output, so the store's outputs alone
show it as never run. Its last run record (``runs/<id>/run.json``, the final state of each selected node, next to
``runs/<id>/pipeline.yaml``, the resolved config of that run) says it failed. When the node is as it was in that run,
a run computes it again and fails there, so `status` calls it failed and the nodes downstream of it blocked (as for
a node whose stored output quarantined every row, :mod:`flows.outcome`). When it changed since, it is only not
computed.

"As it was": ``run.json`` keeps, for a node that failed, the fingerprint it was computed at and its one-line
error (:func:`error_line`). The node is as it was when its current fingerprint is that one; when it differs (a
param, its code, a package, an input changed), a run computes it again: `status` says so, naming what changed
where the records show it. A record written before these fields existed (or for a node that failed before its
fingerprint was known: a missing input) has neither, so the match is on what the records hold: the node's kind,
inputs and resolved params in the run's ``pipeline.yaml``, the pipeline's seed, and the content hash of each input
as the run records it (or the latest earlier run that does, for an input outside that run's selection); a code or
package change is not seen by that match.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flows.fingerprint import portable_params
from flows.param_diff import param_changes

__all__ = [
    "FAILED_STATES",
    "LAST_RUN",
    "EVERY_ROW",
    "Failure",
    "ERROR_CHARS",
    "error_line",
    "AT_ANOTHER_FINGERPRINT",
    "last_run_lines",
    "RunRecord",
    "read_runs",
    "LastRunOutcome",
    "last_run_outcome",
    "again_reason",
    "failed_label",
    "failed_reasons",
    "blocked_by_reason",
    "plan_failed_action",
    "node_lines",
]

#: the final task-run states of a node that did not complete (Prefect's names); ``Skipped`` and ``Cancelled`` are
#: not failures of the node itself
FAILED_STATES = ("Failed", "Crashed", "TimedOut")
#: the first line of a run's ``pipeline.yaml`` (``Engine.record_run_start``), before the pipeline file's path
RESOLVED_FROM = "# resolved from "
#: the cause :func:`blocked_by_reason` gives a node upstream that failed in its last run
LAST_RUN = "failed in the last run"
#: the cause :func:`flows.outcome.blocked_reason` gives a node whose stored output quarantined every row
EVERY_ROW = "every row quarantined"
#: how `status` says that a failed node's last run was at another fingerprint than its current one
AT_ANOTHER_FINGERPRINT = "failed in the last run at another fingerprint: will run"
#: the longest one-line error a run record keeps (:func:`error_line`), and the run's summary and `arcflow show`
#: say: a whole first line in practice (what to change is at its end), bounded for a multi-kilobyte message; the
#: `status` table cuts it shorter and points at `arcflow show NODE`
ERROR_CHARS = 2000
#: what changed when a node's fingerprint differs from its failed one but the run's config shows no change
OTHER_CHANGE = "its code, a package version or a file it reads changed"


def error_line(error: BaseException | str | None, node_id: str = "", limit: int = ERROR_CHARS) -> str | None:
    """A failure in one line for the run record: the exception's type and the first non-empty line of its message
    (whitespace collapsed, a leading ``node '<id>': `` dropped), cut to ``limit`` characters with ``…``; a text
    (a state's message) the same without the type. None when there is nothing to say."""
    if error is None:
        return None
    name = type(error).__name__ if isinstance(error, BaseException) else ""
    lines = [" ".join(ln.split()) for ln in str(error).splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    for prefix in (f"node {node_id!r}: ", f"node {node_id}: "):
        first = first.removeprefix(prefix)
    text = f"{name}: {first}" if name and first else name or first
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text or None


@dataclass
class RunRecord:
    """One finished run: its id (``runs/<id>``), each selected node's entry in ``run.json``, and its resolved
    config's nodes and seed (empty when ``pipeline.yaml`` cannot be read)."""

    run_id: str
    finished_at: str
    nodes: dict[str, dict[str, Any]]
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: Any = None
    file: str | None = None  # the pipeline file it was resolved from (its path params are relative to it)


@dataclass
class Failure:
    """A node whose last run failed and that is unchanged since (but, for ``again``, for inputs a run recomputes
    first): a run computes it again and fails there."""

    node: str
    run_id: str
    state: str
    error: str | None  # the one-line error, when the run record holds one
    line: int | None  # the node's line in the pipeline file
    finished_at: str | None = None  # when that run ended (``run.json``'s ``finished_at``, UTC)
    fingerprint: str | None = None  # the fingerprint it failed at, when the run record holds it


def read_runs(store_root: str) -> list[RunRecord]:
    """The finished runs under ``<store_root>/runs``, oldest first (a run without ``run.json`` is still running,
    or was killed before it could write one, and says nothing about its nodes)."""
    runs_dir = os.path.join(store_root, "runs")
    if not os.path.isdir(runs_dir):
        return []
    found: list[tuple[tuple[str, int, str], RunRecord]] = []
    for run_id in os.listdir(runs_dir):
        path = os.path.join(runs_dir, run_id, "run.json")
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            mtime = os.stat(path).st_mtime_ns
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), dict):
            continue
        record = RunRecord(run_id, str(data.get("finished_at") or ""), data["nodes"])
        found.append(((record.finished_at, mtime, run_id), record))
    return [r for _, r in sorted(found, key=lambda t: t[0])]


def _load_config(record: RunRecord, store_root: str) -> None:
    """Fill ``record.config`` and ``record.seed`` from the run's ``pipeline.yaml`` (resolved config)."""
    import yaml

    try:
        with open(os.path.join(store_root, "runs", record.run_id, "pipeline.yaml"), encoding="utf-8") as fh:
            text = fh.read()
        spec = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return
    if isinstance(spec, dict) and isinstance(spec.get("nodes"), dict):
        record.config, record.seed = spec["nodes"], spec.get("seed")
    head = text.split("\n", 1)[0]
    if head.startswith(RESOLVED_FROM):
        record.file = head[len(RESOLVED_FROM) :].strip()


def _input_hash(runs: list[RunRecord], upto: int, name: str) -> str | None:
    """The content hash of node ``name``'s output as the run ``runs[upto]`` read it: its own record there, else the
    latest earlier run that completed it; None when no run records it."""
    for record in reversed(runs[: upto + 1]):
        entry = record.nodes.get(name)
        if isinstance(entry, dict) and entry.get("content_hash"):
            return str(entry["content_hash"])
    return None


def _changes(
    node_id: str,
    runs: list[RunRecord],
    at: int,
    now: Mapping[str, Any],
    seed: Any,
    plans: Mapping[str, Any],
    store_root: str,
    where: tuple[tuple[str, ...], str],
) -> tuple[list[str], list[str]]:
    """What changed in ``node_id`` since the failed run ``runs[at]`` (each change said), and which of its inputs a
    run recomputes first (their outcome is not known yet). With the fingerprint it failed at recorded, the match is
    exact: changed when its current one differs (what changed said from the records where they show it, else
    :data:`OTHER_CHANGE`); with inputs to recompute first, only a change of its config counts. Without it, nothing
    is said changed when that run's config cannot be read (nothing to compare), nor for an input no run recorded.
    ``where``: the kind's path params and the pipeline file, so that params are compared as the fingerprint sees
    them (paths relative to the pipeline's folder)."""
    entry = runs[at].nodes[node_id]
    recomputed = [n for n in now["inputs"] if n not in plans or plans[n].content_hash is None]
    seen = _config_changes(node_id, runs, at, now, seed, plans, store_root, where, recomputed)
    if entry.get("fingerprint"):  # recorded: the exact match
        x = plans[node_id]
        if recomputed or x.fingerprint is None:
            return seen, [] if seen else recomputed
        if x.fingerprint == entry["fingerprint"]:
            return [], []
        return seen or [OTHER_CHANGE], []
    return seen, recomputed


def _config_changes(
    node_id: str,
    runs: list[RunRecord],
    at: int,
    now: Mapping[str, Any],
    seed: Any,
    plans: Mapping[str, Any],
    store_root: str,
    where: tuple[tuple[str, ...], str],
    recomputed: list[str],
) -> list[str]:
    """What the run records show changed in ``node_id`` since the failed run ``runs[at]``: its kind, inputs,
    params (as the fingerprint sees them), the seed, and the content of each input not in ``recomputed``."""
    record = runs[at]
    if not record.config:
        _load_config(record, store_root)
    old = record.config.get(node_id)
    if not isinstance(old, dict):
        return []
    out = []
    if old.get("uses") != now["uses"]:
        out.append(f"kind {old.get('uses')} -> {now['uses']}")
    if list(old.get("inputs") or []) != list(now["inputs"]):
        out.append(f"inputs {old.get('inputs')} -> {now['inputs']}")
    keys, file = where
    then_params = portable_params(old.get("params") or {}, keys, record.file or file)
    out += [f"param {c}" for c in param_changes(then_params, portable_params(now["params"], keys, file))]
    if record.seed != seed:
        out.append("seed changed")
    for name in now["inputs"]:
        if name in recomputed:
            continue
        then = _input_hash(runs, at, name)
        if then is not None and then != plans[name].content_hash:
            out.append(f"input {name!r} changed")
    return out


@dataclass
class LastRunOutcome:
    """What the run records mean for a run (:func:`last_run_outcome`)."""

    failed: dict[str, Failure] = field(default_factory=dict)  # unchanged since its failed run: fails again
    blocked: dict[str, list[str]] = field(default_factory=dict)  # node -> failing nodes upstream: skipped
    cleared: dict[str, str] = field(default_factory=dict)  # node -> what changed since its failed run
    cleared_from: dict[str, Failure] = field(default_factory=dict)  # of ``cleared``: that failed run
    # fails again if the inputs a run recomputes first come out the same
    again: dict[str, Failure] = field(default_factory=dict)
    recomputed: dict[str, list[str]] = field(default_factory=dict)  # of ``again``: those inputs
    unless: dict[str, list[str]] = field(default_factory=dict)  # node -> ``again`` nodes upstream


def last_run_outcome(
    plans: Iterable[Any],
    deps: Mapping[str, Iterable[str]],
    resolved: Mapping[str, Any],
    store_root: str,
    stops: Mapping[str, str] | None = None,
    node_lines: Mapping[str, int] | None = None,
    selected: Iterable[str] | None = None,
    path_params: Mapping[str, tuple[str, ...]] | None = None,
    pipeline_file: str = "pipeline.yaml",
) -> LastRunOutcome:
    """From a plan (``Engine.plan``, in topological order) and the run records: ``failed``, the nodes to compute
    whose last run failed and that are unchanged since; ``blocked``, every node downstream of those or of ``stops``
    (a run skips it); ``cleared``, the nodes whose last run failed but that changed since; ``again``, those whose
    only change can be an input a run recomputes first (it fails again if that input comes out unchanged) and
    ``unless``, the nodes downstream of them. ``resolved`` is ``Engine.resolved_config()``; ``stops`` are the nodes
    already known to fail a run, with why (a stored output that quarantined every row): not looked at again.
    ``selected``: only those nodes (`arcflow plan --node/--from/--to`); blocking follows the edges inside it.
    ``path_params``: each node's kind's path params, compared relative to the ``pipeline_file``'s folder."""
    plans = list(plans)
    by_node = {x.node: x for x in plans}
    chosen = set(selected) if selected is not None else set(by_node)
    stops = stops or {}
    runs = read_runs(store_root)
    last: dict[str, int] = {}
    for i, record in enumerate(runs):
        for node_id in record.nodes:
            last[node_id] = i
    lines = node_lines or {}
    out = LastRunOutcome()
    for x in plans:
        if x.node not in chosen or x.node in stops:
            continue
        inside = [d for d in deps[x.node] if d in chosen]
        roots = [[d] if d in out.failed or d in stops else out.blocked.get(d, []) for d in inside]
        if ups := sorted({f for r in roots for f in r}):
            out.blocked[x.node] = ups  # a run never gets there, whatever its own state
            continue
        if ups := sorted({f for d in inside for f in ([d] if d in out.again else out.unless.get(d, []))}):
            out.unless[x.node] = ups
        if x.status == "up_to_date" or x.node not in last:
            continue
        at = last[x.node]
        entry = runs[at].nodes[x.node]
        state = str(entry.get("state") or "") if isinstance(entry, dict) else ""
        if state not in FAILED_STATES:
            continue
        where = ((path_params or {}).get(x.node, ()), pipeline_file)
        now = resolved["nodes"][x.node]
        changed, recomputed = _changes(
            x.node, runs, at, now, resolved.get("seed"), by_node, store_root, where
        )
        error, fingerprint = entry.get("error"), entry.get("fingerprint")
        failure = Failure(
            x.node,
            runs[at].run_id,
            state,
            " ".join(str(error).split()) if error else None,
            lines.get(x.node),
            runs[at].finished_at or None,
            str(fingerprint) if fingerprint else None,
        )
        if changed:
            if fingerprint:
                why = f"{AT_ANOTHER_FINGERPRINT} (run {runs[at].run_id}; since then: {'; '.join(changed)})"
            else:  # an older record: the config says what changed
                why = (
                    f"not computed since it failed in run {runs[at].run_id}; since then: {'; '.join(changed)}"
                )
            out.cleared[x.node], out.cleared_from[x.node] = why, failure
            continue
        if recomputed:
            out.again[x.node], out.recomputed[x.node] = failure, recomputed
            out.unless.pop(x.node, None)
        else:
            out.failed[x.node] = failure
            out.unless.pop(x.node, None)
    return out


def failed_label(failure: Failure) -> str:
    """`arcflow status`'s label: ``failed (last run)``, or ``crashed (last run)`` for a crashed one."""
    word = "failed" if failure.state == "Failed" else failure.state.lower()
    return f"{word} (last run)"


def failed_reasons(failure: Failure, pipeline_file: str) -> list[str]:
    """Why `arcflow status` (and `arcflow plan`) say a node fails: its last run (with the error when recorded) and
    what a run does about it."""
    file = "" if pipeline_file == "pipeline.yaml" else f" -f {pipeline_file}"
    where = f"{pipeline_file}:{failure.line}" if failure.line else pipeline_file
    head = f"{failure.state.lower()} in run {failure.run_id} ({where})"
    if failure.error:
        first = f"{head}: {failure.error}"
    else:  # the run record keeps no error (an older record): the run's output had it
        first = f"{head}; `arcflow run --node {failure.node}{file}` shows its error"
    same = "same fingerprint" if failure.fingerprint else "kind, params, inputs"
    return [first, f"unchanged since ({same}): a run fails there again until it is fixed"]


def again_reason(failure: Failure, inputs: list[str], pipeline_file: str) -> str:
    """Why a node computed after its inputs may fail again: it failed, and only those inputs can change it."""
    names = " and ".join(repr(i) for i in inputs)
    where = f"{pipeline_file}:{failure.line}" if failure.line else pipeline_file
    return (
        f"{failure.state.lower()} in run {failure.run_id} ({where}); unchanged since but for input {names}, "
        "recomputed first: if that comes out the same, a run fails there again"
    )


def blocked_by_reason(upstream: list[str], causes: Mapping[str, str]) -> str:
    """Why a node is blocked: the wording of :func:`flows.outcome.blocked_reason` (``blocked by 'bad' (failed in
    the last run): a run fails there and skips this node``), each failing node with its cause (``causes``: node ->
    cause; a node not in it failed in its last run), said once when they share it."""
    said = [causes.get(u, LAST_RUN) for u in upstream]
    if len(set(said)) == 1:
        names = f"{', '.join(repr(u) for u in upstream)} ({said[0]})"
    else:
        names = ", ".join(f"{u!r} ({c})" for u, c in zip(upstream, said, strict=True))
    return f"blocked by {names}: a run fails there and skips this node"


def plan_failed_action(failure: Failure) -> str:
    """`arcflow plan`'s action for such a node: it is computed, and fails again unless it is fixed (or the cause was
    transient)."""
    return "compute; fails again unless fixed"


def node_lines(pipeline_file: str) -> dict[str, int]:
    """The line of each node in the pipeline file; empty when it cannot be read again."""
    from flows.yaml_source import YamlSyntaxError, parse_yaml

    try:
        with open(pipeline_file, encoding="utf-8") as fh:
            doc = parse_yaml(fh.read(), pipeline_file)
    except (OSError, UnicodeDecodeError, YamlSyntaxError):
        return {}
    return {
        str(path[1]): line
        for path, line in doc.lines.items()
        if isinstance(path, tuple) and len(path) == 2 and path[0] == "nodes"
    }


def last_run_lines(outcome: LastRunOutcome, node: str, pipeline_file: str) -> list[str]:
    """What `arcflow show NODE` says of ``node``'s failed last run: when it ended, its error, and whether a run
    fails there again (unchanged since) or computes it again (changed since). Empty when its last run did not
    fail (or does not matter: a node upstream fails first)."""
    failure = outcome.failed.get(node) or outcome.again.get(node) or outcome.cleared_from.get(node)
    if failure is None:
        return []
    where = f"{pipeline_file}:{failure.line}" if failure.line else pipeline_file
    when = f", ended {failure.finished_at}" if failure.finished_at else ""
    at = f" at fingerprint {failure.fingerprint[:12]}" if failure.fingerprint else ""
    error = failure.error or f"its error is not recorded; `arcflow run --node {node}` shows it"
    lines = [f"last run {failure.state.lower()}: run {failure.run_id}{when} ({where}){at}: {error}"]
    if node in outcome.failed:
        lines.append(failed_reasons(failure, pipeline_file)[1])
    elif node in outcome.again:
        lines.append(again_reason(failure, outcome.recomputed[node], pipeline_file))
    else:
        lines.append(outcome.cleared[node])
    return lines
