"""Model sizes: the named flavours of the GLM-4.5-style MoE in one table, and their HF config twin.

A flavour is a name for a full :class:`ModelConfig`; every field can be overridden (``model_config("tiny",
hidden_size=256)``). The fields and their meaning are those of transformers' ``Glm4MoeConfig`` (so a checkpoint's
``config.json`` is a :func:`to_hf` away), with one rename kept from the published GLM-4.5 configs:
``num_nextn_predict_layers`` is the number of MTP layers (0 or 1 here).

Flavours:

- ``debug``: 0.3M parameters with every feature on (1 dense + 2 MoE layers, 8 experts, MTP, QK-norm, qkv
  bias), runs forward and backward in milliseconds on CPU; the tests use it.
- ``tiny``: the default pipeline's model (vocab 8192, the demo tokenizer's size), trains on 2 CPU cores.
- ``small``: 0.84B total / 0.20B active parameters (0.15B without the embedding table), the single-GPU
  benchmark shape. Attention as GLM-4.5's: head_dim 128, q-heads x head_dim twice the hidden size (GLM-4.5 2.4x,
  Air 3x), GQA 6:1 (Air 12:1); until 2026-11-30 it had head_dim 64 and 4 KV heads (0.82B / 0.18B), which made
  the flash-attention tiles run at a third of the matmul rate (docs/TRAIN_SPEED.md).
- ``air``: GLM-4.5-Air's published shape (106B total / 12B active), for configs and FLOP counts only.

:func:`param_counts` and :func:`flops_per_token` count what the MFU figures need (active parameters, attention and
the head), without building the model.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelConfig(BaseModel):
    """The full shape of one GLM-4.5-style model. Field names follow transformers' ``Glm4MoeConfig``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(gt=0)
    hidden_size: int = Field(gt=0)
    intermediate_size: int = Field(gt=0, description="FFN width of the first_k_dense_replace dense layers")
    moe_intermediate_size: int = Field(gt=0, description="FFN width of one routed (and one shared) expert")
    num_hidden_layers: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_key_value_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    first_k_dense_replace: int = Field(ge=0, description="the first k layers are dense, the rest MoE")
    n_routed_experts: int = Field(gt=0)
    num_experts_per_tok: int = Field(gt=0)
    n_shared_experts: int = Field(ge=0)
    routed_scaling_factor: float = Field(default=1.0, gt=0)
    norm_topk_prob: bool = True
    n_group: int = Field(default=1, gt=0)
    topk_group: int = Field(default=1, gt=0)
    use_qk_norm: bool = False
    attention_bias: bool = False
    partial_rotary_factor: float = Field(default=0.5, gt=0, le=1)
    rope_theta: float = Field(default=10_000.0, gt=0)
    max_position_embeddings: int = Field(gt=0)
    rms_norm_eps: float = Field(default=1e-5, gt=0)
    tie_word_embeddings: bool = False
    num_nextn_predict_layers: int = Field(default=1, ge=0, le=1, description="MTP layers (0 or 1)")
    initializer_range: float = Field(default=0.02, gt=0)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    @model_validator(mode="after")
    def _check_shape(self) -> ModelConfig:
        problems = []
        if self.num_attention_heads % self.num_key_value_heads:
            problems.append(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})"
            )
        rot = int(self.head_dim * self.partial_rotary_factor)
        if rot % 2 or rot == 0:
            problems.append(
                f"head_dim * partial_rotary_factor ({self.head_dim} * {self.partial_rotary_factor}) must be a "
                "positive even number of rotary dims"
            )
        if self.num_experts_per_tok > self.n_routed_experts:
            problems.append(
                f"num_experts_per_tok ({self.num_experts_per_tok}) exceeds n_routed_experts ({self.n_routed_experts})"
            )
        if self.n_routed_experts % self.n_group:
            problems.append(
                f"n_routed_experts ({self.n_routed_experts}) must be a multiple of n_group ({self.n_group})"
            )
        if self.topk_group > self.n_group:
            problems.append(f"topk_group ({self.topk_group}) exceeds n_group ({self.n_group})")
        if self.first_k_dense_replace > self.num_hidden_layers:
            problems.append(
                f"first_k_dense_replace ({self.first_k_dense_replace}) exceeds num_hidden_layers "
                f"({self.num_hidden_layers})"
            )
        if self.num_nextn_predict_layers and self.first_k_dense_replace >= self.num_hidden_layers + 1:
            problems.append("the MTP layer is an MoE layer; first_k_dense_replace leaves no MoE layer")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def rotary_dim(self) -> int:
        """Number of head dims that get RoPE (the rest pass through)."""
        return int(self.head_dim * self.partial_rotary_factor)

    def is_moe_layer(self, layer_idx: int) -> bool:
        """Layer ``layer_idx`` (0-based; the MTP layer is ``num_hidden_layers``) uses routed experts."""
        return layer_idx >= self.first_k_dense_replace


