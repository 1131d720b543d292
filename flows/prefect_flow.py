"""The Prefect side, kept thin: one flow per pipeline run, one task per node (named by the node id).

Independent branches run concurrently (Prefect's thread pool; each node's shards go to the shared Dask cluster). A
node whose output is stored ends in the ``Cached`` state. A node downstream of a failed node never runs: it ends in
a ``Skipped`` state (of type Completed, so that Prefect logs it at INFO, not as an error of its own) whose message
names the failed node; the flow run still fails, naming the failed node. What the UI shows (flow run names, artifact keys, the
artifacts of computed and cached nodes, progress by phase) is in ``flows/prefect_artifacts.py``.
"""

from __future__ import annotations

import ast
import builtins
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import allow_failure, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.states import Completed, State

from flows.engine import Engine, select
from flows.errors import AllQuarantinedError, MissingInputError, NodeFailedError, StoreLockedError
from flows.last_run import ERROR_CHARS, error_line
from flows.outcome import SKIPPED, all_quarantined, all_quarantined_error, skipped_message
from flows.prefect_artifacts import RunArtifacts, flow_run_name
from flows.retry import permanent_reason, worth_retrying
from flows.validate import load_pipeline
from flows.yaml_source import YamlSyntaxError, parse_yaml

_ENGINES: dict[str, Engine] = {}
_ARTIFACTS: dict[str, RunArtifacts] = {}
_FUTURES: dict[str, dict[str, Any]] = {}  # run key -> node -> its task run's future
_SKIPS: dict[str, dict[str, list[str]]] = {}  # run key -> skipped node -> the failed nodes upstream of it


@task(cache_policy=NO_CACHE, persist_result=False, log_prints=True)
def run_node(run_key: str, node_id: str, forced: bool) -> Any:
    skipped = _skipped_state(run_key, node_id)
    if skipped is not None:
        return skipped
    engine = _ENGINES[run_key]
    artifacts = _ARTIFACTS[run_key]
    with artifacts.progress(node_id) as progress:
        reused, manifest = engine.run_node(node_id, forced=forced, progress=progress)
        if not reused:
            progress.finish()
    if reused:
        # one short markdown: reused, from which flow run and when (from the manifest alone: cheap)
        artifacts.publish_cached(node_id, manifest)
    else:
        artifacts.publish_computed(node_id, manifest, engine.store.output_dir(manifest["fingerprint"]))
    if all_quarantined(manifest):  # stored (its rows can be read), published, but no usable output: fail here
        raise all_quarantined_error(node_id, manifest, engine.store.location, engine.pipeline.file)
    summary = {
        "node": node_id,
        "reused": reused,
        "fingerprint": manifest["fingerprint"],
        **manifest["counts"],
    }
    if reused:
        return Completed(name="Cached", message=f"reused {manifest['fingerprint'][:12]}", data=summary)
    return summary


def _skipped_state(run_key: str, node_id: str) -> State | None:
    """The ``Skipped`` state of ``node_id`` when an input of it in this run failed or was skipped, else None (it
    runs). Its inputs' task runs are final here: the node waits for them with ``allow_failure`` (without it, Prefect
    would end the node in ``Pending('NotReady')`` and log that at ERROR, an error per skipped node)."""
    futures, skips = _FUTURES[run_key], _SKIPS[run_key]
    failed: list[str] = []
    skipped: dict[str, list[str]] = {}
    for dep in _ENGINES[run_key].pipeline.deps[node_id]:
        if dep not in futures:  # outside the selection: read from the store
            continue
        st = futures[dep].state
        if st.name == SKIPPED or (st.is_pending() and st.name == "NotReady"):
            skipped[dep] = skips.get(dep, [])
        elif not st.is_completed():
            failed.append(dep)
    if not failed and not skipped:
        return None
    roots = failed or sorted({r for rs in skipped.values() for r in rs})
    skips[node_id] = roots
    data = {"node": node_id, "skipped": True, "upstream_failed": roots}
    return Completed(name=SKIPPED, message=skipped_message(failed, skipped), data=data)


class PipelineNotFoundError(RuntimeError):
    """A deployment run cannot find the pipeline file or store it was started for."""


