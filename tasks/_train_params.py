"""Typed params of the training-stage kinds (``pretrain``, ``midtrain``, ``sft``; see ``tasks/train.py``).

The batch, optimizer and schedule blocks are those of the launcher's JSON spec (``model/train/spec.py``), so a
pipeline's ``params`` read like the spec the stage writes. ``ranks`` (default: the node's ``resources: {gpus: N}``,
else 1) is the number of ranks per host the DeepSpeed launcher starts; ``hostfile`` spreads them over hosts.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from model.config import FLAVOURS
from model.train.spec import BatchSpec, OptimSpec, ScheduleSpec
from tasks.base import KindParams


class StageParams(KindParams):
    flavour: str = Field("debug", description="model flavour of model/config.py: debug, tiny, small, air")
    overrides: dict[str, Any] = Field(default_factory=dict, description="any ModelConfig field")
    init_from: str | None = Field(None, description="the input node whose checkpoint this stage starts from")
    steps: int = Field(20, ge=1, description="optimizer steps")
    batch: BatchSpec = Field(default_factory=BatchSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    zero_stage: Literal[0, 1, 2] = Field(
        0,
        description="DeepSpeed ZeRO stage; with Muon, ZeRO 1/2 shard the AdamW part and whole Muon matrices",
    )
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 on GPU; fp32 on CPU")
    checkpoint_every: int = Field(0, ge=0, description="save a resumable DeepSpeed state every N steps")
    checkpoint_keep: int = Field(2, ge=1, description="DeepSpeed states kept in the work folder")
    ranks: int | None = Field(None, ge=1, description="ranks per host (default: resources.gpus, else 1)")
    hostfile: str | None = Field(None, description="DeepSpeed hostfile: spread the ranks over its hosts")
    launcher: Literal["deepspeed", "torchrun"] = "deepspeed"
    threads: int = Field(1, ge=1, description="torch CPU threads per rank (fixed, for bit-identical results)")
    compile: bool | None = Field(
        None,
        description="regional torch.compile of the model's layers (docs/TRAIN_SPEED.md); default: on for bf16 "
        "on GPU, off on CPU",
    )
    seed: int = Field(0, description="added to the node seed (initialisation and sample order)")
    shuffle: bool = Field(True, description="seeded global sample order")

    @field_validator("flavour")
    @classmethod
    def _known_flavour(cls, value: str) -> str:
        """An unknown flavour fails validate, not the stage after its upstream work (model.config.model_config
        raises the same at run time)."""
        if value not in FLAVOURS:
            close = difflib.get_close_matches(value, FLAVOURS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(
                f"unknown model flavour {value!r}: {hint}valid flavours are {', '.join(sorted(FLAVOURS))} "
                "(model/config.py)"
            )
        return value


class PretrainParams(StageParams):
    pass


class MidtrainParams(StageParams):
    init_from: str = Field(description="the pretrain node this stage continues")  # type: ignore[assignment]
    rope_theta: float = Field(
        1_000_000.0, gt=0, description="RoPE base of the longer context (seed: 10k -> 1M)"
    )
    max_position_embeddings: int | None = Field(
        None,
        ge=8,
        description="positions of the model (default: the parent's, raised to the shards' seq_len)",
    )


class SftParams(StageParams):
    seq_len: int = Field(2048, ge=8, description="row length the chat records are packed best-fit into")

    @field_validator("seq_len")
    @classmethod
    def _within_positions(cls, value: int, info: ValidationInfo) -> int:
        """seq_len within the model's positions, when they are known from params alone: the flavour's (or
        overrides.max_position_embeddings); with init_from they are the parent checkpoint's, checked at run time."""
        overrides = info.data.get("overrides") or {}
        flavour = info.data.get("flavour")
        positions = overrides.get("max_position_embeddings")
        if positions is None and info.data.get("init_from") is None and flavour in FLAVOURS:
            positions = FLAVOURS[flavour].get("max_position_embeddings")
        if isinstance(positions, int) and value > positions:
            where = (
                "overrides.max_position_embeddings"
                if "max_position_embeddings" in overrides
                else f"the {flavour!r} flavour's max_position_embeddings"
            )
            raise ValueError(
                f"seq_len {value} exceeds the model's {positions} positions ({where}); lower seq_len to at "
                f"most {positions} or raise overrides.max_position_embeddings"
            )
        return value
