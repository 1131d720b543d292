"""What a flow run shows in the Prefect UI: flow run names, artifact keys, and each node's artifacts.

* A flow run is named after the pipeline and its selection (``arcflow-demo · --node web_buckets``,
  ``arcflow-demo · all``), for CLI and deployment runs alike (the flow's ``flow_run_name``).
* Artifact keys are ``<pipeline>-<label>-<node>-<what>``. The label tells stores apart (``s`` + a short hash of
  the store's absolute path: two checkouts never share a key) and ``--set`` experiments (``-x`` + a short hash
  of the overrides), so the Artifacts page keeps one history per node, store and experiment.
* A computed node publishes three artifacts: ``-progress`` (updated while it runs, with the phase named),
  ``-counts`` (a table: in, kept, dropped per reason, quarantined per error) and ``-summary`` (markdown: the
  accounting, the kind's reports with tables inline and plots embedded, lineage, params). A cached node publishes
  one: ``-summary`` saying it was reused, from which flow run and when, with a link to that run's artifacts.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)

from flows.reports import counts_table, reports_markdown, reused_markdown, summary_markdown
from tasks.base import ProgressEvent

THROTTLE_S = 2.0  # at most one progress update per node per this many seconds (phase ends always go through)
HEARTBEAT_S = 5.0  # a node that reported nothing new for this long says so again, with the time in its phase
MAX_KEY = 100


# ---- names and keys ------------------------------------------------------------------------------------------
def selection_text(
    node: str | None = None,
    from_node: str | None = None,
    to_node: str | None = None,
    force: bool = False,
    overrides: Sequence[str] | None = None,
) -> str:
    """The selection as the CLI spells it: ``all``, ``--node X``, ``--from X --to Y``, plus ``--force``/``--set``."""
    parts = [
        f"{flag} {value}"
        for flag, value in (("--node", node), ("--from", from_node), ("--to", to_node))
        if value
    ]
    parts = parts or ["all"]
    if force:
        parts.append("--force")
    parts += [f"--set {o}" for o in overrides or ()]
    text = " ".join(parts)
    return text if len(text) <= 120 else text[:119] + "…"


def run_name(pipeline: str, **selection: Any) -> str:
    """``<pipeline> · <selection>``, e.g. ``arcflow-demo · --node web_buckets``."""
    return f"{pipeline} · {selection_text(**selection)}"


def pipeline_name_of(path: str) -> str:
    """The ``name:`` of a pipeline file, read from its top-level ``name:`` line without parsing the YAML (the flow
    validates the file itself; a name is needed before that, and must never fail): the file's folder name when
    there is no such line."""
    import os

    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(65536)
    except OSError:
        head = ""
    match = re.search(
        r"""^name:[ \t]*(?:"([^"\n]+)"|'([^'\n]+)'|([^#\s][^#\n]*?))[ \t]*(?:#.*)?$""", head, re.M
    )
    if match:
        return next(g for g in match.groups() if g)
    return os.path.basename(os.path.dirname(os.path.abspath(path))) or "pipeline"


