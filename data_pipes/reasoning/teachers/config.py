"""The teacher section of `generate_sft`'s params, and the factory that builds a backend from it.

Backends are looked up by ``kind`` in ``BUILDERS`` (one entry each). ``checkpoint`` is the pipeline's own model:
the node takes the checkpoint node as an input and passes its folder to :func:`make_teacher`
(``checkpoint_dir``, ``checkpoint_node``)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TeacherConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["procedural", "http", "hf", "checkpoint"] = Field("procedural", description="which backend")
    checkpoint: str | None = Field(
        None,
        description="checkpoint: the input node whose model teaches (default: the node's only checkpoint input)",
    )
    base_url: str | None = Field(
        None, description="http: the OpenAI-compatible server, e.g. http://host:8000/v1"
    )
    model: str | None = Field(None, description="http: the served model name")
    api_key_env: str | None = Field(None, description="http: environment variable holding the API key")
    model_path: str | None = Field(None, description="hf: checkpoint folder, or package:<module>")
    gguf_file: str | None = Field(None, description="hf: a .gguf file inside model_path")
    batch_size: int = Field(8, ge=1, description="hf, checkpoint: prompts per generate() call")
    threads: int | None = Field(
        None, ge=1, description="hf, checkpoint: torch CPU threads (None: torch's default)"
    )
    concurrency: int = Field(8, ge=1, description="http: requests in flight per shard")
    timeout_s: float = Field(120.0, gt=0, description="http: per-request timeout")
    retries: int = Field(4, ge=0, description="http: retries on 429/5xx/timeouts/garbage")
    backoff_s: float = Field(0.5, ge=0, description="http: first backoff delay (doubles, with jitter)")
    temperature: float = Field(0.7, ge=0, description="sampling temperature (0 = greedy)")
    max_tokens: int = Field(1024, ge=1, description="completion token limit; hitting it means truncated")

    def problems(self) -> list[tuple[tuple[str, ...], str]]:
        """Missing fields for the chosen kind, as (path, message)."""
        need = {"http": ("base_url", "model"), "hf": ("model_path",), "procedural": (), "checkpoint": ()}[
            self.kind
        ]
        return [
            ((name,), f"teacher kind {self.kind!r} needs `{name}`")
            for name in need
            if not getattr(self, name)
        ]


def _procedural(cfg: TeacherConfig, seed: int, checkpoint_dir: str | None, node: str):  # -> Teacher
    from data_pipes.reasoning.teachers.procedural import ProceduralTeacher

    return ProceduralTeacher()


def _http(cfg: TeacherConfig, seed: int, checkpoint_dir: str | None, node: str):  # -> Teacher
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


def _hf(cfg: TeacherConfig, seed: int, checkpoint_dir: str | None, node: str):  # -> Teacher
    from data_pipes.reasoning.teachers.hf import HfTeacher

    return HfTeacher(cfg.model_path or "", cfg.gguf_file, batch_size=cfg.batch_size, threads=cfg.threads)


def _checkpoint(cfg: TeacherConfig, seed: int, checkpoint_dir: str | None, node: str):  # -> Teacher
    from data_pipes.reasoning.teachers.checkpoint import CheckpointTeacher

    if not checkpoint_dir:
        raise ValueError(
            "teacher kind 'checkpoint' needs a checkpoint node among the node's inputs (a pretrain, midtrain, "
            "sft or grpo node); add it to `inputs:` and name it in teacher.checkpoint"
        )
    return CheckpointTeacher(checkpoint_dir, node, batch_size=cfg.batch_size, threads=cfg.threads)


BUILDERS = {"procedural": _procedural, "http": _http, "hf": _hf, "checkpoint": _checkpoint}


def make_teacher(
    cfg: TeacherConfig, seed: int = 0, checkpoint_dir: str | None = None, checkpoint_node: str = ""
):  # -> Teacher
    """The backend of ``cfg.kind``; ``checkpoint_dir`` / ``checkpoint_node`` are the checkpoint input's folder
    and node name (kind ``checkpoint`` only)."""
    return BUILDERS[cfg.kind](cfg, seed, checkpoint_dir, checkpoint_node)


def checkpoint_input(cfg: TeacherConfig, inputs: list, node_id: str) -> tuple[str | None, str]:
    """(folder, node name) of the checkpoint input the teacher uses, or (None, "") when it is not a checkpoint
    teacher. ``inputs`` are the node's ``InputRef``s; a clear error names the node and the fix."""
    if cfg.kind != "checkpoint":
        return None, ""
    ckpts = [i for i in inputs if getattr(i.data_type, "value", i.data_type) == "checkpoint"]
    if cfg.checkpoint is not None:
        ckpts = [i for i in ckpts if i.name == cfg.checkpoint]
    if len(ckpts) != 1:
        names = [i.name for i in inputs if getattr(i.data_type, "value", i.data_type) == "checkpoint"]
        want = f"checkpoint input {cfg.checkpoint!r}" if cfg.checkpoint else "exactly one checkpoint input"
        raise ValueError(
            f"node {node_id!r}: teacher kind 'checkpoint' needs {want}; its checkpoint inputs are {names}. "
            "Add the checkpoint node (pretrain, midtrain, sft, grpo) to `inputs:` and name it in "
            "teacher.checkpoint"
        )
    from data_pipes.reasoning.teachers.checkpoint import check_checkpoint_folder

    check_checkpoint_folder(ckpts[0].path, ckpts[0].name, node_id)
    return ckpts[0].path, ckpts[0].name
