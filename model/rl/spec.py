"""The one JSON spec a GRPO run reads (``python -m model.rl.main spec.json``): the starting policy, the problem
tables, rollout and GRPO settings, rewards, optimizer, steps and checkpoints. The ``grpo`` kind writes it into its
work folder, so a run can be repeated by hand exactly as the pipeline ran it.

Example (CPU, one rank)::

    {"policy": {"path": "/store/outputs/<sft fp>"},
     "data": {"train": "work/problems/train.parquet", "val": "work/problems/val.parquet"},
     "rollout": {"group_size": 8, "prompts_per_step": 4, "max_new_tokens": 64, "temperature": 1.0},
     "grpo": {"aggregation": "token_mean", "updates": 1},
     "rewards": {"weights": {"format": 0.2}},
     "optim": {"name": "adamw", "lr": 1e-6}, "steps": 20,
     "checkpoint": {"dir": "work/ckpt", "every": 5}, "rollouts_dir": "work/rollouts", "seed": 0}
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from model.rl.agentic_config import AgentSpec
from model.rl.curriculum import CurriculumConfig
from model.rl.temperature import TemperatureConfig
from model.train.spec import CheckpointSpec, OptimSpec

# defined here, not in model.rl.grpo, so that loading the spec (every `arcflow` command loads the grpo kind's
# params) does not import torch
Aggregation = Literal["token_mean", "seq_mean", "seq_mean_token_sum"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicySpec(_Spec):
    path: str = Field(
        description="HF folder (a training kind's checkpoint, any transformers causal LM) or package:"
    )
    gguf_file: str | None = Field(
        None, description="GGUF weights inside path (e.g. SmolLM2-135M-Instruct.Q4_1.gguf)"
    )


class DataSpec(_Spec):
    train: str = Field(description="Parquet of the training problems (problem-table rows)")
    val: str | None = Field(None, description="Parquet of the held-out validation problems")


class EngineSpec(_Spec):
    """Where single-turn rollouts are sampled: the local KV-cache engine (model/rl/rollout.py), or an
    OpenAI-compatible completions server (vLLM, SGLang) the user runs (model/rl/openai_engine.py)."""

    name: Literal["local", "openai"] = "local"
    base_url: str | None = Field(
        None, description="openai: the server's API root, e.g. http://127.0.0.1:8000/v1"
    )
    model: str | None = Field(None, description="openai: the model name the server serves")
    api_key_env: str | None = Field(
        None, description="openai: the environment variable holding the API key (sent as a Bearer token)"
    )
    concurrency: int = Field(32, ge=1, description="openai: requests in flight at once")
    timeout_s: float = Field(120.0, gt=0, description="openai: seconds per request before it is retried")
    retries: int = Field(
        3, ge=0, description="openai: retries of a request after a 5xx/429, timeout or garbage"
    )
    weights_dir: str | None = Field(
        None,
        description="openai: where the stage writes the policy as an HF folder after each step's update "
        "(default <checkpoint.dir>/served), for the server to load",
    )
    reload_url: str | None = Field(
        None,
        description="openai: after writing the weights, POST {'model_path': <folder>} here and wait for a 2xx "
        "(e.g. SGLang's /update_weights_from_disk); none: arcflow reloads nothing",
    )

    @model_validator(mode="after")
    def _check(self) -> EngineSpec:
        if self.name == "openai" and not (self.base_url and self.model):
            raise ValueError(
                "rollout.engine name 'openai' needs base_url and model (the server's API and name)"
            )
        return self


class RolloutSpec(_Spec):
    engine: EngineSpec = Field(
        default_factory=EngineSpec,
        description="local (default) or openai: a vLLM/SGLang completions server (single_turn rollouts only)",
    )
    strategy: Literal["single_turn", "agentic"] = Field(
        "single_turn",
        description="how a sample is made (model/rl/strategies.py): one completion scored by the reward "
        "registry, or a multi-turn episode through the agent loop's tools judged for task completion (agent:)",
    )
    group_size: int = Field(8, ge=2, description="G: completions sampled per prompt")
    prompts_per_step: int = Field(8, ge=1, description="informative groups per step (the batch)")
    oversample: float = Field(2.0, ge=1.0, description="prompts drawn per round = prompts_per_step * this")
    max_rounds: int = Field(4, ge=1, description="sampling rounds per step to fill the batch")
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(
        1.0, ge=0, description="starting temperature (dynamic temperature may raise it)"
    )
    top_p: float = Field(1.0, gt=0, le=1)
    thinking: bool | None = Field(
        None, description="chat template's enable_thinking (None: template default)"
    )
    stop: list[str] = Field(
        default_factory=lambda: ["<|endoftext|>", "<|user|>", "<|observation|>", "<|system|>", "<|im_end|>"],
        description="tokens that end a completion besides eos (names missing from the vocabulary are ignored)",
    )
    truncated: Literal["keep", "mask", "penalise"] = Field(
        "mask",
        description="a completion that hits max_new_tokens: trained as is, no loss, or given truncated_reward",
    )
    truncated_reward: float = 0.0
    batch: int = Field(64, ge=1, description="rows generated at once")


class GrpoSpec(_Spec):
    aggregation: Aggregation = "token_mean"
    scale_std: bool = Field(False, description="divide advantages by the group's std")
    eps_low: float = Field(0.2, ge=0, lt=1)
    eps_high: float = Field(0.28, ge=0)
    kl_coef: float = Field(0.0, ge=0, description="k3 KL to the starting policy (0: none, the report's GRPO)")
    updates: int = Field(1, ge=1, description="optimizer steps per rollout batch (mini-batches; >1 clips)")
    micro_batch: int = Field(8, ge=1, description="rows per forward/backward")
    max_filtered_steps: int = Field(
        5, ge=1, description="stop when every group is filtered this many steps in a row"
    )


class ValSpec(_Spec):
    every: int = Field(
        0, ge=0, description="measure the validation pass rate every N steps (0: start and end)"
    )
    max_new_tokens: int | None = Field(None, ge=1, description="default: rollout.max_new_tokens")
    limit: int | None = Field(None, ge=1, description="validation problems used (default all)")


class RLSpec(_Spec):
    policy: PolicySpec
    data: DataSpec
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    grpo: GrpoSpec = Field(default_factory=GrpoSpec)
    val: ValSpec = Field(default_factory=ValSpec)
    rewards: dict[str, Any] = Field(
        default_factory=dict, description="RewardsConfig (data_pipes/reasoning/rewards)"
    )
    agent: AgentSpec | None = Field(
        None, description="agentic rollouts' tools, turn and token limits, judge (rollout.strategy agentic)"
    )
    curriculum: CurriculumConfig | None = Field(
        None, description="two-stage difficulty curriculum (model/rl/curriculum.py); none: every problem"
    )
    temperature: TemperatureConfig | None = Field(
        None,
        description="dynamic temperature (model/rl/temperature.py); none: rollout.temperature throughout",
    )
    optim: OptimSpec = Field(default_factory=lambda: OptimSpec(name="adamw", lr=1e-6, weight_decay=0.0))
    steps: int = Field(ge=1)
    zero_stage: Literal[0, 1, 2] = 0
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint: CheckpointSpec
    rollouts_dir: str = Field(description="scored rollouts per step (reused on resume)")
    metrics: str | None = Field(None, description="metrics.parquet path (default: in checkpoint.dir)")
    seed: int = 0
    threads: int = Field(1, ge=1)
    stop_after: int | None = Field(None, ge=1, description="leave after this step (tests; resume continues)")

    @model_validator(mode="after")
    def _check(self) -> RLSpec:
        if self.optim.name == "muon" and self.zero_stage > 0:
            raise ValueError("optim.name 'muon' needs zero_stage 0; use zero_stage 0 or optim.name 'adamw'")
        check_temperature(self.rollout, self.temperature)
        check_engine(self.rollout)
        return self


def check_engine(rollout: RolloutSpec) -> None:
    """The OpenAI engine samples single-turn completions only (a ValueError otherwise)."""
    if rollout.engine.name == "openai" and rollout.strategy != "single_turn":
        raise ValueError(
            f"rollout.engine 'openai' samples single_turn rollouts only, not {rollout.strategy!r}; use the local "
            "engine for agentic rollouts"
        )


def check_temperature(rollout: RolloutSpec, temperature: TemperatureConfig | None) -> None:
    """The dynamic temperature starts at the rollout temperature, which must be in its range (a ValueError)."""
    if temperature is not None and rollout.temperature > temperature.max_temperature:
        raise ValueError(
            f"rollout.temperature {rollout.temperature} is above temperature.max_temperature "
            f"{temperature.max_temperature}; raise max_temperature or lower the rollout temperature"
        )


def load_spec(path: str) -> RLSpec:
    """Read and validate a spec file; errors name the file and the field."""
    with open(path, encoding="utf-8") as fh:
        try:
            raw = json.load(fh)
        except ValueError as exc:
            raise ValueError(f"{path}: not JSON ({exc})") from None
    try:
        return RLSpec.model_validate(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: invalid GRPO spec:\n{exc}") from None
