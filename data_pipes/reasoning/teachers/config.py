"""The teacher section of `generate_sft`'s params, and the factory that builds a backend from it."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["procedural", "http", "hf"] = Field("procedural", description="which backend")
    base_url: str | None = Field(
        None, description="http: the OpenAI-compatible server, e.g. http://host:8000/v1"
    )
    model: str | None = Field(None, description="http: the served model name")
    api_key_env: str | None = Field(None, description="http: environment variable holding the API key")
    model_path: str | None = Field(None, description="hf: checkpoint folder, or package:<module>")
    gguf_file: str | None = Field(None, description="hf: a .gguf file inside model_path")
    batch_size: int = Field(8, ge=1, description="hf: prompts per generate() call")
    threads: int | None = Field(None, ge=1, description="hf: torch CPU threads (None: torch's default)")
    concurrency: int = Field(8, ge=1, description="http: requests in flight per shard")
    timeout_s: float = Field(120.0, gt=0, description="http: per-request timeout")
    retries: int = Field(4, ge=0, description="http: retries on 429/5xx/timeouts/garbage")
    backoff_s: float = Field(0.5, ge=0, description="http: first backoff delay (doubles, with jitter)")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (0 = greedy)")
    max_tokens: int = Field(1024, ge=1, description="completion token limit; hitting it means truncated")

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Missing fields for the chosen kind, as (path, message)."""
        need = {"http": ("base_url", "model"), "hf": ("model_path",), "procedural": ()}[self.kind]
        return [
            ((name,), f"teacher kind {self.kind!r} needs `{name}`")
            for name in need
            if not getattr(self, name)
        ]


def make_teacher(cfg: TeacherConfig, seed: int = 0):  # -> Teacher
    if cfg.kind == "procedural":
        from data_pipes.reasoning.teachers.procedural import ProceduralTeacher

        return ProceduralTeacher()
    if cfg.kind == "http":
        from data_pipes.reasoning.teachers.http import HttpTeacher

        key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
        return HttpTeacher(
            cfg.base_url or "",
            cfg.model or "",
            api_key=key,
            concurrency=cfg.concurrency,
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
            backoff_s=cfg.backoff_s,
            seed=seed,
        )
    from data_pipes.reasoning.teachers.hf import HfTeacher

    return HfTeacher(cfg.model_path or "", cfg.gguf_file, batch_size=cfg.batch_size, threads=cfg.threads)
