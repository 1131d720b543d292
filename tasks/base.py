"""Node kinds: the contract every `uses:` name in pipeline.yaml fulfils.

A kind declares its typed params (a pydantic model with ``extra="forbid"``), the data types it consumes and produces,
and how its work splits into shards. The orchestrator (``flows/``) owns fingerprints, the store, retries and Prefect;
a kind only says *what* one shard does. Kinds never import Prefect.

Two shapes cover most kinds:

* ``plan_shards`` + ``run_shard``: independent shards (sources, filters, samples). The orchestrator runs the shard
  tasks on Dask, skips the shards whose completion marker already exists, and writes the manifest.
* ``run``: a kind with several phases (global dedup, percentile buckets) overrides ``run`` and drives its phases
  through ``ctx.map`` itself; it still writes its final output with ``ctx.run_shards``.

Progress: ``ctx.map(fn, items, phase="embed")`` and ``ctx.run_shards(tasks)`` report each finished item; driver-side
work reports with ``ctx.progress(phase, done, total, unit)``, or hands ``ctx.progress_fn(phase, unit)`` (a plain
``(done, total)`` callable) to ``data_pipes`` code. A kind that lists its ``phases`` gets an overall fraction
across them. Listeners (the Prefect progress artifact, the CLI's bars) throttle, so reporting often is cheap.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from data_pipes.io.shards import ShardResult


class DataType(str, enum.Enum):
    """What flows along a DAG edge. Producers and consumers are matched on these before anything runs."""

    DOCUMENTS = "documents"
    PACKED_TOKENS = "packed_tokens"
    CHAT = "chat"
    TOKENIZER = "tokenizer"
    WARC = "warc"  # WARC files (warc/part-*.warc.gz in the producer's output folder)
    MODEL = "model"  # a trained classifier/scorer (e.g. a fastText .bin with its metrics table)
    CHECKPOINT = "checkpoint"
    REPORT = "report"


class KindParams(BaseModel):
    """Base of every kind's params: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoParams(KindParams):
    pass


@dataclass(frozen=True)
class InputRef:
    """A finished input of a node, as the kind sees it: where its shards are and what they hold."""

    name: str
    data_type: DataType
    path: str  # the input node's output directory
    shards: tuple[str, ...]  # absolute paths of its kept shards, in order
    rows: tuple[int, ...]  # kept rows per shard, same order
    content_hash: str


