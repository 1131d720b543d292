"""Where a pipeline's work runs on a multi-host cluster: the cluster spec of ``infra/cluster.yaml`` and node routing.

The spec says three things, none of which is in pipeline.yaml (so a pipeline goes from a laptop to a cluster by
changing ``infra/`` only):

- ``scheduler``: the Dask scheduler every flow run's shard work goes to (sent to each deployment as the override
  ``executor.address=...``);
- ``workers``: groups of hosts with the ``dask worker`` processes each runs and the Dask resources they offer
  (``CPU``, ``GPU``, ``MEMORY_GB``: what a node's ``resources:`` ask for, see flows/engine.py); ``worker_commands``
  renders the command lines of each host (one per CPU-only group that lists it, one per worker of a group whose
  workers hold GPUs, each pinned to its own GPUs with ``CUDA_VISIBLE_DEVICES``), with arcflow's Dask worker
  settings (``worker_environment``);
- ``pools`` and ``routes``: Prefect work pools, and which nodes run on which (first matching route wins: ``min_gpus``,
  ``min_memory_gb``, ``kinds``). A node's task runs in the flow run of its pool, so a training stage with
  ``resources: {gpus: 8}`` runs its launcher on a GPU host while data nodes run on CPU hosts.

``placement_stages`` cuts the DAG, in topological order, into consecutive stages of one pool each (all of a stage's
inputs are made by earlier stages); the coordinator flow (flows/placed_flow.py) runs each stage as a flow run of its
pool's deployment, one after the other, each taking the store's lock for itself. The store must be one every host
sees (an object store, ``workdir: s3://...``, or a shared filesystem).
"""

from __future__ import annotations

import difflib
import math
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from flows.executor import MEMORY
from flows.schema import SCHEDULER_SCHEMES
from flows.validate import Pipeline

# the Dask resources arcflow's shard tasks ask for (flows/engine.py: resources.cpus -> CPU, gpus -> GPU,
# memory_gb -> MEMORY_GB, flows/executor.py's MEMORY): a worker offering any other name gets no task for it
RESOURCE_NAMES = ("CPU", "GPU", MEMORY)