_COMMON: dict[str, Any] = {"routed_scaling_factor": 1.0, "norm_topk_prob": True, "partial_rotary_factor": 0.5}

#: The one table of sizes (``param_counts`` gives the totals); ``air`` is GLM-4.5-Air's published config.json.
FLAVOURS: dict[str, dict[str, Any]] = {
    "debug": {
        **_COMMON,
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "first_k_dense_replace": 1,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "n_shared_experts": 1,
        "use_qk_norm": True,
        "attention_bias": True,
        "rope_theta": 10_000.0,
        "max_position_embeddings": 1024,
        "num_nextn_predict_layers": 1,
    },
    "tiny": {
        **_COMMON,
        "vocab_size": 8192,
        "hidden_size": 128,
        "intermediate_size": 384,
        "moe_intermediate_size": 64,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "first_k_dense_replace": 1,
        "n_routed_experts": 16,
        "num_experts_per_tok": 4,
        "n_shared_experts": 1,
        "use_qk_norm": True,
        "attention_bias": True,
        "rope_theta": 10_000.0,
        "max_position_embeddings": 32_768,
        "num_nextn_predict_layers": 1,
    },
    "small": {
        **_COMMON,
        "vocab_size": 65_536,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "moe_intermediate_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "head_dim": 128,
        "first_k_dense_replace": 1,
        "n_routed_experts": 64,
        "num_experts_per_tok": 4,
        "n_shared_experts": 1,
        "use_qk_norm": True,
        "attention_bias": True,
        "rope_theta": 10_000.0,
        "max_position_embeddings": 32_768,
        "num_nextn_predict_layers": 1,
    },
    # zai-org/GLM-4.5-Air config.json (2025-07): 46 layers, 128 experts (8 active) + 1 shared, head_dim 128.
    "air": {
        **_COMMON,
        "vocab_size": 151_552,
        "hidden_size": 4096,
        "intermediate_size": 10_944,
        "moe_intermediate_size": 1408,
        "num_hidden_layers": 46,
        "num_attention_heads": 96,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "first_k_dense_replace": 1,
        "n_routed_experts": 128,
        "num_experts_per_tok": 8,
        "n_shared_experts": 1,
        "use_qk_norm": False,
        "attention_bias": True,
        "rope_theta": 1_000_000.0,
        "max_position_embeddings": 131_072,
        "num_nextn_predict_layers": 1,
        "pad_token_id": 151_329,
        "eos_token_id": 151_329,
    },
}