def _resolve_paths(pipeline: str, store: str | None, overrides: list[str]) -> Any:
    """Load ``pipeline`` and check that it is the one the run was started for: the file must exist here, and
    when ``store`` is given (``arcflow run --deployment`` sends both as absolute paths) the pipeline's store must
    be that one. A worker that sees another checkout, or none, refuses instead of running something else."""
    where = f"on {socket.gethostname()} (working directory {os.getcwd()})"
    if not os.path.isfile(pipeline):
        raise PipelineNotFoundError(
            f"pipeline file {pipeline!r} not found {where}. The worker runs the checkout the deployment points "
            f"at: pass an absolute path (`arcflow run --deployment ... -f` does), or deploy again from the "
            f"checkout that holds it"
        )
    spec = load_pipeline(pipeline, overrides)
    if store is not None and os.path.realpath(spec.workdir) != os.path.realpath(store):
        raise PipelineNotFoundError(
            f"the run was started for store {store!r}, but {pipeline} resolves its store to {spec.workdir!r} "
            f"{where}; check the pipeline's `workdir:` and that the worker sees the same paths as the CLI"
        )
    if (
        store is not None
        and "://" not in store
        and not os.path.isdir(os.path.dirname(os.path.realpath(store)) or "/")
    ):
        raise PipelineNotFoundError(
            f"the store {store!r} cannot be created {where}: its parent folder is missing"
        )
    return spec


@flow(name="arcflow", flow_run_name=flow_run_name, log_prints=True)
def arcflow_pipeline(
    pipeline: str = "pipeline.yaml",
    node: str | None = None,
    from_node: str | None = None,
    to_node: str | None = None,
    force: bool = False,
    overrides: list[str] | None = None,
    wait_for_lock: bool = True,
    store: str | None = None,
) -> dict[str, Any]:
    """Run the pipeline file (or a selection of its nodes). ``store``, when given, is the store the run was
    started for; the run refuses a pipeline that resolves to another one."""
    spec = _resolve_paths(pipeline, store, overrides or [])
    engine = Engine(spec)
    return run_with_engine(engine, node, from_node, to_node, force, wait_for_lock)


@contextmanager
def quiet_prefect_shutdown(verbose: bool = False) -> Iterator[None]:
    """Deliver Prefect's queued events and logs while its API is still up (before the ephemeral API's process is
    stopped at exit), so that the end of a short run (a fully cached one, or one that queued for the lock) prints
    no shutdown tracebacks. Without ``verbose``, Prefect's task and flow failure lines on the terminal are short
    (:class:`_ShortFailures`): the run's own summary, printed last, is where each error is said in full; the API
    (the UI) still gets Prefect's full lines."""
    restore = [] if verbose else _shorten_console_failures()
    try:
        yield
    finally:
        _drain_prefect_workers()
        for handler, formatter, short in restore:
            handler.setFormatter(formatter)
            handler.removeFilter(short)


#: arcflow's own errors that tell the user what to fix (their message is the whole story: no traceback needed),
#: beyond those :func:`flows.retry.permanent_reason` names (builtins aside: a FileNotFoundError may be a bug)
_USER_ERRORS = (NodeFailedError, PipelineNotFoundError, StoreLockedError)
_FAILED_STATE = re.compile(r"^Finished in state (Failed|Crashed)\((.*)\)$", re.DOTALL)
_SHORT = 160  # characters of an error's message kept on Prefect's lines


# said in full by their message (a training stage's failure quotes its ranks' error and names its launch.log, where
# the ranks' tracebacks are), though a retry may help: no driver-side traceback on the terminal
_SAID_IN_FULL = frozenset({"tasks._train_run.StageFailedError"})


def is_user_error(exc: BaseException) -> bool:
    """Whether ``exc`` is one of arcflow's user-facing errors (a bad pipeline, a missing input, a node whose rows
    were all quarantined, a failed run's summary ...) rather than an unexpected exception."""
    if isinstance(exc, _USER_ERRORS):
        return True
    if any(f"{cls.__module__}.{cls.__qualname__}" in _SAID_IN_FULL for cls in type(exc).__mro__):
        return True
    reason = permanent_reason(exc)
    return reason is not None and not hasattr(builtins, reason)


