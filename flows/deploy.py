"""Prefect deployments straight from pipeline.yaml's `schedules:` (the alternative to infra/prefect.yaml).

Each schedule becomes a deployment `<pipeline>-<schedule name or index>` of the arcflow flow on a process work pool,
with the pipeline file's absolute path as its parameter and the checkout as its working directory; a schedule's
`nodes:` limits its runs to what those nodes need. An unscheduled `<pipeline>-adhoc` deployment serves
`arcflow run --node NAME --deployment <pipeline>-adhoc`.
"""

from __future__ import annotations

import os
import re

from flows.validate import Pipeline

ENTRYPOINT = "flows/prefect_flow.py:arcflow_pipeline"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def deploy_schedules(pipeline: Pipeline, pool: str, create_pool: bool) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.settings import get_current_settings

    from flows.prefect_flow import arcflow_pipeline

    if not get_current_settings().api.url:
        raise RuntimeError(
            "no Prefect server configured: start `prefect server start` and set PREFECT_API_URL"
        )
    repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            if not create_pool:
                raise RuntimeError(
                    f"work pool {pool!r} does not exist; `prefect work-pool create {pool} "
                    "--type process` or pass --create-pool"
                ) from None
            try:
                client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            except ObjectAlreadyExists:
                pass
    flow = arcflow_pipeline.from_source(source=repo_root, entrypoint=ENTRYPOINT)
    base = _slug(pipeline.spec.name)
    pipeline_file = os.path.abspath(pipeline.file)
    job_variables = {"working_dir": pipeline.base_dir, "env": {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}}
    names = []
    for i, sched in enumerate(pipeline.spec.schedules):
        name = f"{base}-{sched.name or i}"
        params = {"pipeline": pipeline_file, "to_node": ",".join(sched.nodes) or None}
        flow.deploy(
            name=name,
            work_pool_name=pool,
            cron=sched.cron,
            parameters=params,
            job_variables=job_variables,
            tags=["arcflow", "scheduled"],
            print_next_steps=False,
            ignore_warnings=True,
            description=f"{pipeline.spec.name}: schedule {sched.cron} {sched.timezone}",
        )
        names.append(name)
    name = f"{base}-adhoc"
    flow.deploy(
        name=name,
        work_pool_name=pool,
        parameters={"pipeline": pipeline_file},
        job_variables=job_variables,
        tags=["arcflow", "adhoc"],
        print_next_steps=False,
        ignore_warnings=True,
        description=f"{pipeline.spec.name}: unscheduled, for single-node reruns",
    )
    names.append(name)
    return names
