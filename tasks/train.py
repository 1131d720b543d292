"""Training stages as kinds: `pretrain`, `midtrain` and `sft`, each producing a `checkpoint` (an HF folder).

Each stage resolves its inputs into the launcher's JSON spec (``model/train/spec.py``), checks the data against the
model before any rank starts (token ids inside the vocabulary, seq_len within the positions, the tokenizer the
shards were packed with, and with ``init_from`` the one its parent checkpoint was trained with, chat records
with an assistant turn), then starts the DeepSpeed launcher
(``model/train/launch.py``) as a subprocess with ``ranks`` ranks (default: ``resources: {gpus: N}``, else 1; a
``hostfile`` spreads them over hosts) and streams its ``metrics.jsonl`` into the node's progress (``train k/N
steps``) and, while it trains, into a metrics table and a plot. The layout of the output and work folders is in
``tasks/_train_run.py``.

- ``pretrain``: packed_tokens inputs (a ``pack`` node), optionally a tokenizer and ``init_from`` a checkpoint.
- ``midtrain``: the same, continuing ``init_from`` (required), with a larger RoPE base (``rope_theta``, seed 1M)
  and positions raised to the shards' seq_len.
- ``sft``: chat inputs and one tokenizer; records rendered with the one chat template, packed best-fit into
  ``seq_len`` rows, loss on assistant tokens only.

A rerun after a crash (``kill -9`` included) resumes from the last DeepSpeed state in ``_train/ckpt`` (every
``checkpoint_every`` steps); on CPU the final weights are bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from data_pipes.io.shards import ShardResult, write_shard
from tasks._train_params import MidtrainParams, PretrainParams, SftParams, StageParams
from tasks._train_run import (
    LIVE_EVERY_S,
    launch,
    metrics_table,
    resolve,
    summary_table,
    validate,
    write_outputs,
)
from tasks.base import DataType, Kind, RunContext
from tasks.registry import register


class _Stage(Kind):
    """The shared run of the three stages."""

    output_type: ClassVar[DataType] = DataType.CHECKPOINT
    packages = ("torch", "deepspeed", "transformers", "safetensors", "tokenizers")
    path_params = ("hostfile",)
    phases: ClassVar[tuple[str, ...]] = ("validate", "train", "export")
    max_inputs: ClassVar[int | None] = None
    # a forced run (`--node`) of an unfinished output resumes from its last DeepSpeed state (flows/engine.py)
    resume_when_forced: ClassVar[bool] = True

    def check_inputs(self, params: StageParams, inputs: list[str]) -> list[tuple[tuple[str | int, ...], str]]:  # type: ignore[override]
        if params.init_from is not None and params.init_from not in inputs:
            return [
                (
                    ("init_from",),
                    f"{params.init_from!r} is not an input of this node; its inputs are {inputs}",
                )
            ]
        return []

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: StageParams = ctx.params  # type: ignore[assignment]
        started = time.perf_counter()
        ctx.progress("validate", 0, 1, "steps")
        stage = resolve(ctx, self.name)
        validate(ctx, stage)
        ctx.progress("validate", 1, 1, "steps")
        resources = ctx.extra.get("resources") or {}
        gpus = int(resources.get("gpus") or 0)
        ranks = params.ranks or max(1, gpus)
        device = "cpu"
        if gpus:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        live = {"at": 0.0}

        def on_rows(rows: list[dict[str, Any]]) -> None:
            step = int(rows[-1]["step"]) if rows else 0
            ctx.progress("train", step, params.steps, "steps")
            now = time.monotonic()
            if (
                rows
                and ctx.on_report is not None
                and (now - live["at"] >= LIVE_EVERY_S or step >= params.steps)
            ):
                live["at"] = now
                table = metrics_table(rows, measured=True)
                ctx.publish_live(f"{ctx.node_id} metrics", table=table, png=_png(rows, ctx.node_id))

        trained = time.perf_counter()
        launch(ctx, stage, ranks, device, on_rows)
        train_s = time.perf_counter() - trained
        ctx.progress("export", 0, 1, "steps")
        summary = write_outputs(ctx, stage)
        import pyarrow.parquet as pq

        rows = pq.read_table(f"{stage.work}/metrics.parquet").to_pylist()
        ctx.add_report(
            "Training metrics", table=metrics_table(rows, last=len(rows)), png=_png(rows, ctx.node_id, False)
        )
        ctx.timings.update(train_s=train_s, ranks=float(ranks))
        result = write_shard(
            ctx.out_dir, 0, summary_table(summary), rows_in=summary["samples"], kept_in=summary["samples"],
            started=started, extra=summary,
        )  # fmt: skip
        ctx.progress("export", 1, 1, "steps")
        return [result]


def _png(rows: list[dict[str, Any]], node: str, measured: bool = True) -> bytes:
    """The plot; ``measured=False`` leaves tokens/s out (the output's plot must be the same bytes on every run)."""
    from data_pipes.plots import png_bytes
    from tasks._train_plot import metrics_figure

    shown = rows if measured else [{k: v for k, v in r.items() if k != "tok_s"} for r in rows]
    return png_bytes(metrics_figure(shown, f"{node}: step {rows[-1]['step'] if rows else 0}"))


@register
class Pretrain(_Stage):
    name: ClassVar[str] = "pretrain"
    Params = PretrainParams
    input_types: ClassVar[tuple[DataType, ...]] = (
        DataType.PACKED_TOKENS,
        DataType.TOKENIZER,
        DataType.CHECKPOINT,
    )
    min_inputs: ClassVar[int] = 1
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {
        DataType.PACKED_TOKENS: (1, None),
        DataType.TOKENIZER: (0, 1),
        DataType.CHECKPOINT: (0, 1),
    }
    description = "pre-train a GLM-4.5-style MoE on packed tokens with the DeepSpeed launcher"


@register
class Midtrain(_Stage):
    name: ClassVar[str] = "midtrain"
    Params = MidtrainParams
    input_types: ClassVar[tuple[DataType, ...]] = (
        DataType.PACKED_TOKENS,
        DataType.TOKENIZER,
        DataType.CHECKPOINT,
    )
    min_inputs: ClassVar[int] = 2
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {
        DataType.PACKED_TOKENS: (1, None),
        DataType.TOKENIZER: (0, 1),
        DataType.CHECKPOINT: (1, 1),
    }
    description = "continue a checkpoint on longer packed rows with a larger RoPE base"


@register
class Sft(_Stage):
    name: ClassVar[str] = "sft"
    Params = SftParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.CHAT, DataType.TOKENIZER, DataType.CHECKPOINT)
    min_inputs: ClassVar[int] = 2
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {
        DataType.CHAT: (1, None),
        DataType.TOKENIZER: (1, 1),
        DataType.CHECKPOINT: (0, 1),
    }
    description = "supervised fine-tuning on chat records (loss on assistant tokens), packed best-fit"
