"""The optimizer's hyper-parameters, kept apart from :mod:`model.muon` so that the stages' typed params (and so every
`arcflow` command, which loads every kind's params) read them without importing torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OptimConfig(BaseModel):
    """Optimizer hyper-parameters (the stage params that feed :func:`build_optimizer`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(default=2.5e-4, gt=0, description="peak learning rate (both Muon and AdamW)")
    weight_decay: float = Field(default=0.1, ge=0)
    momentum: float = Field(default=0.95, ge=0, lt=1, description="Muon momentum")
    nesterov: bool = True
    ns_steps: int = Field(default=5, ge=1)
    update_rms: float = Field(default=0.2, gt=0, description="RMS of a Muon update before the learning rate")
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = Field(default=1e-8, gt=0)
