"""The one JSON spec a training run reads (``python -m model.train.main spec.json``): model flavour and overrides,
data, batch, optimizer and schedule, ZeRO stage, steps, checkpointing and seed. A stage kind writes it into its work
folder, so the run can be repeated by hand exactly as the pipeline ran it.

Example (CPU, 2 ranks)::

    {"model": {"flavour": "debug"},
     "data": {"shards": ["/store/outputs/<pack fp>"], "tokenizer": "/store/outputs/<tok fp>/tokenizer"},
     "batch": {"global_batch": 8, "micro_batch": 2},
     "optim": {"name": "muon", "lr": 3e-3}, "schedule": {"warmup_steps": 2},
     "steps": 20, "zero_stage": 0, "checkpoint": {"dir": "work/ckpt", "every": 5}, "seed": 0}
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.optim_config import OptimConfig


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Spec):
    flavour: str = "debug"
    overrides: dict[str, Any] = Field(default_factory=dict, description="any ModelConfig field")
    init_from: str | None = Field(None, description="HF folder of a parent checkpoint to start from")
    expert_impl: Literal["auto", "loop", "bmm", "grouped_mm"] = "auto"
    compile: bool | None = Field(
        None, description="regional torch.compile of the layers (None: on for bf16 on GPU, off otherwise)"
    )


class DataSpec(_Spec):
    shards: list[str] = Field(default_factory=list, description="packed_tokens shard files or folders")
    chat: list[str] = Field(default_factory=list, description="chat record shards (SFT), packed at start")
    tokenizer: str | None = Field(None, description="tokenizer folder: checked against the packing one")
    seq_len: int | None = Field(None, ge=8, description="SFT row length (chat data only)")
    seed: int = Field(0, description="global sample order (and SFT packing) seed")
    shuffle: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if bool(self.shards) == bool(self.chat):
            raise ValueError(
                "data: give either shards (packed tokens) or chat (SFT records), not both or neither"
            )
        if self.chat and (self.tokenizer is None or self.seq_len is None):
            raise ValueError("data.chat needs data.tokenizer (to render and tokenize) and data.seq_len")
        return self


class BatchSpec(_Spec):
    global_batch: int = Field(8, ge=1, description="rows per optimizer step, over all ranks")
    micro_batch: int = Field(1, ge=1, description="rows per forward pass on one rank")
    warmup_start: int | None = Field(None, ge=1, description="rows per step at the start of a batch warm-up")
    warmup_tokens: int = Field(0, ge=0, description="row tokens over which the batch grows to global_batch")

    @model_validator(mode="after")
    def _check(self) -> BatchSpec:
        if self.warmup_start is not None and self.warmup_start > self.global_batch:
            raise ValueError(
                f"batch.warmup_start {self.warmup_start} exceeds batch.global_batch {self.global_batch}"
            )
        return self


class OptimSpec(OptimConfig):
    name: Literal["adamw", "muon"] = Field(
        "adamw", description="torch AdamW, or Muon + AdamW (model/muon.py)"
    )
    clip: float = Field(1.0, ge=0, description="max global norm of the raw gradients (0: off)")


class ScheduleSpec(_Spec):
    warmup_steps: int = Field(0, ge=0)
    floor: float = Field(2.5e-5, ge=0, description="final learning rate of the cosine")
    mtp_weight: list[float] = Field(default_factory=lambda: [0.3], description="piecewise over steps")
    mtp_boundaries: list[int] = Field(default_factory=list)
    bias_update: list[float] = Field(default_factory=lambda: [1e-3], description="loss-free balance rate u")
    bias_boundaries: list[int] = Field(default_factory=list)
    aux_weight: float = Field(0.0, ge=0, description="sequence balance loss weight (1e-4 in the report)")


class CheckpointSpec(_Spec):
    dir: str
    every: int = Field(0, ge=0, description="save every N steps (0: only at the end)")
    keep: int = Field(2, ge=1, description="complete checkpoints kept (older ones removed after each save)")
    export: str | None = Field(None, description="write the final model as an HF folder here")


class TrainSpec(_Spec):
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec
    batch: BatchSpec = Field(default_factory=BatchSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    steps: int = Field(ge=1)
    zero_stage: Literal[0, 1, 2] = Field(
        0,
        description="DeepSpeed ZeRO stage; with Muon, ZeRO 1/2 shard the AdamW part and whole Muon matrices",
    )
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint: CheckpointSpec
    metrics: str | None = Field(None, description="metrics.parquet path (default: in checkpoint.dir)")
    seed: int = 0
    threads: int = Field(1, ge=1, description="torch CPU threads per rank (fixed, for bit-identical results)")
    stop_after: int | None = Field(None, ge=1, description="leave after this step (tests; resume continues)")


def load_spec(path: str) -> TrainSpec:
    """Read and validate a spec file; errors name the file and the field."""
    with open(path, encoding="utf-8") as fh:
        try:
            raw = json.load(fh)
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
    try:
        return TrainSpec.model_validate(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: invalid training spec:\n{exc}") from None
