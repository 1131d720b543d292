"""Typed settings of agentic rollouts (``rollout.strategy: agentic``, model/rl/agentic.py).

:class:`AgentParams` is what a pipeline writes under the ``grpo`` kind's ``agent:`` block; :class:`AgentSpec` adds
what the kind fills in for the launcher (the workspace folder the file tools read). Light on imports: the kind's
params validate without torch.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ToolName = Literal["calculator", "python", "files", "search"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentTaskCounts(_Config):
    """Tool-requiring tasks the kind generates (data_pipes/reasoning/agent_tasks.py), beside its problem inputs."""

    calculator: int = Field(0, ge=0, description="arithmetic tasks (a clarify_share of them need the user)")
    python: int = Field(
        0, ge=0, description="'what does function F of module M return' (workspace + sandbox)"
    )
    files: int = Field(0, ge=0, description="'how many lines does data/notes_N.txt have' (workspace)")
    search: int = Field(0, ge=0, description="'which page mentions W' (needs a documents input)")


class AgentParams(_Config):
    tools: list[ToolName] = Field(
        default_factory=lambda: ["calculator", "python", "files"],
        description="the agent loop's real tools offered to the policy (files = list_files and read_file; "
        "search = BM25 over the node's document inputs, those without a prompt column)",
    )
    search_k: int = Field(3, ge=1, description="results per search")
    max_turns: int = Field(4, ge=1, description="policy turns per episode before it counts as unfinished")
    max_episode_tokens: int = Field(
        1024, ge=8, description="tokens after the prompt (policy and observations) before the episode is cut"
    )
    judge: str = Field("rules", description="the agent judge: rules, terminal, or module:function")
    sandbox_timeout_s: float = Field(5.0, gt=0, description="the python tool's wall limit")
    sandbox_memory_mb: int = Field(512, ge=64, description="the python tool's address-space limit")
    generate: AgentTaskCounts = Field(default_factory=AgentTaskCounts, description="generated agent tasks")
    clarify_share: float = Field(
        0.25, ge=0, le=1, description="share of calculator tasks missing their numbers"
    )


class AgentSpec(AgentParams):
    workspace: str | None = Field(None, description="folder the file tools read (the kind builds it)")
    search_docs: list[str] = Field(
        default_factory=list, description="document shards (Parquet, a text column) the search tool indexes"
    )