def _short_error(exc: BaseException) -> str:
    """``Class: first line`` of ``exc``'s message, cut at :data:`_SHORT` characters (no repr escapes); for a user
    error only its first clause (up to a ``;`` outside brackets), as the run's summary says the rest."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    cut = len(lines) > 1
    if is_user_error(exc):
        depth = 0
        for i, ch in enumerate(text):
            depth += (ch in "([{") - (ch in ")]}")
            if ch == ";" and depth <= 0:
                text, cut = text[:i], True
                break
    if len(text) > _SHORT:
        text, cut = text[:_SHORT].rsplit(" ", 1)[0].rstrip(",;:"), True
    text += " …" if cut else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _ShortFailures(logging.Formatter):
    """Wraps the formatter of Prefect's console handler. On Prefect's task and flow run lines: an exception's repr
    becomes ``Class: first line`` (cut short), with its traceback only for unexpected exceptions; a ``Finished in
    state Failed(...)`` line keeps only the first line of its message, and is left out (as a filter of the handler)
    after the task run's exception line, which said it already. The record itself is not changed (the API handler
    sends the full one)."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self._said: set[str] = set()  # task runs whose exception line was printed

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect.task_runs"):
            return True
        key = str(getattr(record, "task_run_id", None) or getattr(record, "task_run_name", ""))
        if record.exc_info:
            self._said.add(key)
            return True
        if key in self._said and isinstance(record.msg, str) and _FAILED_STATE.match(record.msg):
            return False
        return True

    def format(self, record: logging.LogRecord) -> str:
        if record.name.startswith(("prefect.task_runs", "prefect.flow_runs")):
            record = self._shortened(record) or record
        return self.inner.format(record)

    @staticmethod
    def _shortened(record: logging.LogRecord) -> logging.LogRecord | None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - left to the formatter, as Prefect would
            return None
        exc = record.exc_info[1] if record.exc_info else None
        copy = logging.makeLogRecord(record.__dict__)
        copy.args = None
        if isinstance(exc, BaseException):
            copy.msg = message.replace(repr(exc), _short_error(exc))
            if is_user_error(exc):
                copy.exc_info, copy.exc_text = None, None
            return copy
        m = _FAILED_STATE.match(message)
        if m is None:
            return None
        try:
            detail = str(ast.literal_eval(m.group(2)))
        except (ValueError, SyntaxError):
            detail = m.group(2)
        lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
        first = lines[0] if lines else ""
        if len(first) > _SHORT:
            first = first[:_SHORT].rsplit(" ", 1)[0].rstrip(",;:") + " …"
        elif len(lines) > 1:
            first += " …"
        copy.msg = f"Finished in state {m.group(1)}: {first}" if first else f"Finished in state {m.group(1)}"
        return copy


