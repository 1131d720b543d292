"""The Prefect side, kept thin: one flow per pipeline run, one task per node (named by the node id).

Independent branches run concurrently (Prefect's thread pool; each node's shards go to the shared Dask cluster). A
node whose output is stored ends in the ``Cached`` state. Each node publishes a table artifact (counts and drop
reasons), a markdown artifact (summary and lineage) and, while it computes, a progress artifact.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from typing import Any

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.states import Completed

from flows.engine import Engine, select
from flows.errors import NodeFailedError
from flows.reports import counts_table, summary_markdown
from flows.validate import load_pipeline

_ENGINES: dict[str, Engine] = {}


def _key(*parts: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")[:100]


@task(cache_policy=NO_CACHE, persist_result=False, log_prints=True)
def run_node(run_key: str, node_id: str, forced: bool) -> Any:
    engine = _ENGINES[run_key]
    pipeline = engine.pipeline.spec.name
    state: dict[str, Any] = {"artifact": None, "step": 0}

    def progress(node: str, done: int, total: int) -> None:
        value = 100.0 * done / total if total else 100.0
        if state["artifact"] is None:
            state["artifact"] = create_progress_artifact(
                progress=value, key=_key(pipeline, node, "progress"), description=f"{node}: shards done"
            )
        elif done == total or done - state["step"] >= max(1, total // 50):
            update_progress_artifact(state["artifact"], progress=value)
        state["step"] = done

    reused, manifest = engine.run_node(node_id, forced=forced, progress=progress)
    if not reused:
        # A reused node publishes nothing new: its artifacts are keyed by pipeline and node, so the versions
        # published by the run that computed it stay the latest ones in the UI, and a cached rerun stays cheap.
        create_table_artifact(
            table=counts_table(manifest),
            key=_key(pipeline, node_id, "counts"),
            description=f"{node_id}: rows in, kept, dropped by reason, quarantined by error",
        )
        create_markdown_artifact(
            markdown=summary_markdown(manifest, reused),
            key=_key(pipeline, node_id, "summary"),
            description=f"{node_id}: summary and lineage",
        )
        _publish_reports(engine, manifest, pipeline, node_id)
    summary = {
        "node": node_id,
        "reused": reused,
        "fingerprint": manifest["fingerprint"],
        **manifest["counts"],
    }
    if reused:
        return Completed(name="Cached", message=f"reused {manifest['fingerprint'][:12]}", data=summary)
    return summary


def _publish_reports(engine: Engine, manifest: dict[str, Any], pipeline: str, node_id: str) -> None:
    """The kind's own reports: tables as table artifacts; markdown and PNG plots as markdown artifacts (the plot
    embedded as a data URI, so it shows without a file server)."""
    out_dir = engine.store.output_dir(manifest["fingerprint"])
    for i, report in enumerate(manifest.get("reports", [])):
        key = _key(pipeline, node_id, "report", str(i))
        title = f"{node_id}: {report['title']}"
        if "table" in report:
            with open(os.path.join(out_dir, report["table"]), "rb") as fh:
                create_table_artifact(table=json.loads(fh.read()), key=key + "-table", description=title)
        parts = []
        if "markdown" in report:
            with open(os.path.join(out_dir, report["markdown"]), encoding="utf-8") as fh:
                parts.append(fh.read())
        if "png" in report:
            with open(os.path.join(out_dir, report["png"]), "rb") as fh:
                parts.append(
                    f"![{report['title']}](data:image/png;base64,{base64.b64encode(fh.read()).decode()})"
                )
        if parts:
            create_markdown_artifact(
                markdown=f"## {title}\n\n" + "\n\n".join(parts), key=key, description=title
            )


@flow(name="arcflow", log_prints=True)
def arcflow_pipeline(
    pipeline: str = "pipeline.yaml",
    node: str | None = None,
    from_node: str | None = None,
    to_node: str | None = None,
    force: bool = False,
    overrides: list[str] | None = None,
    wait_for_lock: bool = True,
) -> dict[str, Any]:
    """Run the pipeline file (or a selection of its nodes)."""
    spec = load_pipeline(pipeline, overrides or [])
    engine = Engine(spec)
    return run_with_engine(engine, node, from_node, to_node, force, wait_for_lock)


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
    results: dict[str, Any] = {}
    try:
        with engine.store.lock(wait=wait_for_lock):
            run_dir = engine.record_run_start(run_key, selection)
            futures: dict[str, Any] = {}
            for node_id in selection.nodes:
                spec = engine.pipeline.nodes[node_id]
                t = run_node.with_options(
                    name=node_id,
                    task_run_name=node_id,
                    retries=spec.retries,
                    retry_delay_seconds=spec.retry_delay_s,
                )
                upstream = [futures[d] for d in engine.pipeline.deps[node_id] if d in futures]
                futures[node_id] = t.submit(run_key, node_id, node_id in selection.forced, wait_for=upstream)
            wait(list(futures.values()))
            failed = []
            for node_id, fut in futures.items():
                st = fut.state
                results[node_id] = st.name
                if not st.is_completed():
                    failed.append(node_id)
            engine.record_run_end(run_dir, results)
            if failed:
                raise NodeFailedError(f"node(s) failed: {', '.join(failed)}")
    finally:
        _ENGINES.pop(run_key, None)
        engine.close()
    return results
