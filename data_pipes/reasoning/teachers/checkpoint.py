"""`CheckpointTeacher`: the pipeline's own model as a teacher, loaded from a checkpoint node's output (the HF
folder a training kind writes: ``pretrain``, ``midtrain``, ``sft``, ``grpo``), so an expert's outputs can be
distilled (GLM-4.5's expert iteration: ``rl_reasoning`` -> ``generate_sft`` -> ``sft_unified``).

The node names the checkpoint as one of its inputs (``teacher: {kind: checkpoint, checkpoint: rl_reasoning}``,
or the node's only checkpoint input); the kind passes that input's folder here. Generation uses the RL rollout
engine (``model/rl/rollout.py``): the arcflow checkpoint loads into our own GLM model, prompts are rendered with
the folder's chat template (the one training used), and each request is sampled with its own seed, so on CPU a
response depends on its request only, never on the batch it shared (same inputs and seed, same records; on a
GPU in bf16 the batch's shapes may change the numerics, hence the samples).
Requests are batched by their sampling settings, ``batch_size`` at a time; the model runs on CUDA in bf16 when
torch sees a GPU, else on CPU in fp32 (``threads`` torch threads). The input folder must hold ``config.json``,
``tokenizer.json`` and ``chat_template.jinja`` (what ``sft`` and ``grpo`` export); otherwise the node fails
before any shard runs, naming the file. ``name`` (the records' ``teacher``
column) is ``checkpoint:<input node>``: no machine path enters an output row.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from data_pipes.reasoning.teachers.base import GenRequest, GenResponse, OnResult

_POLICIES: dict[str, Any] = {}  # folder -> loaded policy, once per process (a Dask worker loads it once)


def check_checkpoint_folder(folder: str, name: str, node_id: str) -> None:
    """A clear error, before any shard runs, when the checkpoint input cannot teach: no weights config, no
    tokenizer, or no chat template to render the requests with."""
    need = {
        "config.json": "give a checkpoint node (pretrain, midtrain, sft, grpo) as the teacher",
        "tokenizer.json": "train that stage with a tokenizer input so it exports its tokenizer, then rerun it",
        "chat_template.jinja": "the teacher renders chat requests: use an sft or grpo checkpoint (they carry the "
        "chat template), or one whose folder has chat_template.jinja",
    }
    for file, fix in need.items():
        if file == "chat_template.jinja" and _template_in_config(folder):
            continue
        if not os.path.isfile(os.path.join(folder, file)):
            raise ValueError(
                f"node {node_id!r}: the checkpoint teacher {name!r} has no {file} ({folder}); {fix}"
            )


def _template_in_config(folder: str) -> bool:
    """Older transformers keep the chat template inside tokenizer_config.json."""
    import json

    try:
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as fh:
            return bool(json.load(fh).get("chat_template"))
    except (OSError, ValueError):
        return False


def load_checkpoint_policy(folder: str) -> Any:
    """The checkpoint's policy, once per process: on CUDA in bf16 when torch sees a GPU, else on CPU in fp32."""
    import torch

    from model.rl.rollout import load_policy

    if folder not in _POLICIES:
        if torch.cuda.is_available():
            policy = load_policy(folder, dtype=torch.bfloat16)
            policy.model.to("cuda")
        else:
            policy = load_policy(folder)
        _POLICIES[folder] = policy
    return _POLICIES[folder]


def _chat_template(folder: str) -> str:
    """The folder's chat template text (chat_template.jinja, else tokenizer_config.json's), or ''."""
    import json

    try:
        with open(os.path.join(folder, "chat_template.jinja"), encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        pass
    try:
        with open(os.path.join(folder, "tokenizer_config.json"), encoding="utf-8") as fh:
            return str(json.load(fh).get("chat_template") or "")
    except (OSError, ValueError):
        return ""


class CheckpointTeacher:
    @property
    def observation_role(self) -> bool:
        """Whether the agent loop hands this model tool results as ``observation`` turns (docs/CHAT_CONTRACT.md)
        rather than user turns: yes when its chat template names that role, as ours does (sft trains our model on
        tool results in that role, and agentic RL prompts it so); a transformers model's own template (an RL
        export of SmolLM2) that does not know it reads them as user turns."""
        return "observation" in _chat_template(self.folder)

    def __init__(self, folder: str, node: str, batch_size: int = 8, threads: int | None = None) -> None:
        self.folder, self.batch_size, self.threads = folder, batch_size, threads
        self.name = f"checkpoint:{node}"

    def generate(
        self, requests: Sequence[GenRequest], on_result: OnResult | None = None
    ) -> list[GenResponse]:
        by_key: dict[tuple[str, int], GenResponse] = {}
        groups: dict[tuple[float, int], list[GenRequest]] = {}
        for req in requests:
            groups.setdefault((req.temperature, req.max_tokens), []).append(req)
        for batch in (
            g[s : s + self.batch_size] for g in groups.values() for s in range(0, len(g), self.batch_size)
        ):
            try:
                responses = self._batch(batch)
            except Exception as exc:  # a model failure is this batch's error, counted by the caller
                responses = [
                    GenResponse(r.key, "", "error", {}, f"teacher_model_error: {exc!r}"[:300]) for r in batch
                ]
            for resp in responses:
                by_key[resp.key] = resp
                if on_result is not None:
                    on_result(resp)
        return [by_key[r.key] for r in requests]

    def _batch(self, batch: Sequence[GenRequest]) -> list[GenResponse]:
        import torch

        from model.rl.rollout import SamplingParams, generate

        if self.threads:
            torch.set_num_threads(self.threads)
        policy = load_checkpoint_policy(self.folder)
        tok = policy.tokenizer
        started = time.perf_counter()
        prompts = [
            list(
                tok(
                    tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False),
                    add_special_tokens=False,
                )["input_ids"]
            )
            for r in batch
        ]
        stops = policy.stop_ids()
        params = SamplingParams(
            max_new_tokens=batch[0].max_tokens, temperature=batch[0].temperature, stop_ids=stops
        )
        with torch.no_grad():
            comps = generate(
                policy, prompts, params, seeds=[r.seed for r in batch], pad_id=tok.pad_token_id or 0
            )
        seconds = (time.perf_counter() - started) / len(batch)
        out = []
        for req, prompt, comp in zip(batch, prompts, comps, strict=True):
            ids = list(comp.tokens)
            if ids and ids[-1] in stops:
                ids = ids[:-1]
            text = tok.decode(ids, skip_special_tokens=False)  # keep <think> and tool-call tags
            usage = {"prompt_tokens": len(prompt), "completion_tokens": len(comp.tokens)}
            finish = "length" if comp.truncated else "stop"
            out.append(GenResponse(req.key, text, finish, usage, None, 1, seconds))
        return out

    def close(self) -> None:
        pass