def flow_run_name() -> str:
    """``flow_run_name`` of the arcflow flow: the pipeline and the selection, from the run's parameters."""
    from prefect.runtime import flow_run

    p = dict(flow_run.parameters or {})
    return run_name(
        pipeline_name_of(str(p.get("pipeline") or "pipeline.yaml")),
        node=p.get("node"),
        from_node=p.get("from_node"),
        to_node=p.get("to_node"),
        force=bool(p.get("force")),
        overrides=p.get("overrides") or (),
    )


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _short(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def artifact_label(store_root: str, overrides: Sequence[str] | None = None) -> str:
    """``s<hash of the store path>`` plus ``-x<hash of the overrides>`` when there are any. A ``workdir=`` override
    only picks the store, which the store's hash already tells apart: it is no experiment of its own."""
    label = "s" + _short(store_root)
    experiment = [o for o in overrides or () if not o.strip().startswith("workdir=")]
    if experiment:
        label += "-x" + _short("\n".join(experiment))
    return label


def artifact_key(prefix: str, node: str, what: str) -> str:
    """A valid Prefect artifact key (lowercase letters, digits, dashes; at most 100 characters) for ``node``'s
    ``what`` under ``prefix`` (pipeline and label); a long node id is shortened with a hash, never the ``what``."""
    head, tail = _slug(prefix), _slug(what)
    name = _slug(node)
    room = MAX_KEY - len(head) - len(tail) - 2
    if len(name) > room:
        name = name[: max(1, room - 7)].rstrip("-") + "-" + _short(node)
    return f"{head}-{name}-{tail}"[:MAX_KEY]


class RunArtifacts:
    """The artifact conventions of one flow run: key prefix, the label shown in descriptions, the run's identity
    (written into the manifests of the nodes it computes, so that later cached runs can point back to it)."""

    def __init__(self, pipeline: str, store_root: str, overrides: Sequence[str] | None) -> None:
        # cached nodes' artifacts are written off the critical path: a fully cached run of 34 nodes would
        # otherwise wait for 34 API writes one dependency level at a time
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="arcflow-artifacts")
        self._pending: list[Future[None]] = []
        self.overrides = list(overrides or [])
        self.label = artifact_label(store_root, self.overrides)
        self.prefix = f"{pipeline}-{self.label}"
        self.description = f"store {store_root}" + (
            f", --set {' '.join(self.overrides)}" if self.overrides else ""
        )
        self.run_info = current_run_info()

    def key(self, node: str, what: str) -> str:
        return artifact_key(self.prefix, node, what)

    def progress(self, node: str) -> NodeProgress:
        return NodeProgress(self.key(node, "progress"), node, self.description)

    def publish_computed(self, node: str, manifest: dict[str, Any], out_dir: str) -> None:
        create_table_artifact(
            table=counts_table(manifest),
            key=self.key(node, "counts"),
            description=f"{node}: rows in, kept, dropped by reason, quarantined by error ({self.description})",
        )
        body = summary_markdown(manifest, reused=False)
        reports = reports_markdown(out_dir, manifest.get("reports", []))
        where = f"\n\nComputed by this flow run · {self.description} · artifact label `{self.label}`"
        create_markdown_artifact(
            markdown=body + where + ("\n\n" + reports if reports else ""),
            key=self.key(node, "summary"),
            description=f"{node}: computed; accounting, reports, lineage, params ({self.description})",
        )

    def publish_cached(self, node: str, manifest: dict[str, Any]) -> None:
        """Queue the cached node's markdown (written in the background, in this task's Prefect context, so it
        belongs to this task run); ``close`` waits for it."""
        context = contextvars.copy_context()
        self._pending.append(self._pool.submit(context.run, self._publish_cached, node, manifest))

    def close(self) -> list[str]:
        """Wait for the queued artifacts; returns the errors of those that could not be written."""
        errors = []
        for future in self._pending:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - a lost artifact must not fail a run that succeeded
                errors.append(f"{type(exc).__name__}: {exc}")
        self._pool.shutdown(wait=True)
        return errors

    def _publish_cached(self, node: str, manifest: dict[str, Any]) -> None:
        run = manifest.get("run") or {}
        link = flow_run_link(run.get("flow_run_id"))
        create_markdown_artifact(
            markdown=reused_markdown(manifest, link, f"{self.description} · artifact label `{self.label}`"),
            key=self.key(node, "summary"),
            description=f"{node}: reused from flow run {run.get('flow_run_name') or '(none)'} ({self.description})",
        )


def current_run_info() -> dict[str, Any]:
    """The flow run this code runs in (id and name), empty outside one."""
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    if ctx is None or ctx.flow_run is None:
        return {}
    return {"flow_run_id": str(ctx.flow_run.id), "flow_run_name": ctx.flow_run.name}


def flow_run_link(flow_run_id: str | None) -> str | None:
    """The UI page of a flow run's artifacts, relative to the UI's root: the artifact that holds the link is shown
    by the UI of the server that holds that run, so this works for any address (an ephemeral API's random port
    included, which an absolute link would outlive)."""
    if not flow_run_id:
        return None
    from prefect.settings import get_current_settings

    base = (get_current_settings().server.ui.serve_base or "/").rstrip("/")
    return f"{base}/runs/flow-run/{flow_run_id}?tab=Artifacts"


