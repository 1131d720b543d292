"""The `arcflow` command line (typer). Exit codes: 0 success, 1 a run failed, 2 invalid pipeline or usage."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flows.errors import NodeFailedError, SpecError, StoreLockedError
from flows.validate import Pipeline, load_pipeline

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Declarative, cached, resumable data pipelines.",
)
console = Console()
err = Console(stderr=True)


def _flags_show_no_type() -> None:
    """typer's rich help prints a type for every option, so flags read `--force <bool>` although they take no
    value (and `--force true` is an error). Show no type for options that are flags."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "arcflow_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich.arcflow_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_show_no_type()


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"arcflow {version('arcflow')}")
        except PackageNotFoundError:
            typer.echo("arcflow (not installed: run ./scripts/setup)")
        raise typer.Exit()


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", help="print the version and exit", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Declarative, cached, resumable data pipelines."""


FileOpt = Annotated[str, typer.Option("--file", "-f", help="the pipeline file")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override: nodes.NAME.params.KEY=VALUE")]
NodeOpt = Annotated[
    str | None, typer.Option("--node", help="rerun just this node on its inputs' stored outputs")
]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from", help="recompute this node, then its consumers if its output changed (early cut-off)"
    ),
]
ToOpt = Annotated[
    str | None, typer.Option("--to", help="run only what this node (or comma-separated nodes) needs")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="ignore stored outputs of the selected nodes")]


