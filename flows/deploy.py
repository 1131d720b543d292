"""Prefect deployments straight from pipeline.yaml's `schedules:` (the alternative to infra/prefect.yaml).

Each schedule becomes a deployment `<pipeline>-<schedule name or index>` of the arcflow flow on a process work pool,
its cron with the schedule's timezone; a schedule's `nodes:` limits its runs to what those nodes need. An
unscheduled `<pipeline>-adhoc` deployment serves `arcflow run --node NAME --deployment <pipeline>-adhoc`.

Where the code and data are: the flow's entrypoint is the module path `flows.prefect_flow.arcflow_pipeline` (the
installed package, importable wherever the worker's environment has arcflow installed), and the pull step sets the
working directory to the checkout that holds pipeline.yaml, not to where the package is installed. The pipeline
file and its store go as absolute paths in the parameters, so a run resolves this checkout's pipeline and store
whatever directory the worker runs in.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from flows.validate import Pipeline

ENTRYPOINT = "flows.prefect_flow.arcflow_pipeline"
# PYTHONSAFEPATH: the worker starts each flow run as `python -m prefect.engine` in the checkout, and `-m` would put
# that folder first on sys.path, so a checkout's own `flows/` (or stray `*.egg-info`) could shadow the installed
# package the CLI runs. Without it the flow run imports exactly what `arcflow run` imports.
WORKER_ENV = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONSAFEPATH": "1"}


class DeployError(RuntimeError):
    """A deployment could not be created; the message says what to do."""


@dataclass(frozen=True)
class Deployed:
    name: str  # flow/deployment
    schedule: str  # "0 3 * * * (Europe/Paris)" or "none"
    parameters: dict[str, Any]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _ensure_pool(pool: str, create_pool: bool) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            found = client.read_work_pool(pool)
        except ObjectNotFound:
            if not create_pool:
                raise DeployError(
                    f"work pool {pool!r} does not exist; `prefect work-pool create {pool} --type process`, "
                    "or leave out --no-create-pool"
                ) from None
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            except ObjectAlreadyExists:
                pass
            return
    if found.type != "process":
        raise DeployError(
            f"work pool {pool!r} is of type {found.type!r}; arcflow deploys to a process pool "
            f"(--pool NAME of a process pool, or a new name to create one)"
        )


def deploy_schedules(pipeline: Pipeline, pool: str, create_pool: bool) -> list[Deployed]:
    """Create or update the pipeline's deployments on ``pool``; returns what was deployed. Prints nothing."""
    from prefect.deployments.runner import EntrypointType
    from prefect.runner.storage import LocalStorage
    from prefect.schedules import Cron

    from flows.prefect_flow import arcflow_pipeline

    _ensure_pool(pool, create_pool)
    base = _slug(pipeline.spec.name)
    checkout = pipeline.base_dir
    pipeline_file = os.path.abspath(pipeline.file)
    job_variables = {"working_dir": checkout, "env": dict(WORKER_ENV)}
    common = {"pipeline": pipeline_file, "store": pipeline.workdir}
    planned: list[tuple[str, Any, dict[str, Any], list[str], str, str]] = []
    for i, sched in enumerate(pipeline.spec.schedules):
        planned.append(
            (
                f"{base}-{sched.name or i}",
                Cron(sched.cron, timezone=sched.timezone),
                {**common, "to_node": ",".join(sched.nodes) or None},
                ["arcflow", "scheduled"],
                f"{pipeline.spec.name}: schedule {sched.cron} ({sched.timezone})",
                f"{sched.cron} ({sched.timezone})",
            )
        )
    planned.append(
        (
            f"{base}-adhoc",
            None,
            dict(common),
            ["arcflow", "adhoc"],
            f"{pipeline.spec.name}: unscheduled, for single-node reruns",
            "none",
        )
    )
    out = []
    for name, schedule, params, tags, description, shown in planned:
        deployment = arcflow_pipeline.to_deployment(
            name=name,
            schedules=[schedule] if schedule is not None else None,
            parameters=params,
            job_variables=job_variables,
            tags=tags,
            description=description,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.storage = LocalStorage(checkout)  # the pull step: the checkout that holds pipeline.yaml
        try:
            deployment.apply(work_pool_name=pool)
        except Exception as exc:  # the API refused it: say which deployment and why
            raise DeployError(
                f"could not create deployment arcflow/{name}: {type(exc).__name__}: {exc}"
            ) from exc
        out.append(Deployed(f"arcflow/{name}", shown, params))
    return out


@dataclass(frozen=True)
class PlannedDeployment:
    name: str  # deployment name (without the flow's)
    flow: str  # arcflow (one pool's nodes) or arcflow-placed (the coordinator)
    work_pool: str
    parameters: dict[str, Any]


def placed_plan(pipeline: Pipeline, cluster: Any) -> list[PlannedDeployment]:
    """The deployments of a multi-pool cluster (flows/placement.py): one per work pool that runs nodes, each
    running the arcflow flow on its pool with the cluster's scheduler, and ``<pipeline>-placed``, the coordinator,
    on the pool of the last (catch-all) route, whose ``stages`` say which pool runs which nodes, in order."""
    from flows.placement import deployment_name, placement_stages

    base = _slug(pipeline.spec.name)
    overrides = [f"executor.address={cluster.scheduler}"]
    common = {"pipeline": os.path.abspath(pipeline.file), "store": pipeline.workdir, "overrides": overrides}
    stages = placement_stages(pipeline, cluster)
    out = [
        PlannedDeployment(deployment_name(base, key), "arcflow", cluster.pools[key].name, dict(common))
        for key in cluster.pools
        if any(s.pool == key for s in stages)
    ]
    staged = [
        {"pool": s.pool, "deployment": deployment_name(base, s.pool), "nodes": list(s.nodes)} for s in stages
    ]
    home = cluster.pools[cluster.routes[-1].pool].name
    out.append(PlannedDeployment(f"{base}-placed", "arcflow-placed", home, {**common, "stages": staged}))
    return out


def deploy_placed(pipeline: Pipeline, cluster: Any, create_pool: bool) -> list[Deployed]:
    """Create or update the deployments of :func:`placed_plan` (pools created when missing)."""
    from prefect.deployments.runner import EntrypointType
    from prefect.runner.storage import LocalStorage

    from flows.placed_flow import arcflow_placed
    from flows.prefect_flow import arcflow_pipeline

    flows = {"arcflow": arcflow_pipeline, "arcflow-placed": arcflow_placed}
    job_variables = {"working_dir": pipeline.base_dir, "env": dict(WORKER_ENV)}
    out = []
    for plan in placed_plan(pipeline, cluster):
        _ensure_pool(plan.work_pool, create_pool)
        deployment = flows[plan.flow].to_deployment(
            name=plan.name,
            parameters=plan.parameters,
            job_variables=job_variables,
            tags=["arcflow", "placed"],
            description=f"{pipeline.spec.name}: {plan.flow} on work pool {plan.work_pool}",
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment.storage = LocalStorage(pipeline.base_dir)
        try:
            deployment.apply(work_pool_name=plan.work_pool)
        except Exception as exc:  # the API refused it: say which deployment and why
            raise DeployError(
                f"could not create deployment {plan.flow}/{plan.name}: {type(exc).__name__}: {exc}"
            ) from exc
        out.append(Deployed(f"{plan.flow}/{plan.name}", "none", plan.parameters))
    return out