# ---- progress --------------------------------------------------------------------------------------------------
class NodeProgress:
    """One progress artifact per node run, fed with the engine's ``ProgressEvent``s: created at the first event,
    then updated at most every ``throttle_s`` seconds, and always when a phase starts or ends. The value is the
    node's overall fraction (across the kind's phases); the description names the phase, e.g.
    ``web_semdedup: embed 3/8 chunks (phase 1 of 4)``.

    Used as a context manager around the node's run, it also keeps a heartbeat: when nothing was sent for
    ``heartbeat_s`` (a long k-means seeding, one big tokenizer-training task), it sends the latest state again with
    the time spent in the phase (``... · 40 s in this phase``), so the UI never sits still for long without a word.

    Updates go through one Prefect client kept for the node's run (closed on exit): Prefect's
    ``update_progress_artifact`` builds a new client (an HTTP client with its TLS context) for every call, about
    30 ms of the driver's CPU and 15 ms of the API's per update, against 3 ms and 10 ms with one client; a run
    sends one every ``throttle_s`` to ``heartbeat_s`` seconds for as long as it lasts.
    """

    def __init__(
        self,
        key: str,
        node: str,
        where: str = "",
        throttle_s: float = THROTTLE_S,
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.key, self.node, self.where = key, node, where
        self.throttle_s, self.heartbeat_s = throttle_s, heartbeat_s
        self.artifact_id: UUID | None = None
        self.last_sent = 0.0
        self.phase: str | None = None  # the phase last sent
        self.last: ProgressEvent | None = None  # the latest event, sent or not
        self.phase_started = time.monotonic()
        self.updates = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._client: Any = None  # Prefect's sync client, opened at the first update

    def __enter__(self) -> NodeProgress:
        # the heartbeat thread sends through this thread's Prefect context (API address, client settings)
        context = contextvars.copy_context()
        self._beat = threading.Thread(
            target=context.run, args=(self._heartbeat,), name=f"progress-{self.node}", daemon=True
        )
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=30)
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - closing the progress client must never fail the node
                pass

    def __call__(self, event: ProgressEvent) -> None:
        if event.node != self.node:
            return
        with self._lock:
            if self.last is None or event.phase != self.last.phase:
                self.phase_started = time.monotonic()
            self.last = event
            now = time.monotonic()
            boundary = event.phase != self.phase or event.phase_done
            if self.artifact_id is not None and not boundary and now - self.last_sent < self.throttle_s:
                return  # the next update that goes through (or the heartbeat) sends the latest state
            self._send(event, now)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s / 2):
            with self._lock:
                now = time.monotonic()
                if self.last is None or self._stop.is_set() or now - self.last_sent < self.heartbeat_s:
                    continue
                try:
                    self._send(self.last, now, f" · {now - self.phase_started:.0f} s in this phase")
                except Exception:  # noqa: BLE001 - a missed heartbeat must never fail the node
                    self.last_sent = now

    def _send(self, event: ProgressEvent, now: float, note: str = "") -> None:
        text = f"{self.node}: {event.text()}{note}" + (f" · {self.where}" if self.where else "")
        value = round(100.0 * event.fraction, 2)
        if self.artifact_id is None:
            self.artifact_id = create_progress_artifact(progress=value, key=self.key, description=text)
        else:
            from prefect.client.schemas.actions import ArtifactUpdate

            if self._client is None:
                from prefect.client.orchestration import get_client

                self._client = get_client(sync_client=True).__enter__()
            self._client.update_artifact(self.artifact_id, ArtifactUpdate(data=value, description=text))
        self.phase, self.last_sent = event.phase, now
        self.updates += 1

    def live_report(self, title: str, table: list[dict[str, Any]] | None, png: bytes | None) -> None:
        """A report the node refreshes while it runs (``RunContext.publish_live``: a training stage's metrics):
        a table artifact ``...-live-table`` and a markdown artifact ``...-live-plot`` with the PNG embedded, each a
        new version of its key. A failed write never fails the node."""
        import base64

        key = self.key.removesuffix("-progress")
        try:
            if table:
                create_table_artifact(
                    table=table, key=f"{key}-live-table", description=f"{title} ({self.where})"
                )
            if png:
                data = base64.b64encode(png).decode()
                create_markdown_artifact(
                    markdown=f"### {title}\n\n![{title}](data:image/png;base64,{data})",
                    key=f"{key}-live-plot",
                    description=f"{title}, refreshed while it runs ({self.where})",
                )
        except Exception:  # noqa: BLE001 - a lost refresh must not fail a training stage
            pass

    def finish(self) -> None:
        """The node is done: 100%, whatever the last event said."""
        with self._lock:
            last = self.last or ProgressEvent(self.node, "shards", 0, 0)
            done = ProgressEvent(
                self.node, last.phase, last.total, last.total, last.unit, last.steps, last.steps
            )
            self._send(done, time.monotonic())