def _shorten_console_failures() -> list[tuple[logging.Handler, logging.Formatter | None, _ShortFailures]]:
    """Wrap the formatter of every Prefect console handler in :class:`_ShortFailures`; returns what to restore."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    restore: list[tuple[logging.Handler, logging.Formatter | None, _ShortFailures]] = []
    for lg in loggers:
        for handler in lg.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(
                handler.formatter, _ShortFailures
            ):
                short = _ShortFailures(handler.formatter)
                restore.append((handler, handler.formatter, short))
                handler.setFormatter(short)
                handler.addFilter(short)
    return restore


def _drain_prefect_workers(timeout_s: float = 10.0) -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (EventsWorker, APILogWorker):
        try:
            worker.drain_all(timeout=timeout_s)
        except Exception:  # noqa: BLE001 - best effort at exit; the run's outcome is already known
            pass


def run_with_engine(
    engine: Engine,
    node: str | None,
    from_node: str | None,
    to_node: str | None,
    force: bool,
    wait_for_lock: bool,
) -> dict[str, Any]:
    selection = select(engine.pipeline, node, from_node, to_node, force)
    run_key = uuid.uuid4().hex
    _ENGINES[run_key] = engine
    artifacts = RunArtifacts(engine.pipeline.spec.name, engine.store.root, _run_overrides())
    _ARTIFACTS[run_key] = artifacts
    futures: dict[str, Any] = {}
    _FUTURES[run_key], _SKIPS[run_key] = futures, {}
    engine.run_info = artifacts.run_info  # kept in the manifests it computes: cached reruns point back to it
    results: dict[str, Any] = {}
    try:
        with engine.store.lock(wait=wait_for_lock):
            run_dir = engine.record_run_start(run_key, selection)
            for node_id in selection.nodes:
                spec = engine.pipeline.nodes[node_id]
                t = run_node.with_options(
                    name=node_id,
                    task_run_name=node_id,
                    retries=spec.retries,
                    retry_delay_seconds=spec.retry_delay_s,
                    retry_condition_fn=worth_retrying,  # not for a failure that a retry meets again
                )
                upstream = [futures[d] for d in engine.pipeline.deps[node_id] if d in futures]
                # allow_failure: the node runs after a failed input too, and ends Skipped (see _skipped_state)
                futures[node_id] = t.submit(
                    run_key,
                    node_id,
                    node_id in selection.forced,
                    wait_for=[allow_failure(u) for u in upstream],
                )
            wait(list(futures.values()))
            failed = []
            for node_id, fut in futures.items():
                st = fut.state
                results[node_id] = st.name
                if not st.is_completed() or st.name == SKIPPED:
                    failed.append(node_id)
            engine.record_run_end(run_dir, results, _error_lines({n: futures[n].state for n in failed}))
            if failed:
                raise NodeFailedError(_failure_summary(engine, {n: futures[n].state for n in failed}))
    finally:
        _ENGINES.pop(run_key, None)
        _FUTURES.pop(run_key, None)
        _SKIPS.pop(run_key, None)
        for error in _ARTIFACTS.pop(run_key).close():
            print(f"warning: an artifact could not be written: {error}")
        engine.close()
    return results


def _failure_summary(engine: Engine, states: dict[str, Any]) -> str:
    """One line per node that did not complete: a node that failed with its YAML line, error type and message
    (its first lines, trimmed); a node that never ran because a node it depends on failed, as skipped. Prefect
    logs each node's full traceback; this is the short account the run ends with."""
    lines = _node_lines(engine.pipeline.file)
    failed, skipped = [], []
    for node_id, st in states.items():
        where = f" ({engine.pipeline.file}:{lines[node_id]})" if node_id in lines else ""
        exc = _exception(st) if st.is_failed() or st.is_crashed() else None
        if isinstance(exc, AllQuarantinedError | MissingInputError) and "\n" not in str(exc):
            # one line of its own, kept whole: the count, where the rows are, commands, the advice at its end
            failed.append(f"  {node_id}{where}: {type(exc).__name__}: {exc}")
        elif isinstance(exc, BaseException):
            failed.append(f"  {node_id}{where}: {type(exc).__name__}: {_short(str(exc), node_id)}")
        elif st.is_failed() or st.is_crashed():
            failed.append(f"  {node_id}{where}: {st.name}: {_short(st.message or 'no message', node_id)}")
        else:  # Skipped (or Prefect's NotReady): an upstream node did not complete
            ups = [d for d in engine.pipeline.deps[node_id] if d in states]
            bad = [d for d in ups if states[d].is_failed() or states[d].is_crashed()]
            why = (
                f"upstream failed: {', '.join(bad)}" if bad else f"upstream skipped: {', '.join(ups) or '?'}"
            )
            skipped.append(f"  {node_id}{where}: skipped, {why}")
    text = f"{len(failed)} node(s) failed:\n" + "\n".join(failed)
    if skipped:
        text += f"\n{len(skipped)} node(s) skipped:\n" + "\n".join(skipped)
    return text


def _error_lines(states: dict[str, Any]) -> dict[str, str]:
    """The one-line error of each node that failed or crashed (its exception, else its state's message), for the
    run record; a skipped node has none."""
    out = {}
    for node_id, st in states.items():
        if st.is_failed() or st.is_crashed():
            line = error_line(_exception(st) or st.message, node_id)
            if line:
                out[node_id] = line
    return out


def _exception(state: Any) -> BaseException | None:
    """The exception a failed task run raised, when Prefect still holds it."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - the state's message is used instead
        return None
    return exc if isinstance(exc, BaseException) else None


def _short(message: str, node_id: str, limit: int = ERROR_CHARS) -> str:
    """The first two non-empty lines of ``message`` on one line, without a leading ``node '<id>': ``, cut only
    past ``limit`` characters (a pathological message)."""
    text = " ".join([ln.strip() for ln in message.strip().splitlines() if ln.strip()][:2])
    for prefix in (f"node '{node_id}': ", f"node {node_id!r}: ", f"node {node_id}: "):
        text = text.removeprefix(prefix)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _node_lines(file: str) -> dict[str, int]:
    """The line of each node (and source) in the pipeline file; empty when it cannot be read again."""
    try:
        with open(file, encoding="utf-8") as fh:
            doc = parse_yaml(fh.read(), file)
    except (OSError, UnicodeDecodeError, YamlSyntaxError):
        return {}
    return {
        str(path[1]): line
        for path, line in doc.lines.items()
        if isinstance(path, tuple) and len(path) == 2 and path[0] in ("nodes", "sources")
    }


def _run_overrides() -> list[str]:
    """The ``--set`` overrides of the flow run this code runs in (its ``overrides`` parameter)."""
    from prefect.runtime import flow_run

    return list((flow_run.parameters or {}).get("overrides") or [])