@dataclass(frozen=True)
class ShardTask:
    """One unit of work. ``payload`` must be picklable: it travels to a Dask worker."""

    index: int
    payload: Any
    label: str = ""


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` ``unit`` finished in ``phase`` of ``node``; the phase is ``step`` of ``steps`` when the
    kind lists its phases (``Kind.phases``), else step 1 of 1."""

    node: str
    phase: str
    done: int
    total: int
    unit: str = "shards"
    step: int = 1
    steps: int = 1

    @property
    def fraction(self) -> float:
        """Overall progress of the node in [0, 1]: finished phases plus the share of this one."""
        part = min(1.0, self.done / self.total) if self.total > 0 else 1.0
        return (self.step - 1 + part) / self.steps

    @property
    def phase_done(self) -> bool:
        return self.done >= self.total

    def text(self) -> str:
        """E.g. ``embed 3/8 chunks (phase 1 of 4)``; ``3/8 shards`` for a kind with one phase of shards."""
        count = f"{self.done}/{self.total} {self.unit}"
        out = count if self.phase == self.unit else f"{self.phase} {count}"
        return out + (f" (phase {self.step} of {self.steps})" if self.steps > 1 else "")


ProgressFn = Callable[[ProgressEvent], None]


class MapFn(Protocol):
    """``ctx.map``: ``fn(item)`` for every item on the cluster, results in item order; each finished item is
    reported as progress of ``phase`` (default: named after ``fn``)."""

    def __call__(
        self, fn: Callable[..., Any], items: Sequence[Any], *, phase: str | None = None, unit: str = "shards"
    ) -> list[Any]: ...


class RunShardsFn(Protocol):
    """``ctx.run_shards``: the kind's ``run_shard`` for every task not already done (resume), as progress of
    ``phase`` (default: the kind's last listed phase, else ``shards``)."""

    def __call__(self, tasks: Sequence[ShardTask], *, phase: str | None = None) -> list[ShardResult]: ...


@dataclass
class RunContext:
    """What a kind's ``run`` may use. ``map`` runs shard tasks on the cluster, skipping finished ones."""

    node_id: str
    params: KindParams
    inputs: list[InputRef]
    out_dir: str
    seed: int
    map: MapFn
    run_shards: RunShardsFn
    extra: dict[str, Any] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)
    # wall-clock seconds of the kind's phases: they go to the manifest's timings, never into output files or
    # reports (the content hash covers those, and they must be the same bytes on every run)
    timings: dict[str, float] = field(default_factory=dict)
    phases: tuple[str, ...] = ()  # the kind's phases, in order (for the overall fraction)
    on_progress: ProgressFn | None = None
    # ``publish_live``'s listener: (title, table, png), e.g. the Prefect layer's table and plot artifacts
    on_report: Callable[[str, list[dict[str, Any]] | None, bytes | None], None] | None = None

    def publish_live(
        self, title: str, *, table: list[dict[str, Any]] | None = None, png: bytes | None = None
    ) -> None:
        """A report refreshed while the node runs (a training stage's metrics and plot): handed to the listener
        (the Prefect layer publishes it as artifacts), never written to the output. Call it every few seconds at
        most; the final version goes to the output with ``add_report``."""
        if self.on_report is not None:
            self.on_report(title, table, png)

    def progress(self, phase: str, done: int, total: int, unit: str = "shards") -> None:
        """Report that ``done`` of ``total`` ``unit`` of ``phase`` are finished. Cheap: listeners throttle."""
        if self.on_progress is None:
            return
        if phase in self.phases:
            step, steps = self.phases.index(phase) + 1, len(self.phases)
        else:  # a phase the kind did not list: its own fraction only
            step, steps = 1, 1
        self.on_progress(ProgressEvent(self.node_id, phase, int(done), int(total), unit, step, steps))

    def progress_fn(self, phase: str, unit: str) -> Callable[[int, int], None]:
        """A plain ``(done, total)`` callable reporting ``phase``, for data_pipes code (which knows no context)."""

        def report(done: int, total: int) -> None:
            self.progress(phase, done, total, unit)

        return report

    def add_report(
        self,
        title: str,
        *,
        markdown: str | None = None,
        table: list[dict[str, Any]] | None = None,
        png: bytes | None = None,
    ) -> None:
        """Attach a report to the node's output (``reports/`` beside the shards, listed in the manifest). The
        Prefect layer publishes each as an artifact: tables as table artifacts, markdown and PNG plots as markdown
        artifacts; `arcflow show` lists them."""
        import json
        import os
        import re

        from data_pipes.io.atomic import atomic_write_bytes

        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "report"
        folder = os.path.join(self.out_dir, "reports")
        os.makedirs(folder, exist_ok=True)
        entry: dict[str, Any] = {"title": title}
        for kind, value, ext in (("markdown", markdown, "md"), ("table", table, "json"), ("png", png, "png")):
            if value is None:
                continue
            name = f"{slug}.{ext}"
            data = (
                value
                if isinstance(value, bytes)
                else (
                    value.encode()
                    if isinstance(value, str)
                    else json.dumps(value, indent=1, default=str).encode()
                )
            )
            atomic_write_bytes(os.path.join(folder, name), data)
            entry[kind] = f"reports/{name}"
        self.reports.append(entry)


class Kind:
    """Base class of node kinds. Subclasses set the class variables and implement the shard methods."""

    name: ClassVar[str]
    Params: ClassVar[type[KindParams]] = NoParams
    input_types: ClassVar[tuple[DataType, ...]] = ()  # accepted types; empty means "no inputs" (a source)
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[int | None] = 0
    # how many inputs of a type the kind needs, as (min, max or None): validation checks them before a run, e.g.
    # pack's {TOKENIZER: (1, 1), DOCUMENTS: (1, None)}; types not listed are bounded only by min/max_inputs
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {}
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    packages: ClassVar[tuple[str, ...]] = ()  # distributions whose versions enter the fingerprint
    path_params: ClassVar[
        tuple[str, ...]
    ] = ()  # params holding paths, made absolute against pipeline.yaml's dir
    phases: ClassVar[tuple[str, ...]] = ()  # named phases of a multi-phase ``run``, in order (progress)
    description: ClassVar[str] = ""

    # ---- driver side ----------------------------------------------------------------------------------------
    def check_params(self, params: KindParams) -> list[tuple[tuple[str | int, ...], str]]:
        """Extra semantic checks beyond the pydantic model: ``[(path inside params, message), ...]``."""
        return []

    def check_inputs(self, params: KindParams, inputs: list[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """Checks of params against the node's input ids (e.g. a mapping keyed by input name)."""
        return []

    def signature(self, params: KindParams) -> str:
        """Extra fingerprint material that is not in params or code (e.g. the files a source reads)."""
        return ""

    def code_sources(self, params: KindParams) -> dict[str, str]:
        """``{module: sha256 of its source}`` of code outside the project that ``signature`` hashes (a user's
        step module): the workers check they hold that code too (tasks/loaded_code.py)."""
        return {}

    def plan_shards(self, ctx: RunContext) -> list[ShardTask]:
        raise TypeError(f"kind {self.name!r} implements neither plan_shards nor run")

    def run(self, ctx: RunContext) -> list[ShardResult]:
        results = ctx.run_shards(self.plan_shards(ctx))
        self.summarize(ctx, results)
        return results

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        """After the shards: add node-level reports (histograms, mixture tables) with ``ctx.add_report``."""

    # ---- worker side -----------------------------------------------------------------------------------------
    def run_shard(self, params: KindParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:
        raise TypeError(f"kind {self.name!r} does not implement run_shard")
