"""Hugging Face checkpoint folders in and out: :func:`save_hf` writes what ``AutoModelForCausalLM.from_pretrained``
loads (``config.json`` + safetensors through transformers' own ``save_pretrained``), :func:`load_hf` reads such a
folder back into :class:`model.glm.GLMForCausalLM`.

Layout of an exported folder:

- ``config.json``, ``generation_config.json``, ``model.safetensors`` (or shards + index): written by
  ``Glm4MoeForCausalLM.save_pretrained`` from our state dict (the names are HF's, so this is a plain state-dict load
  into a meta-device HF model; no weight is copied or renamed). A training stage that ships a tokenizer then calls
  :func:`set_generation_stops`: ``<|endoftext|>``, ``<|user|>`` and ``<|observation|>`` become the stop ids.
- the MTP layer under ``model.layers.{num_hidden_layers}.*`` with the published GLM-4.5 names, plus copies of the
  embedding (``...embed_tokens.weight``) and head (``...shared_head.head.weight``) as the published checkpoints
  carry them. transformers 5.x skips MTP keys silently only for 46- and 92-layer models (its
  ``_keys_to_ignore_on_load_unexpected``, which its ``MtpModel.from_pretrained`` also uses to find them). For those
  depths the MTP tensors go where transformers looks: into ``model.safetensors`` (or, when sharded, a
  ``mtp.safetensors`` shard listed in the index). For every other depth they go to ``mtp.safetensors`` beside the
  checkpoint, outside any index: ``from_pretrained`` then loads the main model with no unexpected-key warning,
  and :func:`load_hf` reads every ``*.safetensors`` of the folder.

``dtype`` casts floating tensors on the way out (the router's weight and correction bias stay fp32, as HF keeps them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.config import from_hf, to_hf
from model.glm import AttnImpl, GLMForCausalLM
from model.hf import hf_import
from model.moe import ExpertImpl

MTP_FILE = "mtp.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_FP32_KEYS = re.compile(r"mlp\.gate\.(weight|e_score_correction_bias)$")


def _hf_ignores(key: str) -> bool:
    """True when transformers' Glm4MoeForCausalLM silently ignores ``key`` as an unexpected checkpoint key."""
    Glm4MoeForCausalLM = hf_import("Glm4MoeForCausalLM")

    patterns = Glm4MoeForCausalLM._keys_to_ignore_on_load_unexpected or []
    return any(re.search(p, key) for p in patterns)


