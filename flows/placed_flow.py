"""The coordinator flow of a multi-pool deployment: each placement stage as a flow run on its own work pool.

`arcflow deploy --cluster infra/cluster.yaml` (flows/deploy.py) creates one unscheduled deployment per work pool
(``<pipeline>-<pool>``, the ordinary arcflow flow) and a ``<pipeline>-placed`` deployment of this flow on the first
pool. A run of it walks the stages of flows/placement.py in order: each becomes a child flow run of its pool's
deployment with ``to_node`` = the stage's nodes (their inputs, made by earlier stages, are reused from the store),
and the next starts only when it completed. The coordinator holds no lock and does no work itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow

Launch = Callable[[str, dict[str, Any]], str]  # (deployment, parameters) -> final state name


def _run_deployment(deployment: str, parameters: dict[str, Any]) -> str:
    from prefect.deployments import run_deployment

    flow_run = run_deployment(f"arcflow/{deployment}", parameters=parameters, timeout=None, as_subflow=True)
    return flow_run.state.name if flow_run.state else "Unknown"


class StageFailedError(RuntimeError):
    """A placement stage's flow run did not complete; later stages were not started."""


def run_stages(
    pipeline: str,
    store: str | None,
    stages: list[dict[str, Any]],
    overrides: list[str],
    launch: Launch = _run_deployment,
) -> list[tuple[str, str]]:
    """Run ``stages`` (dicts of deployment, pool, nodes) in order; returns (deployment, state) per stage."""
    done = []
    for stage in stages:
        params = {
            "pipeline": pipeline,
            "store": store,
            "to_node": ",".join(stage["nodes"]),
            "overrides": list(overrides),
        }
        state = launch(stage["deployment"], params)
        done.append((stage["deployment"], state))
        if state != "Completed":
            raise StageFailedError(
                f"stage on pool {stage['pool']} ({', '.join(stage['nodes'])}) ended {state}; "
                f"fix it and start the placed deployment again (finished nodes are reused)"
            )
    return done


@flow(name="arcflow-placed", log_prints=True)
def arcflow_placed(
    pipeline: str,
    stages: list[dict[str, Any]],
    store: str | None = None,
    overrides: list[str] | None = None,
) -> list[tuple[str, str]]:
    """Each stage as a child flow run of its pool's deployment, in order."""
    return run_stages(pipeline, store, stages, overrides or [])