def _load(file: str, overrides: list[str] | None) -> Pipeline:
    try:
        return load_pipeline(file, overrides or [])
    except SpecError as exc:
        err.print(f"[bold red]{file} is invalid[/] ({len(exc.problems)} problem(s)):")
        for p in exc.problems:
            err.print("  " + p.render(), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def validate(file: FileOpt = "pipeline.yaml", set_: SetOpt = None) -> None:
    """Check the pipeline: schema, kinds, params, inputs, types and cycles. Reports every problem at once."""
    p = _load(file, set_)
    console.print(
        f"[green]ok[/]: {file}: pipeline {p.spec.name!r}, {len(p.nodes)} nodes, "
        f"{sum(len(d) for d in p.deps.values())} edges"
    )


def _engine(p: Pipeline) -> Any:
    from flows.engine import Engine
    from flows.store import Store

    store = Store(p.workdir)
    _check_store(store)  # before the engine reads its refs
    return Engine(p, store=store)


def _check_store(store: Any) -> None:
    """One line and exit 1 when the store cannot be read: written by a newer arcflow, or an object store that
    cannot be used (``Store.check_format``); before a command reads anything of it."""
    try:
        store.check_format()
    except StoreLockedError as exc:
        err.print(f"[red]{exc}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _selection(p: Pipeline, node: str | None, from_: str | None, to: str | None, force: bool) -> Any:
    from flows.engine import select

    try:
        return select(p, node, from_, to, force)
    except KeyError as exc:
        err.print(str(exc.args[0]), style="red", highlight=False)
        raise typer.Exit(2) from None


STATUS_STYLE = {
    "up_to_date": "green",
    "stale": "yellow",
    "missing": "red",
    "pending": "yellow",
    "partial": "yellow",
    "failed": "red",  # `status`: its stored output quarantined every row, so a run fails there
    "blocked": "red",  # `status`: downstream of a failed node, so a run skips it
}
WIDE = 120  # from this console width, `status` also shows each node's kind and fingerprint
WHY_LINES = 3  # a reason column cell wraps over at most this many lines; `arcflow plan` lists every reason
MIN_WHY = 30  # narrower than this, the reasons go under each node instead of into a table column


def _why_text(reasons: list[str], width: int, node: str = "") -> str:
    """The reasons joined, cut to about ``WHY_LINES`` lines of ``width`` characters, saying how many were left
    (and, with ``node``, that `arcflow show NODE` says a cut reason whole)."""
    budget = max(20, width) * WHY_LINES - 12
    text = "; ".join(reasons)
    if len(text) <= budget:
        return text
    if node and len(reasons[0]) > budget - 14:  # a failed run's error cut: say where it is whole
        more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
        hint = f" (whole: arcflow show {node}){more}"
        return reasons[0][: max(20, budget - len(hint))].rstrip() + "…" + hint
    shown: list[str] = []
    for reason in reasons:
        if len("; ".join([*shown, reason])) > budget - 14:
            break
        shown.append(reason)
    if not shown:  # one very long reason
        return reasons[0][: budget - 14] + "…" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else "")
    return "; ".join(shown) + f"; (+{len(reasons) - len(shown)} more)"


def _status_label(engine: Any, x: Any, running: str | None = None) -> tuple[str, list[str]]:
    """(label, reasons) for a node: ``partial (6/16 shards)`` when a run stopped with some shards done, or is
    computing it now (``running``: the lock holder, ``Store.run_in_progress``); ``partial (step 4/40)`` for a
    training stage whose stopped run left a DeepSpeed checkpoint (:func:`_training_partial`)."""
    from flows.engine import shard_progress

    label = {"pending": "stale"}.get(x.status, x.status)
    reasons = list(x.reasons)
    if x.status in ("missing", "stale") and x.fingerprint:
        done, total = shard_progress(engine.store.output_dir(x.fingerprint))
        if done:
            label = "partial"
            of = f"{done}/{total} shards" if total else f"{done} shards"
            # a first run that was stopped has no refs yet: its plan says "never run", which it no longer is
            kept = [r for r in reasons if not r.startswith("stored output missing") and r != "never run"]
            then = (
                f"a run is computing the rest now ({running})"
                if running
                else "`arcflow run` resumes with the rest"
            )
            reasons = [f"{of} done; {then}", *kept]
            return f"partial ({of})", reasons
        # a training stage (pretrain, midtrain, sft, grpo) stopped: its DeepSpeed checkpoint, resumed next run
        trained = _training_partial(engine, x, running)
        if trained is not None:
            return trained
    return label, reasons


def _training_partial(engine: Any, x: Any, running: str | None) -> tuple[str, list[str]] | None:
    """(label, reasons) of a missing or stale training stage whose stopped run left a checkpoint (``partial (step
    4/40)``: ``checkpoint at step 4 of 40; the next run resumes there``) or stopped before its first one; None
    when no run of it left anything."""
    from flows.status_view import training_progress

    node = engine.pipeline.nodes.get(x.node)
    got = training_progress(engine.store.output_dir(x.fingerprint), node.params if node else None)
    if got is None:
        return None
    label = {"pending": "stale"}.get(x.status, x.status)
    kept = [r for r in x.reasons if not r.startswith("stored output missing") and r != "never run"]
    return got.label(label), [got.reason(running), *kept]


@app.command()
def plan(
    file: FileOpt = "pipeline.yaml",
    set_: SetOpt = None,
    node: NodeOpt = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    force: ForceOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as JSON")] = False,
) -> None:
    """What `run` would do: each selected node as up to date (reused) or to compute, and why (every reason,
    with param changes down to the changed item, e.g. `param buckets.2.epochs: 3 -> 4`); as `status` says, a node
    whose stored output quarantined every row fails the run (not reused) and the nodes downstream are skipped; a
    node whose input outside the selection was never built fails (naming the failed node that blocks it); a node
    computed only if its input changes says when it fails again if that input comes out unchanged."""
    from flows import last_run as lr
    from flows import outcome as oc
    from flows.outcome import failed_status, failing_input_reason, plan_blocked_reason, selection_outcome
    from flows.status_view import missing_input_notes, plan_marks

    p = _load(file, set_)
    sel = _selection(p, node, from_, to, force)
    engine = _engine(p)
    every = engine.plan(sel)
    failed, on_input, blocked, missing = selection_outcome(
        every, engine.store.manifest, p.deps, sel.nodes, lambda n: engine.last_output(n) is not None
    )  # missing: an input outside the selection with no stored output (never built, or blocked by a failure)
    again, unless = oc.if_unchanged_outcome(every, engine.plan(), engine.store.manifest, p.deps, sel.nodes)
    plans = [x for x in every if x.node in set(sel.nodes)]
    causes = ((failed, lr.EVERY_ROW), (on_input, "input unusable"), (missing, "input missing"))
    stops = {n: why for found, why in causes for n in found}  # the nodes `plan` already says fail a run
    # failed in its last run (run.json) and unchanged since: computed, and fails again; what that blocks
    actions = {"up_to_date": "reuse", "pending": "compute if input changes"}
    plain = {x.node: actions.get(x.status, "compute") for x in every}
    marks = plan_marks(engine, every, sel.nodes, stops, [*stops, *again, *unless], plain)
    gone = missing_input_notes(engine, every, missing)  # an input not built because it failed in its last run
    if as_json:
        out = []
        for x in plans:
            entry = dict(x.__dict__)
            if mark := marks.get(x.node):
                entry.update(reasons=mark.compose(x.reasons), **mark.extra)
            elif x.node in failed:  # as `arcflow show --json` says it
                entry["status"] = "all_quarantined"
                entry["reasons"] = failed_status(x.node, failed[x.node], engine.store.location, p.file)[1]
            elif x.node in on_input:
                entry["status"] = "input_all_quarantined"
                entry["reasons"] = [failing_input_reason(x.node, on_input[x.node])]
            elif x.node in missing:
                entry["status"] = "input_missing"
                entry["reasons"] = [
                    *oc.missing_input_reason(x.node, missing[x.node], p.file),
                    *gone.get(x.node, []),
                ]
                entry["blocked_by"] = sorted({f for g in missing[x.node].values() for f in g})
            elif x.node in blocked:
                entry["blocked_by"] = blocked[x.node]
            elif x.node in again:  # computed if its input changes, else it fails again
                entry["if_inputs_unchanged"] = "all_quarantined"
            elif x.node in unless:
                entry["unless_fails_again"] = unless[x.node]
            out.append(entry)
        typer.echo(json.dumps(out, indent=2))
        return
    rows = []
    for x in plans:
        action, style, reasons = actions.get(x.status, "compute"), STATUS_STYLE[x.status], x.reasons
        if mark := marks.get(x.node):  # `compute; else fails again: failed in the last run`, `skip (blocked)`
            action, reasons = mark.label or action, mark.compose(x.reasons)
            style = STATUS_STYLE[mark.style] if mark.style else style
        elif x.node in failed:  # a run reuses its output and fails there: the same words as `status`
            # `failed (all 3 rows quarantined)`
            action, reasons = failed_status(x.node, failed[x.node], engine.store.location, p.file)
            style = STATUS_STYLE["failed"]
        elif x.node in on_input:  # `--node` over such an output: the run fails here
            action, style = "fail (input unusable)", STATUS_STYLE["failed"]
            reasons = [failing_input_reason(x.node, on_input[x.node])]
        elif x.node in missing:  # `--node` over an input never built: the run fails here
            action, style = "fail (input missing)", STATUS_STYLE["failed"]
            reasons = [*oc.missing_input_reason(x.node, missing[x.node], p.file), *gone.get(x.node, [])]
        elif x.node in blocked:
            action, style = "skip (blocked)", STATUS_STYLE["blocked"]
            reasons = [plan_blocked_reason(blocked[x.node], failed), *reasons]
        elif x.node in again:  # `--from raw`: if raw comes out unchanged, its stored failure is reused
            action = oc.fails_again_action(again[x.node])
            reasons = [*reasons, *failed_status(x.node, again[x.node], engine.store.location, p.file)[1][:2]]
        elif x.node in unless:
            action = oc.unless_fails_again(action, unless[x.node])
        rows.append((x.node, p.nodes[x.node].uses, action, style, reasons))
    fixed = [max((len(r[0]) for r in rows), default=4), max((len(r[1]) for r in rows), default=4)]
    fixed.append(max([24, *(len(r[2]) for r in rows)]))
    if console.width - sum(fixed) - 3 * (len(fixed) + 1) - 1 < MIN_WHY:
        _print_as_list(f"plan: {p.spec.name}", [(n, f"({k})", f"[{st}]{a}[/]", r) for n, k, a, st, r in rows])
        return
    table = Table(title=f"plan: {p.spec.name}")
    table.add_column("node", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("why", overflow="fold")
    for node_id, uses, action, style, reasons in rows:
        # one reason a line, never cut
        table.add_row(node_id, uses, f"[{style}]{action}[/]", Text("\n".join(reasons)))
    console.print(table)


def _print_as_list(title: str, rows: list[tuple[str, str, str, Any]], max_lines: int | None = None) -> None:
    """Rows as ``node  meta  state`` lines with their reasons indented below: what `plan` and `status` print when
    a table would squeeze the reasons out (long node names in a narrow terminal)."""
    from rich.padding import Padding

    console.print(f"[bold]{title}[/]", highlight=False)
    width = max(20, console.width - 4)
    for node_id, meta, state, reasons in rows:
        console.print(Text(node_id, style="bold"), meta, state, highlight=False)
        if not reasons:
            continue
        why = _why_text(reasons, width, node_id) if max_lines else "\n".join(reasons)
        console.print(Padding(Text(why), (0, 0, 0, 4)), highlight=False)


@app.command()
def status(file: FileOpt = "pipeline.yaml", set_: SetOpt = None) -> None:
    """Each node as up to date, stale (and why), partial (a run stopped with some shards done, or a training
    stage's checkpoint the next run resumes from) or missing;
    failed when its stored output quarantined every row or its last run failed and it is unchanged since (a run
    fails there), blocked when downstream of one."""
    from flows.outcome import blocked_reason, failed_status, run_outcome
    from flows.status_view import status_marks

    p = _load(file, set_)
    engine = _engine(p)
    wide = console.width >= WIDE
    rows = []
    plans = engine.plan()
    failed, blocked = run_outcome(plans, engine.store.manifest, p.deps)
    marks = status_marks(engine, plans, failed)  # failed in the last run (run.json), and what that blocks
    running = engine.store.run_in_progress()
    for x in plans:
        label, reasons = _status_label(engine, x, running)
        m = engine.store.manifest(x.fingerprint) if x.status == "up_to_date" else None
        kept = f"{m['counts']['kept']:,}" if m else ""
        style = STATUS_STYLE["partial" if label.startswith("partial") else x.status]
        if x.node in failed:
            label, reasons = failed_status(x.node, failed[x.node], engine.store.location, p.file)
            style = STATUS_STYLE["failed"]
        elif mark := marks.get(x.node):
            label, reasons = mark.label or label, mark.compose(reasons)
            style = STATUS_STYLE[mark.style] if mark.style else style
        elif x.node in blocked:
            label, reasons, style = (
                "blocked",
                [blocked_reason(blocked[x.node]), *reasons],
                STATUS_STYLE["blocked"],
            )
        rows.append((x.node, p.nodes[x.node].uses, label, style, reasons, kept, (x.fingerprint or "")[:12]))
    fixed = [max(len(r[0]) for r in rows), max(len(r[2]) for r in rows), max(len(r[5]) for r in rows), 4]
    if wide:
        fixed += [max(len(r[1]) for r in rows), 12]
    why_width = console.width - sum(fixed) - 3 * (len(fixed) + 1) - 1
    if why_width < MIN_WHY:
        listed = [(r[0], r[5] and f"kept {r[5]}", f"[{r[3]}]{r[2]}[/]", r[4]) for r in rows]
        _print_as_list(f"status: {p.spec.name}", listed, max_lines=WHY_LINES)
        return
    table = Table(title=f"status: {p.spec.name}")
    table.add_column("node", no_wrap=True)
    if wide:
        table.add_column("kind", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("why", overflow="fold")
    table.add_column("kept", justify="right", no_wrap=True)
    if wide:
        table.add_column("fingerprint", no_wrap=True)
    for node, uses, label, style, reasons, kept, fp in rows:
        why = Text(_why_text(reasons, why_width, node))
        cells: list[Any] = [node, *([uses] if wide else []), f"[{style}]{label}[/]", why, kept]
        table.add_row(*cells, *([fp] if wide else []))
    console.print(table)


@app.command()
def run(
    file: FileOpt = "pipeline.yaml",
    set_: SetOpt = None,
    node: NodeOpt = None,
    from_: FromOpt = None,
    to: ToOpt = None,
    force: ForceOpt = False,
    wait: Annotated[bool, typer.Option("--wait", help="queue behind another run on the same store")] = False,
    deployment: Annotated[
        str | None,
        typer.Option(
            "--deployment", help="start a flow run of this Prefect deployment instead of running here"
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's logs")] = False,
) -> None:
    """Run the pipeline (or a selection of it) as a Prefect flow; shards run on Dask. Reports to the server
    at PREFECT_API_URL, else to a running `arcflow server`, else to Prefect's ephemeral API."""
    p = _load(file, set_)
    sel = _selection(p, node, from_, to, force)
    if deployment:
        _run_deployment(deployment, p, node, from_, to, force, set_ or [])
        return
    from contextlib import ExitStack

    _check_scheduler(p)  # a wrong executor.address: one line now, not a hang or a node's failure later
    with ExitStack() as held:
        # the store's lock first: a second run on a busy store fails (or queues) before Prefect starts
        _hold_store_lock(held, p, wait)
        _run_here(p, sel, file, node, from_, to, force, set_ or [], verbose)


def _check_scheduler(p: Pipeline) -> None:
    if not p.spec.executor.address:
        return
    from flows.executor import SchedulerUnreachableError, check_scheduler

    try:
        check_scheduler(p.spec.executor.address)
    except SchedulerUnreachableError as exc:
        err.print(Text(f"{p.file}: {exc}", style="red"), soft_wrap=True)
        raise typer.Exit(1) from None


def _hold_store_lock(held: Any, p: Pipeline, wait: bool) -> None:
    from flows.store import Store

    store = Store(p.workdir)
    try:
        held.enter_context(store.lock(wait=False))
        return
    except StoreLockedError as exc:
        if not wait or getattr(exc, "final", False):  # final: an object store that cannot be used at all
            err.print(f"[red]{exc}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        err.print(f"[yellow]{str(exc).split(';')[0]}; queued (--wait) until it finishes[/]", soft_wrap=True)
    try:
        held.enter_context(store.lock(wait=True))
    except StoreLockedError as exc:
        err.print(f"[red]{exc}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _run_here(
    p: Pipeline,
    sel: Any,
    file: str,
    node: str | None,
    from_: str | None,
    to: str | None,
    force: bool,
    overrides: list[str],
    verbose: bool,
) -> None:
    from flows.local_server import detect

    server = detect()  # a running `arcflow server`, when no API is configured
    if not os.environ.get("PREFECT_API_URL"):
        # Prefect's ephemeral API: its output goes to a log file (flows/ephemeral_api.py), warnings and up
        os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    # Dask's INFO lines and its warnings at shutdown ("Worker process still alive ... killing") only with -v
    os.environ.setdefault("ARCFLOW_DASK_LOG_LEVEL", "INFO" if verbose else "ERROR")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the embedded (ephemeral) API migrates its database on first start; that can take a while on a busy machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    import logging

    logging.getLogger("distributed").setLevel(logging.INFO if verbose else logging.ERROR)
    from flows.cli_progress import RichProgress
    from flows.engine import PROGRESS_HOOKS
    from flows.prefect_flow import arcflow_pipeline, quiet_prefect_shutdown

    if server is None:  # the ephemeral API, started now with its output in a log, not on the terminal
        from flows.ephemeral_api import EphemeralApiError, start

        try:
            start(verbose)
        except EphemeralApiError as exc:  # exit_code 2: PREFECT_HOME or its database cannot be written
            err.print(Text(str(exc), style="red"), soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
    if server is not None:
        err.print(
            f"Prefect API: the local arcflow server at {server.ui_url}", highlight=False, soft_wrap=True
        )
    started = time.perf_counter()
    state: Any = None
    with RichProgress(console, sel.nodes, plain=err) as bars, quiet_prefect_shutdown(verbose):
        PROGRESS_HOOKS.append(bars.update)
        try:
            state = arcflow_pipeline(
                pipeline=file,
                node=node,
                from_node=from_,
                to_node=to,
                force=force,
                overrides=overrides,
                wait_for_lock=False,  # held by this process already
                return_state=True,
            )
            results = state.result()
        except StoreLockedError as exc:
            err.print(f"[red]{exc}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except NodeFailedError as exc:  # each failed node's YAML line and error; tracebacks: Prefect's logs
            err.print(Text(f"run failed: {exc}", style="red"), soft_wrap=True)
            _print_ui_link(state)
            raise typer.Exit(1) from None
        except Exception as exc:  # the flow failed: the node's error is in Prefect's logs and here
            err.print(f"[red]run failed: {type(exc).__name__}: {exc}[/]")
            _print_ui_link(state)
            raise typer.Exit(1) from None
        finally:
            PROGRESS_HOOKS.remove(bars.update)
    reused = sum(1 for s in results.values() if s == "Cached")
    if len(results) - reused:
        _print_run_table(p, results)
    console.print(
        f"[green]done[/] in {time.perf_counter() - started:.1f}s: {len(results)} node(s), "
        f"{reused} reused, {len(results) - reused} computed"
    )
    _print_ui_link(state)


def _print_ui_link(state: Any) -> None:
    """Where to watch the flow run, when a real server (not the ephemeral API) holds it."""
    ui = os.environ.get("PREFECT_UI_URL")
    if not ui and os.environ.get("PREFECT_API_URL", "").endswith("/api"):
        ui = os.environ["PREFECT_API_URL"][: -len("/api")]
    run_id = getattr(getattr(state, "state_details", None), "flow_run_id", None)
    if ui and run_id:
        console.print(f"flow run: {ui}/runs/flow-run/{run_id}", soft_wrap=True, highlight=False)


def _print_run_table(p: Pipeline, results: dict[str, str]) -> None:
    """The computed nodes' accounting, from their manifests."""
    from flows.store import Store

    store = Store(p.workdir)
    refs = store.read_refs(p.spec.name)
    rows: list[tuple[str, list[str], str]] = []
    for node, state in results.items():
        ref = refs.get(node)
        manifest = store.manifest(ref["fingerprint"]) if state != "Cached" and ref else None
        if manifest is None:
            continue
        c = manifest["counts"]
        reasons = manifest.get("drop_reasons") or {}
        top = max(reasons.items(), key=lambda kv: kv[1]) if reasons else None
        counts = [f"{c.get(k, 0):,}" for k in ("in", "kept", "dropped", "quarantined", "out")]
        rows.append((node, counts, f"{top[0]} ({top[1]:,})" if top else ""))
    heads = ("in", "kept", "dropped", "quarantined", "out")
    fixed = [max((len(r[0]) for r in rows), default=4)]
    fixed += [max(len(h), *(len(r[1][i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    if console.width - sum(fixed) - 3 * (len(fixed) + 1) - 1 < MIN_WHY:
        # a narrow terminal: node names whole, the counts and the top reason on the next line
        listed = [
            (
                n,
                ", ".join(f"{h} {v}" for h, v in zip(heads, counts, strict=True)),
                "",
                [f"top drop reason: {why}"] if why else [],
            )
            for n, counts, why in rows
        ]
        _print_as_list("computed nodes", listed)
        return
    table = Table(title="computed nodes")
    table.add_column("node", no_wrap=True)
    for col in heads:
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("top drop reason", overflow="fold")
    for node, counts, why in rows:
        table.add_row(node, *counts, why)
    console.print(table)


def _need_api(what: str) -> str:
    """The Prefect API to talk to (PREFECT_API_URL, else a running `arcflow server`), or exit 2 saying how to
    get one: `arcflow deploy` and `run --deployment` fail alike without a server."""
    from flows.local_server import configured_api_url, detect

    detect()
    url = configured_api_url()
    if url:
        return url
    err.print(
        f"[red]{what}: no Prefect server configured[/]; start one with `arcflow server start` (it is then found "
        f"automatically), or set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) to the server that holds the "
        f"deployments",
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(2)


def _run_deployment(
    name: str,
    p: Pipeline,
    node: str | None,
    from_: str | None,
    to: str | None,
    force: bool,
    overrides: list[str],
) -> None:
    """Start a flow run of the Prefect deployment ``name`` (``arcflow/<name>`` unless it names its flow) and
    return at once; a worker on the deployment's work pool runs it. The pipeline file and the store go as
    absolute paths, so the worker runs exactly this checkout's pipeline on this store (the flow refuses to run
    when it cannot find them)."""
    full = name if "/" in name else f"arcflow/{name}"
    api = _need_api(f"--deployment {name}")
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from flows.prefect_artifacts import run_name

    params = {
        "pipeline": os.path.abspath(p.file),
        "store": p.workdir,
        "node": node,
        "from_node": from_,
        "to_node": to,
        "force": force,
        "overrides": overrides,
    }
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(full)
    except ObjectNotFound:
        with get_client(sync_client=True) as client:
            found = client.read_deployments()
            flows = {f.id: f.name for f in client.read_flows()}
        names = sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in found)
        err.print(
            f"[red]no deployment {full!r} on {api}[/]; "
            + (
                f"deployments there: {', '.join(names)}"
                if names
                else "it has none: `arcflow deploy`, or `prefect deploy --prefect-file infra/prefect.yaml --all`"
            ),
            highlight=False,
        )
        raise typer.Exit(2) from None
    except Exception as exc:
        err.print(
            f"[red]cannot reach the Prefect API at {api}: {type(exc).__name__}: {exc}[/]", highlight=False
        )
        raise typer.Exit(1) from None
    try:
        # named as the flow names its runs (flows/prefect_artifacts.py), so the runs list says it from the start
        label = run_name(
            p.spec.name, node=node, from_node=from_, to_node=to, force=force, overrides=overrides
        )
        flow_run = run_deployment(full, parameters=params, timeout=0, flow_run_name=label)
    except Exception as exc:
        err.print(
            f"[red]could not start deployment {full!r}: {type(exc).__name__}: {exc}[/]", highlight=False
        )
        raise typer.Exit(1) from None
    console.print(f"started flow run {flow_run.name} ({flow_run.id}) of {full}", soft_wrap=True)
    ui = os.environ.get("PREFECT_UI_URL") or (api[: -len("/api")] if api.endswith("/api") else "")
    if ui:
        console.print(f"watch it at {ui}/runs/flow-run/{flow_run.id}", soft_wrap=True, highlight=False)


@app.command()
def deploy(
    file: FileOpt = "pipeline.yaml",
    pool: Annotated[str, typer.Option("--pool", help="Prefect process work pool")] = "arcflow-process",
    create_pool: Annotated[
        bool, typer.Option("--create-pool/--no-create-pool", help="create the work pool if it does not exist")
    ] = True,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster", help="infra/cluster.yaml: one deployment per work pool, routed by resources"
        ),
    ] = None,
) -> None:
    """Create Prefect deployments from pipeline.yaml's `schedules:` (one per schedule, plus `<name>-adhoc` for
    single-node reruns) on a process work pool, without editing infra/prefect.yaml. With `--cluster`, the
    deployments of a multi-host cluster instead: one per work pool, nodes routed by their `resources:`, and
    `<name>-placed` running the stages in order (flows/placement.py)."""
    p = _load(file, None)
    from flows.deploy import DeployError, deploy_placed, deploy_schedules
    from flows.placement import ClusterSpecError, load_cluster

    pools = [pool]
    try:
        spec = load_cluster(cluster) if cluster is not None else None  # a spec error first, before the API
    except ClusterSpecError as exc:
        err.print(f"[red]{exc}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    _need_api("arcflow deploy")
    try:
        if spec is not None:
            deployed = deploy_placed(p, spec, create_pool)
            pools = sorted({v.name for v in spec.pools.values()})
            pool = ", ".join(pools)
        else:
            deployed = deploy_schedules(p, pool, create_pool)
    except (DeployError, ClusterSpecError) as exc:
        err.print(f"[red]{exc}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table(title=f"deployments of {p.spec.name} on work pool {pool}")
    for col in ("deployment", "schedule", "parameters"):
        table.add_column(col)
    for d in deployed:
        table.add_row(d.name, d.schedule, json.dumps(d.parameters), end_section=False)
    console.print(table)
    for name in pools:  # one command per pool: a worker polls one pool
        console.print(f"start a worker: prefect worker start --pool {name}", highlight=False, soft_wrap=True)


server_app = typer.Typer(
    no_args_is_help=True,
    help="A local Prefect server (API and UI on 127.0.0.1) that `arcflow run` finds and reuses.",
)
app.add_typer(server_app, name="server")
PortOpt = Annotated[int, typer.Option("--port", help="port on 127.0.0.1")]


@server_app.command("start")
def server_start(
    port: PortOpt = 4200,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds to wait for the API")] = 180.0,
) -> None:
    """Start `prefect server start` in the background (state in $PREFECT_HOME/arcflow-server, or
    $ARCFLOW_SERVER_HOME). While it runs, `arcflow run` reports to it when PREFECT_API_URL is unset."""
    from flows.local_server import ServerError, start

    try:
        state, started = start(port, timeout)
    except ServerError as exc:
        err.print(f"[red]{exc}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    verb = "started" if started else "already running"
    console.print(
        f"Prefect server {verb} (pid {state.pid}): UI {state.ui_url}, API {state.api_url}", highlight=False
    )
    console.print(f"log: {state.log}; stop it with `arcflow server stop`", highlight=False, soft_wrap=True)


@server_app.command("stop")
def server_stop() -> None:
    """Stop the server that `arcflow server start` started."""
    from flows.local_server import stop

    state = stop()
    console.print(f"stopped the Prefect server (pid {state.pid})" if state else "no arcflow server recorded")


@server_app.command("status")
def server_status() -> None:
    """Whether the local server runs, and where (exit 0 if it answers, 1 if not)."""
    from flows.local_server import configured_api_url, read_state, running

    state = running()
    configured = configured_api_url()
    if state is None:
        recorded = read_state()
        note = f" (recorded pid {recorded.pid} does not answer; see {recorded.log})" if recorded else ""
        console.print(
            f"no arcflow server running{note}; start one with `arcflow server start`", highlight=False
        )
        if configured:
            console.print(
                f"PREFECT_API_URL is set: runs report to {configured}", highlight=False, soft_wrap=True
            )
        raise typer.Exit(1)
    console.print(
        f"running (pid {state.pid}): UI {state.ui_url}, API {state.api_url}, log {state.log}", highlight=False
    )
    if configured and configured != state.api_url:
        console.print(
            f"but PREFECT_API_URL is set: runs report to {configured}, not here",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print("`arcflow run` reports to it", highlight=False, soft_wrap=True)


@app.command()
def graph(
    file: FileOpt = "pipeline.yaml",
    set_: SetOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="mermaid or dot")] = "mermaid",
) -> None:
    """The DAG as Mermaid or Graphviz text."""
    p = _load(file, set_)
    if fmt not in ("mermaid", "dot"):
        err.print(f"[red]--format {fmt!r}: use mermaid or dot[/]")
        raise typer.Exit(2)
    lines = ["flowchart LR"] if fmt == "mermaid" else [f'digraph "{p.spec.name}" {{', "  rankdir=LR;"]
    for n in p.order:
        label = f"{n}\\n({p.nodes[n].uses})" if fmt == "dot" else f"{n}<br/>{p.nodes[n].uses}"
        lines.append(f'  {n}["{label}"]' if fmt == "mermaid" else f'  {n} [label="{label}", shape=box];')
    for n in p.order:
        for d in p.deps[n]:
            lines.append(f"  {d} --> {n}" if fmt == "mermaid" else f"  {d} -> {n};")
    if fmt == "dot":
        lines.append("}")
    typer.echo("\n".join(lines))


@app.command()
def show(
    node: Annotated[str, typer.Argument(help="node id")],
    file: FileOpt = "pipeline.yaml",
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
) -> None:
    """A node's stored output: manifest and lineage, shards, params, counts. Says when what is shown is not the
    output the pipeline (with these --set overrides) would use: a stale one, or one made with other params."""
    p = _load(file, set_)
    if node not in p.nodes:
        from flows.engine import unknown_node_message

        err.print(unknown_node_message("show", node, p.order), style="red", highlight=False)
        raise typer.Exit(2)
    engine = _engine(p)
    from flows.outcome import blocked_reason, run_outcome

    plans = engine.plan()
    failed, blocked = run_outcome(plans, engine.store.manifest, p.deps)
    plan = {x.node: x for x in plans}[node]
    ref = engine.store.read_refs(p.spec.name).get(node, {})
    fp = plan.fingerprint if plan.status == "up_to_date" else ref.get("fingerprint")
    manifest = engine.store.manifest(fp) if fp else None
    from flows.status_view import show_lines

    last = show_lines(engine, plans, node, failed)  # its failed last run (run.json), or one upstream
    if manifest is None:
        builds = blocked_reason(blocked[node]) if node in blocked else f"`arcflow run --to {node}` builds it"
        # a stopped run left shards done or a training checkpoint: `partial (step 4/40)`, as `status` says it
        label, reasons = _status_label(engine, plan, engine.store.run_in_progress())
        if label.startswith("partial"):
            builds = builds if node in blocked else f"`arcflow run --to {node}` finishes it"
        else:
            label = plan.status  # `show` says `pending` as it is
        err.print(
            f"{node} has no stored output: {'; '.join(last)}"
            if last
            else f"{node} has no stored output ({label}: {'; '.join(reasons)}); {builds}",
            style="yellow",
            highlight=False,
            markup=False,  # errors and params may hold brackets
        )
        raise typer.Exit(1)
    notes = _show_notes(p, node, plan, manifest) + (
        last or ([blocked_reason(blocked[node])] if node in blocked else [])
    )
    from flows.trace_render import render_lineage
    from flows.trace_training import training_lineage

    lineage = training_lineage(engine.store, manifest)  # training stages: parent, shards, code
    if as_json:
        typer.echo(
            json.dumps(
                {
                    **manifest,
                    "status": "all_quarantined" if node in failed else plan.status,
                    "notes": notes,
                    "shard_list": engine.store.shards(fp),
                    "output_dir": engine.store.output_dir(fp),
                    **({"training_lineage": lineage} if lineage else {}),
                },
                indent=2,
            )
        )
        return
    from flows.reports import summary_markdown

    if node in failed:  # up to date, but with no usable row: a run reuses it and fails there
        from flows.outcome import outside_fingerprint_hint, rows_phrase

        n_in = int(manifest["counts"]["in"])
        console.print(
            f"[bold]{node}[/]: [red]failed[/]: all {rows_phrase(n_in)} {'was' if n_in == 1 else 'were'} "
            "quarantined; a run reuses this output and fails at this node, skipping the nodes downstream, until its "
            f"input, params or code change (the quarantine errors are below); "
            f"{outside_fingerprint_hint(node, p.file)}",
            highlight=False,
        )
    elif plan.status == "up_to_date":
        console.print(f"[bold]{node}[/]: its stored output is up to date", highlight=False)
    else:
        console.print(
            f"[bold]{node}[/]: [yellow]{'stale' if plan.status == 'pending' else plan.status}[/]; showing its last "
            "stored output, which "
            f"a run would not reuse (`arcflow run --to {node}` recomputes it)",
            highlight=False,
        )
    for note in notes:
        console.print(Text.assemble(("note", "yellow"), f": {note}"), highlight=False)
    console.print(f"output: {engine.store.output_dir(fp)}", highlight=False, soft_wrap=True)
    text = summary_markdown(manifest, reused=True)
    text = text.replace("**reused from the store** · ", "", 1)  # the heading above says what this output is
    console.print(text, markup=False, highlight=False)
    table = Table(title="shards")
    for col in ("shard", "in", "kept", "dropped", "quarantined", "seconds"):
        table.add_column(col, justify="right")
    entries = engine.store.shards(fp)
    for s in entries[:50]:
        table.add_row(s["file"], *(str(s[k]) for k in ("in", "kept", "dropped", "quarantined", "seconds")))
    if len(entries) > 50:
        table.add_row(f"... {len(entries) - 50} more", "", "", "", "", "")
    console.print(table)
    for report in manifest.get("reports", []):
        files = ", ".join(report[k] for k in ("table", "markdown", "png") if k in report)
        console.print(f"report: {report['title']}: {files}")
        _print_small_report(engine.store.output_dir(fp), report)
    if manifest["drop_reasons"] or manifest["quarantine_errors"]:
        console.print("drop reasons: " + json.dumps(manifest["drop_reasons"]))
        console.print("quarantine errors: " + json.dumps(manifest["quarantine_errors"]))
    if lineage:
        render_lineage(lineage, console)


# a report table this small is printed by `show` (e.g. grpo's validation pass rate before and after)
SHOW_REPORT_ROWS, SHOW_REPORT_COLUMNS = 8, 8


def _print_small_report(out_dir: str, report: dict[str, Any]) -> None:
    """A report's table inline when it has at most SHOW_REPORT_ROWS rows and SHOW_REPORT_COLUMNS columns of
    scalars; larger ones stay files (the Prefect UI shows them all)."""
    if "table" not in report:
        return
    try:
        with open(os.path.join(out_dir, report["table"]), encoding="utf-8") as fh:
            rows = json.load(fh)
    except (OSError, ValueError):
        return
    if not isinstance(rows, list) or not rows or len(rows) > SHOW_REPORT_ROWS:
        return
    if not all(isinstance(r, dict) for r in rows):
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    if any(isinstance(r.get(c), dict | list) for r in rows for c in columns):
        return
    if len(rows) == 1 and SHOW_REPORT_COLUMNS < len(columns) <= 3 * SHOW_REPORT_COLUMNS:
        # one wide row (quality_score's score distribution): one line per field
        table = Table()
        table.add_column("field")
        table.add_column("value", justify="right")
        for c in columns:
            table.add_row(c, "" if rows[0].get(c) is None else str(rows[0][c]))
        console.print(table)
        return
    if len(columns) > SHOW_REPORT_COLUMNS:
        return
    table = Table()
    for col in columns:
        table.add_column(col)
    for r in rows:
        table.add_row(*("" if r.get(c) is None else str(r[c]) for c in columns))
    console.print(table)


def _show_notes(p: Pipeline, node: str, plan: Any, manifest: dict[str, Any]) -> list[str]:
    """What the reader of `show` must know: the output was made with other params than the pipeline's (a run
    with --set overrides, or an older pipeline.yaml)."""
    from flows.param_diff import param_changes

    current = p.nodes[node].params.model_dump(mode="json")
    try:  # manifests keep path params relative to the pipeline's folder, as fingerprints see them
        from flows.fingerprint import portable_params  # type: ignore[attr-defined]

        current = portable_params(current, p.nodes[node].kind.path_params, p.file)
    except ImportError:
        pass
    changes = param_changes(current, manifest.get("params", {}))
    if not changes:
        return []
    shown = "; ".join(changes[:5]) + (f"; (+{len(changes) - 5} more)" if len(changes) > 5 else "")
    return [
        "this is the output of a run with other params than this pipeline's (a --set override, or an earlier "
        f"pipeline.yaml): {shown} (pipeline -> shown output)"
    ]


@app.command()
def trace(
    node: Annotated[str, typer.Argument(help="a pack node (with --row) or a training node")],
    row: Annotated[int | None, typer.Option("--row", help="the packed row (seq_index) to trace")] = None,
    step: Annotated[
        int | None, typer.Option("--step", help="a training node: also list this step's rows")
    ] = None,
    file: FileOpt = "pipeline.yaml",
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the trace as JSON")] = False,
) -> None:
    """Where training tokens came from: each segment of a packed row (document id, source node, URL or path, a
    decoded preview), or the rows a training stage drew from each shard, and how often (flows/trace.py)."""
    from flows.trace import TraceError, trace_row
    from flows.trace_render import render_row, render_training
    from flows.trace_training import trace_training

    p = _load(file, set_)
    from flows.store import Store

    _check_store(Store(p.workdir))
    try:
        if row is not None and step is None:
            result = trace_row(p, node, row)
        elif row is None:
            result = trace_training(p, node, step)
        else:
            raise TraceError("--row is for a pack node, --step for a training node; give one of them")
    except TraceError as exc:
        err.print(str(exc), style="red" if exc.code == 2 else "yellow", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.code) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        (render_row if row is not None else render_training)(result, console)


@app.command()
def gc(
    file: FileOpt = "pipeline.yaml",
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    set_: SetOpt = None,
) -> None:
    """Remove stored outputs that no pipeline's latest run references (the store of the pipeline's workdir;
    `--set workdir=...` names another, as for `arcflow run`)."""
    p = _load(file, set_)
    engine = _engine(p)
    try:
        with engine.store.lock():
            removed = engine.store.collect(dry_run=dry_run)
    except StoreLockedError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
    total = sum(size for _fp, size in removed)
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {len(removed)} output(s), {total / 1e6:.1f} MB")


@app.command()
def kinds() -> None:
    """The registered node kinds."""
    from tasks.registry import get_kind_class, kind_names

    table = Table(title="node kinds")
    for col in ("uses", "consumes", "produces", "description"):
        table.add_column(col)
    for name in kind_names():
        k = get_kind_class(name)
        ins = ", ".join(t.value for t in k.input_types) or "(source)"
        table.add_row(name, ins, k.output_type.value, k.description)
    console.print(table)


@app.command()
def schema(
    kind: Annotated[str | None, typer.Option("--kind", help="just this kind's params")] = None,
) -> None:
    """JSON Schema of pipeline.yaml, for editor completion (per-kind params included)."""
    from flows.json_schema import pipeline_json_schema
    from tasks.registry import UnknownKindError, get_kind_class

    if kind:
        try:
            typer.echo(json.dumps(get_kind_class(kind).Params.model_json_schema(), indent=2))
        except UnknownKindError as exc:
            err.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
        return
    typer.echo(json.dumps(pipeline_json_schema(), indent=2))


def main() -> None:
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
