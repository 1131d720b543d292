"""GRPO math on hand-computed toy batches: advantages, the three loss aggregations, clipping (both sides), the k3
KL, group filtering with over-sampling, and the step's rollout collection (all-equal groups dropped, another round
refills the batch, every scored row persisted)."""

from __future__ import annotations

import math

import pytest
import torch

from model.rl.grpo import fill_groups, group_advantages, informative, k3_kl, policy_loss, token_weights


def test_advantages_are_reward_minus_group_mean() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    adv = group_advantages(r)
    assert adv.tolist() == [[0.5, -0.5, -0.5, 0.5], [0.25, 0.25, 0.25, -0.75]]
    scaled = group_advantages(r, scale_std=True, eps=0.0)
    # group 2: std = sqrt(3/16) = 0.4330...
    assert scaled[0].tolist() == [1.0, -1.0, -1.0, 1.0]
    assert scaled[1, 3].item() == pytest.approx(-0.75 / math.sqrt(3 / 16))


# two sequences: lengths 1 and 3 (mask), per-token losses chosen below
MASK = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        # on-policy (ratio 1): l = -A per token; A = [2, -1] -> tokens: seq0 [-2], seq1 [1, 1, 1]
        ("token_mean", (-2 + 3) / 4),  # sum over 4 tokens / 4
        ("seq_mean", ((-2 / 1) + (3 / 3)) / 2),  # mean of per-sequence token means
        ("seq_mean_token_sum", ((-2) + 3) / 2),  # mean of per-sequence token sums
    ],
)
def test_aggregations_by_hand(aggregation: str, expected: float) -> None:
    logp = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([2.0, -1.0])
    w = token_weights(MASK, aggregation, n_seqs=2, n_tokens=4)
    parts = policy_loss(logp, logp.detach(), adv, w)
    assert parts.loss.item() == pytest.approx(expected)
    parts.loss.backward()
    # d loss / d logp = -A * w at ratio 1
    assert torch.allclose(logp.grad, -adv[:, None] * w)


def test_aggregation_split_over_micro_batches_equals_the_whole() -> None:
    torch.manual_seed(0)
    logp, old = torch.randn(4, 5), torch.randn(4, 5)
    mask = (torch.rand(4, 5) > 0.3).float()
    mask[:, 0] = 1
    adv = torch.randn(4)
    for agg in ("token_mean", "seq_mean", "seq_mean_token_sum"):
        n_tok, n_seq = int(mask.sum()), 4
        whole = policy_loss(logp, old, adv, token_weights(mask, agg, n_seq, n_tok)).loss
        split = sum(
            policy_loss(logp[s], old[s], adv[s], token_weights(mask[s], agg, n_seq, n_tok)).loss
            for s in (slice(0, 1), slice(1, 4))
        )
        assert whole.item() == pytest.approx(float(split), rel=1e-6)


def test_clipping_low_and_high() -> None:
    # one token each; ratio e^{d}; eps_low 0.2, eps_high 0.28
    d = torch.tensor([[math.log(1.5)], [math.log(1.5)], [math.log(0.5)], [math.log(0.5)]], requires_grad=True)
    old = torch.zeros(4, 1)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    w = token_weights(torch.ones(4, 1), "seq_mean_token_sum", n_seqs=1, n_tokens=4)  # plain sum
    parts = policy_loss(d, old, adv, w, eps_low=0.2, eps_high=0.28)
    # A>0, ratio 1.5: min(1.5, 1.28) -> 1.28 (clipped, no gradient); A<0, ratio 1.5: min(-1.5, -1.28) = -1.5
    # A>0, ratio 0.5: min(0.5, 0.8) = 0.5; A<0, ratio 0.5: min(-0.5, -0.8) = -0.8 (clipped)
    assert parts.loss.item() == pytest.approx(-(1.28 - 1.5 + 0.5 - 0.8))
    assert parts.clipped == pytest.approx(2.0)
    parts.loss.backward()
    assert d.grad[0].item() == 0.0 and d.grad[3].item() == 0.0
    assert d.grad[1].item() == pytest.approx(1.5) and d.grad[2].item() == pytest.approx(-0.5)


def test_k3_kl_by_hand_and_as_a_loss_term() -> None:
    logp, ref = torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]])
    # k3 = e^{ref-logp} - (ref-logp) - 1
    expected = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1]
    assert k3_kl(logp, ref)[0].tolist() == pytest.approx(expected)
    w = token_weights(torch.ones(1, 2), "token_mean", 1, 2)
    parts = policy_loss(logp, logp, torch.zeros(1), w, ref_logp=ref, kl_coef=0.1)
    assert parts.loss.item() == pytest.approx(0.1 * sum(expected) / 2)
    assert parts.kl == pytest.approx(sum(expected) / 2)
    assert k3_kl(logp, logp).abs().max().item() == 0.0


def test_filtering_keeps_the_first_informative_groups() -> None:
    groups = [[1, 1, 1], [0, 1, 0], [0, 0, 0], [0.5, 0.5, 0.5], [1, 0, 0], [0, 0, 1]]
    fill = fill_groups(groups, need=2)
    assert fill.kept == [1, 4] and fill.filtered == [0, 2, 3] and fill.spare == [5]
    assert not informative([0.3] * 4) and informative([0.3, 0.31])
    assert not informative([0.3, 0.31], tol=0.05)
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        token_weights(MASK, "token_sum", 1, 1)
