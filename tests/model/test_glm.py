"""The GLM-4.5 model: document masking of packed rows, MTP, aux balance loss, expert kernels, determinism."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig, model_config
from model.glm import GLMForCausalLM, doc_layout
from tests.model._inputs import _biased, _ids


@pytest.mark.parametrize("attn_impl", ["auto", "sdpa", "segments"])
def test_packed_logits_equal_each_document_alone(debug_cfg: ModelConfig, attn_impl: str) -> None:
    model = _biased(GLMForCausalLM(debug_cfg, attn_impl=attn_impl)).eval()
    doc_lens = [[5, 11, 3], [19]]  # row 0: three documents then 5 pads; row 1: one document, 5 pads
    seq_len = 24
    ids = _ids(debug_cfg, 2, seq_len)
    with torch.no_grad():
        packed = model(ids, doc_lens=doc_lens).logits
        for row, lens in enumerate(doc_lens):
            start = 0
            for n in lens:
                alone = model(ids[row : row + 1, start : start + n]).logits[0]
                torch.testing.assert_close(packed[row, start : start + n], alone, rtol=1e-5, atol=1e-5)
                start += n


def test_packed_loss_equals_token_weighted_mean_of_documents(debug_cfg: ModelConfig) -> None:
    model = _biased(GLMForCausalLM(debug_cfg)).eval()
    doc_lens = [[6, 9], [4, 4, 7]]
    ids = _ids(debug_cfg, 2, 16, seed=3)
    with torch.no_grad():
        packed = model(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.5)
        lm_sum = mtp_sum = 0.0
        lm_n = mtp_n = 0
        for row, lens in enumerate(doc_lens):
            start = 0
            for n in lens:
                doc = ids[row : row + 1, start : start + n]
                out = model(doc, labels=doc, mtp_weight=0.5)
                lm_sum += float(out.lm_loss) * (n - 1)
                mtp_sum += float(out.mtp_loss) * (n - 2)
                lm_n, mtp_n = lm_n + n - 1, mtp_n + n - 2
                start += n
    assert packed.n_tokens == lm_n
    assert float(packed.lm_loss) == pytest.approx(lm_sum / lm_n, rel=1e-5)
    assert float(packed.mtp_loss) == pytest.approx(mtp_sum / mtp_n, rel=1e-5)


def test_doc_layout_positions_and_bad_rows() -> None:
    layout = doc_layout([[2, 3]], 1, 6, "cpu")
    assert layout.position_ids.tolist() == [[0, 1, 0, 1, 2, 0]]
    assert layout.valid.tolist() == [[True] * 5 + [False]]
    assert layout.seg_lens == [2, 3, 1] and layout.row_seg_lens == [[2, 3, 1]]
    assert not doc_layout([[1] * 60], 1, 64, "cpu").per_document_is_cheaper()  # many tiny documents: one mask
    assert doc_layout([[1000, 3000]], 1, 4096, "cpu").per_document_is_cheaper()
    assert doc_layout([[1] * 32768], 1, 32768, "cpu").per_document_is_cheaper()  # the mask would be 1 GiB
    mask = layout.sdpa_mask()[0, 0]
    assert mask[3].tolist() == [False, False, True, True, False, False]
    with pytest.raises(ValueError, match="row 0 .* sum to at most seq_len 4"):
        doc_layout([[3, 2]], 1, 4, "cpu")
    with pytest.raises(ValueError, match="2 rows but input_ids has 1"):
        doc_layout([[1], [1]], 1, 4, "cpu")


def test_mtp_loss_trains(debug_cfg: ModelConfig) -> None:
    from model.muon import build_optimizer, clip_and_step

    torch.manual_seed(0)
    model = GLMForCausalLM(debug_cfg).train()
    opt = build_optimizer(model)
    for group in opt.param_groups:
        group["lr"] = 3e-3
    ids = _ids(debug_cfg, 2, 32, seed=5)
    doc_lens = [[20, 12], [32]]
    mtp_losses = []
    for _ in range(12):
        out = model(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3, aux_weight=1e-4)
        out.loss.backward()
        assert model.mtp_layer.eh_proj.weight.grad.abs().sum() > 0  # MTP weights get gradients
        clip_and_step(opt, 1.0)
        model.update_router_biases(1e-3)
        opt.zero_grad(set_to_none=True)
        mtp_losses.append(float(out.mtp_loss.detach()))
    assert mtp_losses[-1] < 0.7 * mtp_losses[0], mtp_losses
    with torch.no_grad():
        again = model(ids, doc_lens=doc_lens, labels=ids, mtp_weight=0.3)
    assert float(again.mtp_loss) < 0.7 * mtp_losses[0]
    print("mtp losses", [round(x, 3) for x in mtp_losses])


def test_mtp_weight_zero_leaves_mtp_out(debug_cfg: ModelConfig) -> None:
    model = GLMForCausalLM(debug_cfg)
    ids = _ids(debug_cfg, 1, 12)
    out = model(ids, labels=ids)
    assert out.mtp_loss is None and out.aux_loss is None
    out.loss.backward()
    assert model.mtp_layer.eh_proj.weight.grad is None
    assert torch.equal(out.loss, out.lm_loss)


def test_aux_loss_is_one_at_uniform_routing_and_has_router_grads(debug_cfg: ModelConfig) -> None:
    from model.moe import sequence_balance_loss

    # perfectly uniform scores and picks -> f_i = 1, P_i = 1/E -> loss 1
    e = 8  # experts; k = 2 picks per token below
    scores = torch.full((1, 8, e), 0.5)
    picks = torch.tensor([[[2 * t % e, (2 * t + 1) % e] for t in range(8)]])
    assert float(sequence_balance_loss(scores, picks, None)) == pytest.approx(1.0)
    model = GLMForCausalLM(debug_cfg)
    ids = _ids(debug_cfg, 2, 16)
    out = model(ids, doc_lens=[[16], [10]], labels=ids, mtp_weight=0.3, aux_weight=1e-2)
    assert (
        out.aux_loss is not None and float(out.aux_loss.detach()) >= 1.0 - 1e-6
    )  # >= 1 by construction (f·P >= 1/E·E)
    out.aux_loss.backward()
    assert all(r.weight.grad is not None and r.weight.grad.abs().sum() > 0 for r in model.routers())


def test_expert_kernels_agree(debug_cfg: ModelConfig) -> None:
    ids = _ids(debug_cfg, 2, 20)
    results = {}
    for impl in ("loop", "bmm", "grouped_mm"):
        model = _biased(GLMForCausalLM(debug_cfg, expert_impl=impl))
        out = model(ids, doc_lens=[[7, 13], [20]], labels=ids, mtp_weight=0.3)
        out.loss.backward()
        results[impl] = (out.logits.detach(), model.model.layers[1].mlp.experts.gate_up_proj.grad)
    for impl in ("bmm", "grouped_mm"):
        torch.testing.assert_close(results["loop"][0], results[impl][0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(results["loop"][1], results[impl][1], rtol=1e-5, atol=1e-6)


def test_fused_head_loss_matches_logits_loss(debug_cfg: ModelConfig) -> None:
    ids = _ids(debug_cfg, 2, 24)
    grads, losses = [], []
    for return_logits in (True, False):
        model = _biased(GLMForCausalLM(debug_cfg))
        model.ce_chunk_size = 7  # several blocks, the last one short
        labels = ids.clone()
        labels[0, :5] = -100  # masked targets too
        out = model(
            ids, doc_lens=[[10, 14], [20]], labels=labels, mtp_weight=0.3, return_logits=return_logits
        )
        out.loss.backward()
        assert (out.logits is None) != return_logits
        losses.append((float(out.lm_loss.detach()), float(out.mtp_loss.detach())))
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7)


def test_same_seed_same_bytes() -> None:
    cfg = model_config("debug")
    a, b = GLMForCausalLM(cfg, seed=3).state_dict(), GLMForCausalLM(cfg, seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = GLMForCausalLM(cfg, seed=4).state_dict()
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])
