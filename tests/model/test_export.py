"""HF folder out and back in: transformers' own Glm4Moe gives the same logits, loads without complaint, and reads
the MTP layer with its own MTP code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.config import ModelConfig, model_config
from model.export import MTP_FILE, load_hf, save_hf
from model.glm import GLMForCausalLM, doc_layout


@pytest.fixture
def exported(tmp_path: Path, debug_cfg: ModelConfig) -> tuple[GLMForCausalLM, Path]:
    model = GLMForCausalLM(debug_cfg, seed=11).eval()
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a trained model's state: non-zero biases and norms
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        for router in model.routers():
            router.e_score_correction_bias.copy_(torch.rand(router.n_experts, generator=gen) * 0.1 - 0.05)
    return model, save_hf(model, tmp_path / "ckpt")


def test_transformers_loads_export_with_same_logits(exported: tuple[GLMForCausalLM, Path]) -> None:
    from transformers import AutoModelForCausalLM, Glm4MoeForCausalLM

    model, path = exported
    hf, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, dtype=torch.float32)
    assert isinstance(hf, Glm4MoeForCausalLM)
    assert info == {
        "missing_keys": set(),
        "unexpected_keys": set(),
        "mismatched_keys": set(),
        "error_msgs": [],
    }
    assert (path / MTP_FILE).is_file()
    ids = torch.randint(0, model.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(ids).logits, hf.eval()(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_transformers_mtp_layer_reads_our_mtp_weights(exported: tuple[GLMForCausalLM, Path]) -> None:
    """transformers' MtpModel, with its own checkpoint renamings, loads the MTP file and predicts the same logits.
    (Its from_pretrained only looks for layers 46/92, the published shapes, so the file is handed to it here.)"""
    from transformers import AutoModelForCausalLM
    from transformers.core_model_loading import convert_and_load_state_dict_in_model
    from transformers.modeling_layers import MtpModel
    from transformers.modeling_utils import LoadStateDictConfig

    model, path = exported
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    mtp = MtpModel(hf, 1)
    info, _ = convert_and_load_state_dict_in_model(
        model=mtp,
        state_dict=load_file(path / MTP_FILE),
        load_config=LoadStateDictConfig(weight_mapping=mtp.get_weight_conversions(hf), dtype=torch.float32),
    )
    mtp._adjust_missing_and_unexpected_keys(info)
    assert not info.missing_keys and not info.unexpected_keys
    mtp.tie_with_main_model(hf)
    mtp.eval()
    s = 16
    ids = torch.randint(0, model.config.vocab_size, (1, s), generator=torch.Generator().manual_seed(1))
    next_ids = torch.nn.functional.pad(ids[:, 1:], (0, 1), value=0)
    pos = torch.arange(s)[None]
    with torch.no_grad():
        last_hidden = hf(ids, output_hidden_states=True).hidden_states[-1]
        theirs = mtp._project_to_logits(mtp.forward_layer(0, last_hidden, pos + 1, None, input_ids=next_ids))
        layout = doc_layout(None, 1, s, "cpu")
        rope = model.model.rotary_emb(layout.position_ids + 1, torch.float32)
        h, _ = model.mtp_layer.forward_mtp(model.model.embed_tokens(next_ids), last_hidden, rope, layout)
        ours = model.lm_head(h)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_round_trip_and_bf16(exported: tuple[GLMForCausalLM, Path], tmp_path: Path) -> None:
    model, path = exported
    back = load_hf(path).eval()
    a, b = model.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    small = save_hf(model, tmp_path / "bf16", dtype=torch.bfloat16)
    tensors = load_file(small / "model.safetensors")
    assert tensors["model.embed_tokens.weight"].dtype == torch.bfloat16
    assert tensors["model.layers.1.mlp.gate.e_score_correction_bias"].dtype == torch.float32
    assert json.loads((small / "config.json").read_text())["dtype"] == "bfloat16"


def test_export_is_byte_identical(tmp_path: Path) -> None:
    cfg = model_config("debug")
    a = save_hf(GLMForCausalLM(cfg, seed=5), tmp_path / "a")
    b = save_hf(GLMForCausalLM(cfg, seed=5), tmp_path / "b")
    for name in sorted(p.name for p in a.iterdir()):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_load_errors_are_clear(tmp_path: Path, exported: tuple[GLMForCausalLM, Path]) -> None:
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_hf(tmp_path / "missing")
    _, path = exported
    (path / MTP_FILE).unlink()
    with pytest.raises(ValueError, match="num_nextn_predict_layers=1 but no 'model.layers.3.\\*' weights"):
        load_hf(path)


def test_published_depth_puts_mtp_where_transformers_loads_it(tmp_path: Path) -> None:
    """At GLM-4.5-Air's depth (46 layers) transformers knows the MTP layer's place: the weights go into the checkpoint
    and its own ``MtpModel.from_pretrained`` finds and loads them, with no missing or unexpected keys."""
    from transformers import AutoModelForCausalLM
    from transformers.modeling_layers import MtpModel

    cfg = model_config("debug", num_hidden_layers=46, n_routed_experts=4, hidden_size=32, head_dim=8)
    model = GLMForCausalLM(cfg, seed=1).eval()
    path = save_hf(model, tmp_path / "air_depth")
    assert not (path / MTP_FILE).exists()  # inside model.safetensors, where transformers looks at this depth
    hf, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, dtype=torch.float32)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    mtp = MtpModel.from_pretrained(hf)  # raises on any missing MTP weight
    torch.testing.assert_close(mtp.layers[0].eh_proj.weight, model.mtp_layer.eh_proj.weight)
    torch.testing.assert_close(mtp.layers[0].post_norm.weight, model.mtp_layer.shared_head.norm.weight)
    back = load_hf(path)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in model.state_dict().items())