def model_config(flavour: str, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of ``flavour`` with ``overrides`` applied (any field; unknown names are an error)."""
    if flavour not in FLAVOURS:
        close = difflib.get_close_matches(flavour, FLAVOURS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown model flavour {flavour!r}: {hint}valid flavours are {sorted(FLAVOURS)}")
    unknown = [k for k in overrides if k not in ModelConfig.model_fields]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, ModelConfig.model_fields, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown model size field(s) {', '.join(hints)} for flavour {flavour!r}; "
            f"valid fields are {sorted(ModelConfig.model_fields)}"
        )
    return ModelConfig(**{**FLAVOURS[flavour], **overrides})


def to_hf(cfg: ModelConfig) -> Any:
    """The transformers ``Glm4MoeConfig`` of ``cfg`` (what ``config.json`` of an exported checkpoint holds)."""
    from model.hf import hf_import

    Glm4MoeConfig = hf_import("Glm4MoeConfig")

    fields = cfg.model_dump()
    rope = {
        "rope_type": "default",
        "rope_theta": fields.pop("rope_theta"),
        "partial_rotary_factor": fields.pop("partial_rotary_factor"),
    }
    mtp = fields.pop("num_nextn_predict_layers")
    return Glm4MoeConfig(
        **fields,
        rope_parameters=rope,
        num_nextn_predict_layers=mtp,
        hidden_act="silu",
        attention_dropout=0.0,
        architectures=["Glm4MoeForCausalLM"],
    )


def from_hf(hf_cfg: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a transformers ``Glm4MoeConfig`` (or of any object with its attributes)."""
    act = getattr(hf_cfg, "hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"hidden_act {act!r} is not supported: the GLM-4.5 model here uses 'silu'")
    rope = dict(getattr(hf_cfg, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise ValueError(
            f"rope_type {rope['rope_type']!r} is not supported: only 'default' RoPE is implemented"
        )
    values: dict[str, Any] = {}
    for name in ModelConfig.model_fields:
        if name == "rope_theta":
            values[name] = rope.get("rope_theta", getattr(hf_cfg, "rope_theta", 10_000.0))
        elif name == "partial_rotary_factor":
            values[name] = rope.get("partial_rotary_factor", getattr(hf_cfg, "partial_rotary_factor", 0.5))
        elif name == "num_nextn_predict_layers":
            values[name] = (
                getattr(hf_cfg, "num_nextn_predict_layers", getattr(hf_cfg, "num_mtp_layers", 0)) or 0
            )
        elif name == "head_dim":
            values[name] = (
                getattr(hf_cfg, "head_dim", None) or hf_cfg.hidden_size // hf_cfg.num_attention_heads
            )
        elif name == "eos_token_id":
            eos = getattr(hf_cfg, "eos_token_id", None)
            values[name] = eos[0] if isinstance(eos, list | tuple) and eos else eos
        elif hasattr(hf_cfg, name):
            values[name] = getattr(hf_cfg, name)
    return ModelConfig(**values)


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts without building the model: ``total``, ``active`` (per token), ``embedding`` (input table),
    ``head``, ``mtp`` and ``mtp_active`` (the MTP layer, all of it and per token; included in total and active)."""
    h, hd = cfg.hidden_size, cfg.head_dim
    q_out, kv_out = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    attn = h * q_out + 2 * h * kv_out + q_out * h
    attn += (q_out + 2 * kv_out) if cfg.attention_bias else 0
    attn += 2 * hd if cfg.use_qk_norm else 0
    norms = 2 * h
    dense_mlp = 3 * h * cfg.intermediate_size
    expert = 3 * h * cfg.moe_intermediate_size
    router = cfg.n_routed_experts * h
    shared = cfg.n_shared_experts * expert
    moe_total = router + shared + cfg.n_routed_experts * expert
    moe_active = router + shared + cfg.num_experts_per_tok * expert
    n_dense = cfg.first_k_dense_replace
    n_moe = cfg.num_hidden_layers - n_dense
    embedding = cfg.vocab_size * h
    head = 0 if cfg.tie_word_embeddings else cfg.vocab_size * h
    body_total = cfg.num_hidden_layers * (attn + norms) + n_dense * dense_mlp + n_moe * moe_total + h
    body_active = cfg.num_hidden_layers * (attn + norms) + n_dense * dense_mlp + n_moe * moe_active + h
    mtp_total = mtp_active = 0
    if cfg.num_nextn_predict_layers:
        extra = 2 * h * h + 3 * h  # eh_proj, enorm, hnorm, shared_head.norm
        mtp_total = attn + norms + moe_total + extra
        mtp_active = attn + norms + moe_active + extra
    return {
        "total": embedding + head + body_total + mtp_total,
        "active": embedding + head + body_active + mtp_active,
        "active_no_embedding": head + body_active + mtp_active,
        "embedding": embedding,
        "head": head,
        "mtp": mtp_total,
        "mtp_active": mtp_active,
    }


def flops_per_token(cfg: ModelConfig, seq_len: int, *, causal: bool = True, with_mtp: bool = True) -> float:
    """Training FLOPs per token (forward + backward = 3x forward): 6 x active matmul parameters (embedding lookup
    excluded, head included; with MTP the head counts twice, since the MTP layer's logits go through it too) plus
    attention scores and values, ``6 * layers * 2 * heads * head_dim * seq_len``, halved when ``causal`` (only the
    causal half of the score matrix is computed; the project's MFU figures use it and the 40% target is judged by
    it). ``causal=False`` counts the whole matrix, ``12 * layers * heads * head_dim * seq_len``: PaLM's MFU
    definition (its appendix B), as torchtitan and Megatron report MFU; benchmarks/train.py prints that figure
    beside ours for comparison with published numbers."""
    counts = param_counts(cfg)
    matmul_params = counts["active_no_embedding"]
    if not with_mtp:
        matmul_params -= counts["mtp_active"]
    elif cfg.num_nextn_predict_layers:
        matmul_params += cfg.vocab_size * cfg.hidden_size  # the shared head, applied again to the MTP output
    layers = cfg.num_hidden_layers + (1 if with_mtp and cfg.num_nextn_predict_layers else 0)
    attn = 6 * layers * 2 * cfg.num_attention_heads * cfg.head_dim * seq_len
    if causal:
        attn /= 2
    return 6.0 * matmul_params + attn