def _cast(sd: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point() and not _FP32_KEYS.search(k):
            v = v.to(dtype)
        out[k] = v.contiguous().clone()
    return out


def save_hf(model: GLMForCausalLM, path: str | Path, *, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` as a Hugging Face folder at ``path`` (created; existing files of the same names replaced)."""
    Glm4MoeForCausalLM = hf_import("Glm4MoeForCausalLM")

    cfg = model.config
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    sd = _cast(model.state_dict(), dtype)
    mtp_prefix = f"model.layers.{cfg.num_hidden_layers}."
    main = {k: v for k, v in sd.items() if not k.startswith(mtp_prefix)}
    mtp = {k: v for k, v in sd.items() if k.startswith(mtp_prefix)}
    if cfg.tie_word_embeddings:
        main.pop("lm_head.weight", None)

    hf_cfg = to_hf(cfg)
    if dtype is not None:
        hf_cfg.dtype = dtype
    with torch.device("meta"):
        hf_model = Glm4MoeForCausalLM(hf_cfg)
    hf_model.load_state_dict(main, strict=not cfg.tie_word_embeddings, assign=True)
    hf_model.save_pretrained(path)

    if mtp:
        # copies: safetensors refuses two names for one storage
        head = main.get("lm_head.weight", main["model.embed_tokens.weight"])
        mtp[mtp_prefix + "embed_tokens.weight"] = main["model.embed_tokens.weight"].clone()
        mtp[mtp_prefix + "shared_head.head.weight"] = head.clone()
        index_path = path / INDEX_FILE
        if not all(_hf_ignores(k) for k in mtp):
            save_file(
                mtp, str(path / MTP_FILE), metadata={"format": "pt"}
            )  # beside the checkpoint, unindexed
        elif index_path.exists():  # sharded: one more shard in the index
            save_file(mtp, str(path / MTP_FILE), metadata={"format": "pt"})
            index = json.loads(index_path.read_text())
            index["weight_map"] = dict(
                sorted({**index["weight_map"], **dict.fromkeys(mtp, MTP_FILE)}.items())
            )
            sizes = [t.numel() * t.element_size() for t in [*main.values(), *mtp.values()]]
            index["metadata"]["total_size"] = sum(sizes)
            index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        else:  # one file: the MTP tensors join it, as in the published single-file layouts
            save_file({**main, **mtp}, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


STOP_TOKENS = (
    "<|endoftext|>",
    "<|user|>",
    "<|observation|>",
)  # end of text, and a turn handed to user or tool


def set_generation_stops(path: str | Path, tokenizer_json: str | Path) -> list[int]:
    """Make ``generate`` stop where a turn ends: ``generation_config.json`` in the HF folder ``path`` gets as
    ``eos_token_id`` the ids of :data:`STOP_TOKENS` that the tokenizer has (``<|endoftext|>`` first; the chat
    template's ``<|user|>`` and ``<|observation|>`` start the next turn, so a model that has answered or called a
    tool stops there, as GLM-4.5's published generation config does) and ``<|endoftext|>`` as ``pad_token_id``
    when none is set. Returns the stop ids (none: the file is left as it was)."""
    from tokenizers import Tokenizer

    GenerationConfig = hf_import("GenerationConfig")

    tok = Tokenizer.from_file(str(tokenizer_json))
    ids = [i for i in (tok.token_to_id(t) for t in STOP_TOKENS) if i is not None]
    if not ids:
        return []
    path = Path(path)
    gen = (
        GenerationConfig.from_pretrained(path)
        if (path / "generation_config.json").exists()
        else GenerationConfig()
    )
    gen.eos_token_id = ids
    if gen.pad_token_id is None and tok.token_to_id(STOP_TOKENS[0]) is not None:
        gen.pad_token_id = tok.token_to_id(STOP_TOKENS[0])
    gen.save_pretrained(path)
    return ids


_LEGACY_EXPERT = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


def _fuse_legacy_experts(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-expert checkpoint names (``experts.{e}.gate_proj.weight``, the published GLM-4.5 layout) -> 3D tensors."""
    groups: dict[str, dict[int, dict[str, torch.Tensor]]] = {}
    out = {}
    for k, v in sd.items():
        m = _LEGACY_EXPERT.match(k)
        if m is None:
            out[k] = v
            continue
        groups.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = v
    for prefix, experts in groups.items():
        ids = sorted(experts)
        if ids != list(range(len(ids))):
            raise ValueError(
                f"{prefix}: expert numbers {ids[:5]}... are not 0..{len(ids) - 1}; the checkpoint is cut"
            )
        out[prefix + ".gate_up_proj"] = torch.stack(
            [torch.cat([experts[e]["gate_proj"], experts[e]["up_proj"]], dim=0) for e in ids]
        )
        out[prefix + ".down_proj"] = torch.stack([experts[e]["down_proj"] for e in ids])
    return out


def load_hf(
    path: str | Path,
    *,
    expert_impl: ExpertImpl = "auto",
    attn_impl: AttnImpl = "auto",
    dtype: torch.dtype | None = None,
) -> GLMForCausalLM:
    """Read a Hugging Face GLM-4.5 folder (ours or transformers' ``save_pretrained``) into :class:`GLMForCausalLM`."""
    AutoConfig = hf_import("AutoConfig")

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: no config.json here; give the folder that save_hf or save_pretrained wrote (a local path)"
        )
    hf_cfg = AutoConfig.from_pretrained(str(path), local_files_only=True)
    if getattr(hf_cfg, "model_type", None) != "glm4_moe":
        raise ValueError(
            f"{path}/config.json has model_type {hf_cfg.model_type!r}; this loader reads 'glm4_moe'"
        )
    cfg = from_hf(hf_cfg)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors files next to config.json")
    sd: dict[str, torch.Tensor] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for k in f.keys():
                sd[k] = f.get_tensor(k)
    sd = _fuse_legacy_experts(sd)
    mtp_prefix = f"model.layers.{cfg.num_hidden_layers}."
    for copy in ("embed_tokens.weight", "shared_head.head.weight"):
        sd.pop(mtp_prefix + copy, None)
    if cfg.num_nextn_predict_layers and not any(k.startswith(mtp_prefix) for k in sd):
        raise ValueError(
            f"{path}: config.json declares num_nextn_predict_layers={cfg.num_nextn_predict_layers} but no "
            f"'{mtp_prefix}*' weights are in {[f.name for f in files]}; set num_nextn_predict_layers to 0 in "
            "config.json to load the main model only"
        )
    model = GLMForCausalLM(cfg, expert_impl=expert_impl, attn_impl=attn_impl, seed=None)
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    result = model.load_state_dict(sd, strict=False)
    missing = [k for k in result.missing_keys if not (cfg.tie_word_embeddings and k == "lm_head.weight")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path}: checkpoint does not match its config.json: missing {missing[:8]}, "
            f"unexpected {result.unexpected_keys[:8]}"
        )
    if dtype is not None:
        model.to(dtype)
        for router in model.routers():
            router.float()
    return model
