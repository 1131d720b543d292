"""Flavours table, size overrides and the Glm4MoeConfig round trip."""

from __future__ import annotations

import pytest
import torch

from model.config import FLAVOURS, ModelConfig, flops_per_token, from_hf, model_config, param_counts, to_hf
from model.glm import GLMForCausalLM

# A valid changed value for every size field of the debug flavour (checked against the built model below).
OVERRIDES = {
    "vocab_size": 300,
    "hidden_size": 48,
    "intermediate_size": 96,
    "moe_intermediate_size": 24,
    "num_hidden_layers": 4,
    "num_attention_heads": 6,
    "num_key_value_heads": 3,
    "head_dim": 8,
    "first_k_dense_replace": 2,
    "n_routed_experts": 12,
    "num_experts_per_tok": 3,
    "n_shared_experts": 2,
    "routed_scaling_factor": 2.5,
    "norm_topk_prob": False,
    "n_group": 4,
    "topk_group": 2,
    "use_qk_norm": False,
    "attention_bias": False,
    "partial_rotary_factor": 1.0,
    "rope_theta": 1e6,
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
    "num_nextn_predict_layers": 0,
    "initializer_range": 0.01,
    "pad_token_id": 1,
    "bos_token_id": 2,
    "eos_token_id": 3,
}


# Overrides that are only valid together with another one.
COMPANIONS = {"num_key_value_heads": {"num_attention_heads": 6}, "topk_group": {"n_group": 4}}


def hf_logits(model: GLMForCausalLM, ids: torch.Tensor) -> torch.Tensor:
    """Logits of transformers' own Glm4MoeForCausalLM holding ``model``'s main weights."""
    from transformers import Glm4MoeForCausalLM

    cfg = model.config
    hf = Glm4MoeForCausalLM(to_hf(cfg)).eval()
    mtp = f"model.layers.{cfg.num_hidden_layers}."
    hf.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(mtp)}, strict=True)
    with torch.no_grad():
        return hf(ids).logits


def test_every_field_has_an_override_case() -> None:
    assert set(OVERRIDES) == set(ModelConfig.model_fields)


@pytest.mark.parametrize("field", sorted(OVERRIDES))
def test_override_reaches_config_model_and_hf(field: str) -> None:
    base = model_config("debug")
    assert getattr(base, field) != OVERRIDES[field], "pick an override that differs from the flavour"
    cfg = model_config("debug", **{field: OVERRIDES[field]}, **COMPANIONS.get(field, {}))
    assert getattr(cfg, field) == OVERRIDES[field]
    assert from_hf(to_hf(cfg)) == cfg
    model = GLMForCausalLM(cfg).eval()
    with torch.no_grad():
        for router in model.routers():
            router.e_score_correction_bias.uniform_(-0.05, 0.05)
    assert sum(p.numel() for p in model.parameters()) == param_counts(cfg)["total"]
    assert model.model.rotary_emb.inv_freq.numel() * 2 == cfg.rotary_dim
    ids = torch.randint(0, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(ids, labels=ids, mtp_weight=0.3)
    assert out.logits.shape == (2, 9, cfg.vocab_size)
    assert torch.isfinite(out.loss)
    # the field means the same to transformers' implementation
    torch.testing.assert_close(out.logits, hf_logits(model, ids), rtol=1e-5, atol=1e-5)


def test_all_overrides_at_once_build() -> None:
    cfg = model_config("debug", **OVERRIDES)
    model = GLMForCausalLM(cfg)
    attn = model.model.layers[0].self_attn
    assert attn.q_proj.weight.shape == (6 * 8, 48) and attn.k_proj.weight.shape == (3 * 8, 48)
    assert attn.q_proj.bias is None and not hasattr(attn, "q_norm")
    assert not model.model.layers[1].is_moe and model.model.layers[2].is_moe
    assert model.model.layers[2].mlp.experts.gate_up_proj.shape == (12, 2 * 24, 48)
    assert model.model.layers[2].mlp.shared_experts.gate_proj.weight.shape == (2 * 24, 48)
    assert len(model.model.layers) == 4 and model.mtp_layer is None
    assert model.lm_head.weight is model.model.embed_tokens.weight
    ids = torch.randint(0, cfg.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids).logits, hf_logits(model, ids), rtol=1e-5, atol=1e-5)


def test_flavours_and_sizes() -> None:
    assert set(FLAVOURS) == {"debug", "tiny", "small", "air"}
    small = param_counts(model_config("small"))
    assert 0.5e9 <= small["total"] <= 1.0e9
    assert 0.1e9 <= small["active"] - small["embedding"] <= 0.2e9
    air = param_counts(model_config("air"))
    # GLM-4.5-Air: 106B total / 12B active published (without the MTP layer and embeddings)
    assert abs((air["total"] - air["mtp"]) / 1e9 - 106.9) < 0.5
    assert abs((air["active"] - air["mtp_active"] - air["embedding"] - air["head"]) / 1e9 - 12.2) < 0.5


def test_air_matches_transformers_defaults() -> None:
    from transformers import Glm4MoeConfig

    hf = Glm4MoeConfig(head_dim=128, attention_bias=True, num_nextn_predict_layers=1)
    air = model_config("air")
    same = [
        "vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "n_routed_experts", "num_experts_per_tok",
        "n_shared_experts", "first_k_dense_replace", "max_position_embeddings",
    ]  # fmt: skip
    assert {k: getattr(hf, k) for k in same} == {k: getattr(air, k) for k in same}


def test_bad_names_and_shapes_are_clear() -> None:
    with pytest.raises(ValueError, match="did you mean 'tiny'"):
        model_config("tinny")
    with pytest.raises(ValueError, match="did you mean 'hidden_size'"):
        model_config("debug", hiden_size=32)
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        model_config("debug", num_key_value_heads=3)
    with pytest.raises(ValueError, match="exceeds n_routed_experts"):
        model_config("debug", num_experts_per_tok=9)


def test_active_params_and_flops_match_the_built_model() -> None:
    cfg = model_config("debug")
    model = GLMForCausalLM(cfg)
    counts = param_counts(cfg)
    experts = [layer.mlp.experts for layer in model.model.layers if layer.is_moe]
    idle = sum(e.gate_up_proj.numel() + e.down_proj.numel() for e in experts)
    idle = idle * (cfg.n_routed_experts - cfg.num_experts_per_tok) // cfg.n_routed_experts
    assert counts["active"] == sum(p.numel() for p in model.parameters()) - idle
    mtp_attn_layers = cfg.num_hidden_layers + 1
    attention = 6 * mtp_attn_layers * 2 * cfg.num_attention_heads * cfg.head_dim * 1024 / 2
    head = model.lm_head.weight.numel()  # applied twice: to the main output and to the MTP layer's
    expected = 6 * (counts["active"] - model.model.embed_tokens.weight.numel() + head) + attention
    assert flops_per_token(cfg, 1024) == pytest.approx(expected)
    no_mtp = attention * cfg.num_hidden_layers / mtp_attn_layers
    no_mtp += 6 * (counts["active"] - counts["embedding"] - counts["mtp_active"])
    assert flops_per_token(cfg, 1024, with_mtp=False) == pytest.approx(no_mtp)