def _resource_name(name: str) -> str:
    if name in RESOURCE_NAMES:
        return name
    close = difflib.get_close_matches(name.upper(), RESOURCE_NAMES, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ValueError(
        f"{name!r} is not a resource arcflow asks for; {hint}write one of {', '.join(RESOURCE_NAMES)}"
    )


def _positive(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"{value:g} is not a positive number; a worker offers more than 0 of a resource (or leave it out)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolSpec(_Strict):
    name: str = Field(
        description="the Prefect work pool (type process; `arcflow deploy --cluster` creates it)"
    )
    description: str = ""


class RouteSpec(_Strict):
    pool: str = Field(description="a key of `pools:`")
    min_gpus: int | None = Field(None, ge=1, description="nodes whose resources.gpus is at least this")
    min_memory_gb: float | None = Field(
        None, gt=0, description="nodes whose resources.memory_gb is at least this"
    )
    kinds: list[str] = Field(default_factory=list, description="nodes of these kinds (`uses:`)")

    def matches(self, uses: str, resources: dict[str, Any]) -> bool:
        if self.min_gpus is not None and int(resources.get("gpus") or 0) < self.min_gpus:
            return False
        if self.min_memory_gb is not None and float(resources.get("memory_gb") or 0) < self.min_memory_gb:
            return False
        return not self.kinds or uses in self.kinds

    @property
    def unconditional(self) -> bool:
        return self.min_gpus is None and self.min_memory_gb is None and not self.kinds


class WorkerGroup(_Strict):
    name: str
    hosts: list[str] = Field(min_length=1)
    nworkers: int = Field(1, ge=1, description="worker processes per host")
    nthreads: int = Field(1, ge=1, description="threads per worker process")
    memory_limit: str = Field(
        "auto",
        description="per worker process: a size (7GiB, 500MB), a fraction of the host's memory or auto",
    )
    resources: dict[
        Annotated[str, AfterValidator(_resource_name)], Annotated[float, AfterValidator(_positive)]
    ] = Field(default_factory=dict, description="Dask resources each worker offers: CPU, GPU, MEMORY_GB")
    gpus_per_host: int | None = Field(
        None,
        ge=1,
        description="GPUs each of the group's hosts has: the GPUs its workers are pinned to (with those of the "
        "host's earlier groups) must fit in it",
    )
    dask_settings: Literal["arcflow", "dask"] = Field(
        "arcflow",
        description="arcflow: the worker command sets arcflow's Dask settings (worker_environment: the "
        "statistical profiler off, slower health ticks) as DASK_* environment variables, which take precedence "
        "over the worker host's own Dask config files (DASK_CONFIG) for those keys; `dask_settings: dask` "
        "leaves the host's own Dask configuration in charge",
    )

    @field_validator("memory_limit")
    @classmethod
    def _memory_limit(cls, v: str) -> str:
        # what `dask worker --memory-limit` takes: auto, or what dask.utils.parse_bytes reads (a fraction of the
        # host's memory is a number <= 1, which it reads too)
        if v == "auto":
            return v
        from dask.utils import parse_bytes

        try:
            if not any(c.isdigit() for c in v):  # parse_bytes reads "" as 1 byte and "GiB" as 1GiB
                raise ValueError("no number")
            size = parse_bytes(v)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{v!r} is not a size ({exc}); write e.g. 7GiB, 500MB, 0.5 or auto") from None
        if size < 0:
            raise ValueError(f"{v!r} is negative; write e.g. 7GiB, 500MB, 0.5 or auto")
        return v

    @model_validator(mode="after")
    def _cpu(self) -> WorkerGroup:
        # shard tasks ask for CPU (flows/engine.py): a worker that does not offer it would never get one
        self.resources.setdefault("CPU", float(self.nthreads))
        gpu = self.resources.get("GPU")
        if gpu is not None and gpu != int(gpu):
            raise ValueError(
                f"resources.GPU {gpu:g} is not a whole number: each worker is pinned to whole GPUs "
                "(CUDA_VISIBLE_DEVICES); give each worker 1 or more"
            )
        return self

    @property
    def gpus(self) -> int:
        """GPUs each worker process holds (pinned with CUDA_VISIBLE_DEVICES), 0 for a CPU-only group."""
        return int(self.resources.get("GPU") or 0)


# schemes whose addresses are HOST:PORT; the others (inproc://, ucx://) are taken as flows/schema.py takes them
HOST_PORT_SCHEMES = ("tcp://", "tls://", "ws://", "wss://")


def _host_port_problem(address: str) -> str | None:
    """Why the scheduler ``address`` (``scheme://HOST:PORT`` for :data:`HOST_PORT_SCHEMES`) is not one, or None."""
    scheme = next((s for s in HOST_PORT_SCHEMES if address.startswith(s)), None)
    if scheme is None:
        return None
    host, sep, port = address[len(scheme) :].rpartition(":")
    fix = f"write {scheme}HOST:PORT, e.g. {scheme}dask-scheduler.internal:8786"
    if not sep or not host.strip("[]"):
        return f"scheduler {address!r} has no host and port; {fix}"
    if any(c.isspace() for c in host):
        return f"scheduler {address!r}: the host {host!r} contains whitespace; {fix}"
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return f"scheduler {address!r}: the port {port!r} is not a number from 1 to 65535; {fix}"
    return None


def _word_problem(value: str) -> str | None:
    """Why ``value`` (a worker group's name or host) is not one non-empty word, or None."""
    if not value:
        return "is empty"
    if any(c.isspace() for c in value):
        return "contains whitespace"
    return None


class ClusterSpec(_Strict):
    scheduler: str = Field(
        description="SCHEME://HOST:PORT of the `dask scheduler` (tcp, tls, ws, wss; inproc:// and ucx:// as Dask "
        "writes them)"
    )
    pools: dict[str, PoolSpec] = Field(min_length=1)
    routes: list[RouteSpec] = Field(
        min_length=1, description="first match wins; the last must match every node"
    )
    workers: list[WorkerGroup] = Field(default_factory=list)

    @field_validator("scheduler")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not v.startswith(SCHEDULER_SCHEMES):
            raise ValueError(f"scheduler {v!r} has no scheme; write tcp://{v}")
        problem = _host_port_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _worker_names(self) -> ClusterSpec:
        for i, group in enumerate(self.workers):
            problem = _word_problem(group.name)
            if problem is not None:
                raise ValueError(f"workers[{i}].name {group.name!r} {problem}; name the group with one word")
            for j, host in enumerate(group.hosts):
                problem = _word_problem(host)
                if problem is not None:
                    raise ValueError(
                        f"workers[{i}].hosts[{j}] {host!r} {problem}; write one host name or address per entry"
                    )
        return self

    @model_validator(mode="after")
    def _gpus_fit(self) -> ClusterSpec:
        used: dict[str, int] = {}  # host -> GPUs its earlier groups' workers are pinned to
        for i, group in enumerate(self.workers):
            if not group.gpus:
                continue
            for host in group.hosts:
                first = used.get(host, 0)
                used[host] = first + group.nworkers * group.gpus
                if group.gpus_per_host is not None and used[host] > group.gpus_per_host:
                    earlier = f" after the {first} of its earlier groups" if first else ""
                    raise ValueError(
                        f"workers[{i}] (group {group.name!r}): {group.nworkers} workers x GPU={group.gpus} on host "
                        f"{host} need GPUs {first}..{used[host] - 1}{earlier}, but gpus_per_host is "
                        f"{group.gpus_per_host}; lower nworkers or resources.GPU"
                    )
        return self

    @model_validator(mode="after")
    def _routes(self) -> ClusterSpec:
        for i, r in enumerate(self.routes):
            if r.pool not in self.pools:
                raise ValueError(f"routes[{i}].pool {r.pool!r} is not one of pools: {', '.join(self.pools)}")
        if not self.routes[-1].unconditional:
            raise ValueError("the last of routes must have no condition (the pool of every other node)")
        return self


class ClusterSpecError(ValueError):
    """infra/cluster.yaml is missing or invalid; the message names the file and the field."""


def load_cluster(path: str | Path) -> ClusterSpec:
    path = Path(path)
    if not path.is_file():
        raise ClusterSpecError(f"cluster spec {path} not found (see infra/cluster.yaml for an example)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ClusterSpecError(_yaml_error(path, exc)) from None
    try:
        return ClusterSpec.model_validate(data or {})
    except ValidationError as exc:
        raise ClusterSpecError(_validation_error(path, data, exc)) from None


def _validation_error(path: Path, data: Any, exc: ValidationError) -> str:
    """One line for the spec's validation errors: the file, then each error's line in the file (where the spec
    says where: the field's path, or the ``workers[i]...`` a whole-spec check names), the field, the worker
    group's name for a field of ``workers:``, and the reason."""
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError:  # pragma: no cover - safe_load read it
        root = None
    parts = []
    for e in exc.errors():
        loc = tuple(p for p in e["loc"] if p != "[key]")  # a dict key's own error: the key
        msg = e["msg"].removeprefix("Value error, ")
        line = _line_of(root, loc or _loc_in(msg))
        group = ""
        if len(loc) >= 2 and loc[0] == "workers" and isinstance(loc[1], int):
            workers = data.get("workers") if isinstance(data, dict) else None
            item = workers[loc[1]] if isinstance(workers, list) and loc[1] < len(workers) else None
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                group = f" (group {item['name']!r})"
        text = f"{'.'.join(str(p) for p in loc) or 'spec'}{group}: {msg}"
        parts.append(f"line {line}: {text}" if line is not None else text)
    sep = ", " if parts[0].startswith("line ") else ": "
    return f"{path}{sep}" + "; ".join(parts)


def _loc_in(msg: str) -> tuple[str | int, ...]:
    """The field path a whole-spec check's message starts with (``workers[1].hosts[0] ...`` -> workers, 1,
    hosts, 0), or ()."""
    m = re.match(r"(workers|routes)((?:\[\d+\]|\.\w+)*)", msg)
    if not m:
        return ()
    rest = re.findall(r"\[(\d+)\]|\.(\w+)", m.group(2))
    return (m.group(1), *(int(i) if i else k for i, k in rest))


def _line_of(root: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """The 1-based line of the deepest node of ``loc`` the YAML tree ``root`` has (a mapping key's line for a
    key), or None when not even the first is there."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next((kv for kv in node.value if str(kv[0].value) == str(part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    """The one-line message of a YAML syntax error in ``path``: the file, the line and column (1-based), yaml's
    reason."""
    mark = getattr(exc, "problem_mark", None)
    where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark is not None else f"{path}"
    reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{where}: not valid YAML ({reason}); fix the syntax there"


def pool_of(pipeline: Pipeline, node_id: str, cluster: ClusterSpec) -> str:
    """The key in ``cluster.pools`` of the pool that runs ``node_id``."""
    node = pipeline.nodes[node_id]
    return next(r.pool for r in cluster.routes if r.matches(node.uses, node.resources))


@dataclass(frozen=True)
class Stage:
    pool: str  # key of cluster.pools
    work_pool: str  # the Prefect work pool's name
    nodes: tuple[str, ...]


def placement_stages(pipeline: Pipeline, cluster: ClusterSpec) -> list[Stage]:
    """Consecutive stages of one pool each, in an order that respects the DAG, with as few pool changes as the
    greedy rule finds: a stage takes every remaining node of its pool whose inputs are done or in the stage."""
    pools = {n: pool_of(pipeline, n, cluster) for n in pipeline.order}
    done: set[str] = set()
    stages = []
    remaining = list(pipeline.order)
    while remaining:
        ready = [n for n in remaining if all(d in done for d in pipeline.deps[n])]
        pool = pools[ready[0]]
        taken: list[str] = []
        for n in remaining:  # topological order: a node's inputs come before it
            if pools[n] == pool and all(d in done or d in taken for d in pipeline.deps[n]):
                taken.append(n)
        done.update(taken)
        remaining = [n for n in remaining if n not in done]
        stages.append(Stage(pool, cluster.pools[pool].name, tuple(taken)))
    return stages


def _env_name(key: str) -> str:
    """A Dask config key as the environment variable Dask reads it from (``DASK_A__B_C``)."""
    return "DASK_" + "__".join(part.replace("-", "_").upper() for part in key.split("."))


def worker_environment() -> dict[str, str]:
    """The environment a cluster's ``dask worker`` runs shard work best with: the settings arcflow gives its own
    LocalCluster (``flows.executor.IDLE_DEFAULTS``) as Dask's ``DASK_*`` variables. The one that matters for
    speed is the statistical profiler: by default every worker samples its running task's stack every 10 ms,
    holding the GIL, which made the web branch's shard work 4 to 7% slower on one worker (docs/SCALE.md,
    "Machine E: what the Dask worker adds"). Environment variables take precedence over the worker host's own
    Dask config files (``DASK_CONFIG``), so these keys override the host's settings for them; ``dask_settings:
    dask`` leaves the host's own Dask configuration in charge."""
    from flows.executor import IDLE_DEFAULTS

    return {_env_name(k): str(v) for k, v in IDLE_DEFAULTS.items()}


def worker_commands(cluster: ClusterSpec) -> dict[str, list[str]]:
    """host -> the `dask worker` command lines it runs, in spec order (start each, e.g. from systemd or ssh): a
    CPU-only group gives one line per host (``--nworkers N``); a group whose workers hold GPUs (``resources.GPU``)
    one line per worker (``--nworkers 1``), each under ``env CUDA_VISIBLE_DEVICES=...`` with its own GPUs, numbered
    consecutively on the host (worker i of GPU=g holds i*g .. i*g+g-1, after the GPUs of the host's earlier
    groups), so that the workers of one host do not all use cuda:0. A group with ``dask_settings: arcflow`` (the
    default) runs it under ``env`` with ``worker_environment()``. Every value from the spec is shell-quoted."""
    out: dict[str, list[str]] = {}
    used: dict[str, int] = {}  # host -> GPUs pinned by its earlier groups
    for group in cluster.workers:
        for host in group.hosts:
            if not group.gpus:
                out.setdefault(host, []).append(_worker_command(cluster.scheduler, group, host))
                continue
            first = used.get(host, 0)
            for i in range(group.nworkers):
                ids = range(first + i * group.gpus, first + (i + 1) * group.gpus)
                out.setdefault(host, []).append(_worker_command(cluster.scheduler, group, host, i, ids))
            used[host] = first + group.nworkers * group.gpus
    return out


def _worker_command(
    scheduler: str, group: WorkerGroup, host: str, index: int = 0, gpu_ids: range | None = None
) -> str:
    """The `dask worker` command line of ``group`` on ``host``: all its workers, or with ``gpu_ids`` its worker
    ``index`` alone, pinned to those GPUs (named as Dask names the workers of ``--nworkers``: NAME-INDEX)."""
    res = ",".join(f"{k}={v:g}" for k, v in sorted(group.resources.items()))
    env: dict[str, str] = {}
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)
    if group.dask_settings == "arcflow":
        env.update(sorted(worker_environment().items()))
    q = shlex.quote
    prefix = "env " + " ".join(q(f"{k}={v}") for k, v in env.items()) + " " if env else ""
    name, nworkers = f"{group.name}-{host}", group.nworkers
    if gpu_ids is not None:
        name, nworkers = (name if group.nworkers == 1 else f"{name}-{index}"), 1
    return (
        f"{prefix}dask worker {q(scheduler)} --name {q(name)} --nworkers {nworkers} "
        f"--nthreads {group.nthreads} --memory-limit {q(group.memory_limit)} --resources {q(res)}"
    )


def deployment_name(pipeline_name: str, pool: str) -> str:
    return f"{pipeline_name}-{pool}"


USAGE = (
    "usage: python -m flows.placement [CLUSTER_SPEC]\n"
    "CLUSTER_SPEC: a cluster spec YAML file (default infra/cluster.yaml; see that file for the format).\n"
    "Prints the `dask worker` command lines each host of the spec's workers: groups runs, one per line as\n"
    "'HOST: COMMAND'; a spec error is one line on stderr and exit status 2."
)


def main(argv: list[str]) -> int:
    """``python -m flows.placement [FILE]`` (default infra/cluster.yaml): print each host's worker commands, one
    line each; ``-h``/``--help`` prints the usage and exits 0; a spec error, a spec with no ``workers:``, an unknown
    option or more than one argument is one line on stderr and exit status 2."""
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return 0
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        what = (
            f"unknown option {argv[0]!r}"
            if len(argv) == 1
            else f"{len(argv)} arguments, expected at most one"
        )
        print(f"{what}; usage: python -m flows.placement [CLUSTER_SPEC] (--help says more)", file=sys.stderr)
        return 2
    path = argv[0] if argv else "infra/cluster.yaml"
    try:
        cluster = load_cluster(path)
    except ClusterSpecError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not cluster.workers:
        print(f"{path}: no workers: groups to start (add a workers: entry)", file=sys.stderr)
        return 2
    for host, cmds in worker_commands(cluster).items():
        for cmd in cmds:
            print(f"{host}: {cmd}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
