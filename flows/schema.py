"""The typed model of ``pipeline.yaml`` (pydantic v2, unknown keys are errors).

Node params are kept as a plain mapping here and validated against the node's kind in ``flows/validate.py``,
so one schema serves every kind the registry knows, and ``arcflow schema`` can still emit per-kind JSON
Schema.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

NODE_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
PIPELINE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
SCHEDULER_SCHEMES = ("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")
CRON_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


def _check_cron(expr: str) -> str | None:
    """Why ``expr`` is not a cron expression Prefect accepts, or None. Uses cronsim where installed."""
    text = expr.strip()
    if text.lower() in CRON_ALIASES:
        return None
    fields = text.split()
    if len(fields) not in (5, 6):
        return f"has {len(fields)} field(s), not 5 ({' '.join(CRON_FIELDS)})"
    try:
        from cronsim import CronSim, CronSimError
    except (
        ImportError
    ):  # cronsim comes with Prefect's dependencies; without it only the field count is checked
        return None
    try:
        CronSim(text, datetime(2024, 1, 1))
    except CronSimError as exc:
        return f"is invalid ({str(exc).lower()})"
    return None


def suggest_name(value: str) -> str:
    """A valid pipeline / node name close to ``value``: ``Web Crawl!`` -> ``web_crawl``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", value.strip())
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return text if text and text[0].isalpha() else f"n_{text}".rstrip("_")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(Strict):
    """What one shard task of the node needs. ``gpus`` > 0 sends its shards to workers with a GPU resource."""

    cpus: float = Field(1.0, gt=0, description="CPU cores per shard task")
    memory_gb: float | None = Field(
        None,
        gt=0,
        description="memory per shard task: a Dask resource (MEMORY_GB), so a worker runs only as many of the "
        "node's shards at once as fit in its memory limit",
    )
    gpus: int = Field(0, ge=0, description="GPUs per shard task")
    max_parallel_shards: int | None = Field(None, ge=1, description="cap on this node's shards in flight")


class NodeSpec(Strict):
    uses: str = Field(description="a registered node kind (`arcflow kinds` lists them)")
    inputs: list[str] = Field(default_factory=list, description="ids of the nodes or sources this node reads")
    params: dict[str, Any] = Field(default_factory=dict, description="the kind's params")
    resources: Resources = Field(default_factory=Resources)
    retries: int = Field(0, ge=0, le=50, description="Prefect task retries of the whole node")
    retry_delay_s: float = Field(5.0, ge=0, description="seconds between retries")
    description: str = ""

    @field_validator("inputs", mode="before")
    @classmethod
    def _one_input(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class ExecutorSpec(Strict):
    """Where shard work runs: an embedded LocalCluster (default) or an existing Dask scheduler."""

    address: str | None = Field(None, description="an existing scheduler, e.g. tcp://host:8786")
    n_workers: int | None = Field(None, ge=1, description="LocalCluster workers (default: one per core)")
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: str = Field("auto", description="per-worker memory limit of the LocalCluster")
    processes: bool = Field(True, description="LocalCluster workers as processes (True) or threads")
    inline_s: float = Field(
        3.0,
        ge=0,
        description="shard work projected to finish within this many seconds runs in the calling process "
        "instead of starting the LocalCluster (small reruns skip its start-up); 0 always uses the cluster",
    )

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(SCHEDULER_SCHEMES):
            raise ValueError(
                f"scheduler address {v!r} has no scheme; write tcp://{v} (or tls://, ucx://, ws://)"
            )
        return v

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit(cls, v: str) -> str:
        """What Dask's LocalCluster reads: ``auto``, a size (``4GiB``, ``6GB``, bytes) or a fraction of the
        machine's memory (``0.5``); checked here, not when the cluster starts in the middle of a run."""
        if v.strip().lower() == "auto":
            return v
        try:
            float(v)
            return v
        except ValueError:
            pass
        from dask.utils import parse_bytes

        try:
            parse_bytes(v)
        except ValueError:
            raise ValueError(
                f"memory limit {v!r} is not a size: write e.g. 4GiB or 6GB per worker, 0.5 for half the machine's "
                f"memory over the workers, or auto"
            ) from None
        return v


class ScheduleSpec(Strict):
    name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]*$", description="deployment name suffix")
    cron: str = Field(description="cron expression, e.g. '0 3 * * *'")
    timezone: str = "UTC"
    nodes: list[str] = Field(default_factory=list, description="limit the scheduled run to these nodes")

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        why = _check_cron(v)
        if why:
            raise ValueError(f"cron expression {v!r} {why}; e.g. '0 3 * * *' runs daily at 03:00")
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            import difflib

            close = difflib.get_close_matches(v, sorted(zoneinfo.available_timezones()), n=1, cutoff=0.6)
            fix = (
                f"did you mean {close[0]!r}?" if close else "use an IANA name such as 'UTC' or 'Europe/Paris'"
            )
            raise ValueError(f"unknown timezone {v!r}; {fix}") from None
        return v


class PipelineSpec(Strict):
    name: str = Field(description="pipeline name", json_schema_extra={"pattern": PIPELINE_NAME_PATTERN})
    description: str = ""
    workdir: str = Field(".arcflow", description="the store: node outputs under their fingerprints")
    seed: int = Field(0, description="global seed; kinds derive their seeds from it and the node id")
    sources: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="named local file sets; each is a node of kind `files`"
    )
    nodes: dict[str, NodeSpec] = Field(default_factory=dict)
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec)
    schedules: list[ScheduleSpec] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not re.match(PIPELINE_NAME_PATTERN, v):
            raise ValueError(
                f"pipeline name {v!r} may use only letters, digits, '_', '.' and '-', starting with a "
                f"letter or digit; e.g. {suggest_name(v) or 'my_pipeline'!r}"
            )
        return v

    def all_nodes(self) -> dict[str, NodeSpec]:
        """Sources compiled into ``files`` nodes, followed by the declared nodes."""
        merged = {name: NodeSpec(uses="files", params=dict(p)) for name, p in self.sources.items()}
        merged.update(self.nodes)
        return merged
