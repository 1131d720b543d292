"""Node kinds: the contract every `uses:` name in pipeline.yaml fulfils.

A kind declares its typed params (a pydantic model with ``extra="forbid"``), the data types it consumes and produces,
and how its work splits into shards. The orchestrator (``flows/``) owns fingerprints, the store, retries and Prefect;
a kind only says *what* one shard does. Kinds never import Prefect.

Two shapes cover most kinds:

* ``plan_shards`` + ``run_shard``: independent shards (sources, filters, samples). The orchestrator runs the shard
  tasks on Dask, skips the shards whose completion marker already exists, and writes the manifest.
* ``run``: a kind with several phases (global dedup, percentile buckets) overrides ``run`` and drives its phases
  through ``ctx.map`` itself; it still writes its final output with ``ctx.shard_writer``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

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


@dataclass
class RunContext:
    """What a kind's ``run`` may use. ``map`` runs shard tasks on the cluster, skipping finished ones."""

    node_id: str
    params: KindParams
    inputs: list[InputRef]
    out_dir: str
    seed: int
    map: Callable[[Callable[..., Any], Sequence[ShardTask]], list[Any]]
    run_shards: Callable[[Sequence[ShardTask]], list[ShardResult]]
    extra: dict[str, Any] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)

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
            with open(os.path.join(folder, name), "wb") as fh:
                fh.write(data)
            entry[kind] = f"reports/{name}"
        self.reports.append(entry)


class Kind:
    """Base class of node kinds. Subclasses set the class variables and implement the shard methods."""

    name: ClassVar[str]
    Params: ClassVar[type[KindParams]] = NoParams
    input_types: ClassVar[tuple[DataType, ...]] = ()  # accepted types; empty means "no inputs" (a source)
    min_inputs: ClassVar[int] = 0
    max_inputs: ClassVar[int | None] = 0
    output_type: ClassVar[DataType] = DataType.DOCUMENTS
    packages: ClassVar[tuple[str, ...]] = ()  # distributions whose versions enter the fingerprint
    path_params: ClassVar[
        tuple[str, ...]
    ] = ()  # params holding paths, made absolute against pipeline.yaml's dir
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
