"""GRPO: group-relative advantages, group filtering, the clipped policy-gradient loss and its aggregations.

Per prompt, G completions are sampled and scored; each completion's advantage is ``r - mean(group)`` (divided by the
group's standard deviation when ``scale_std``; the GLM-4.5 report and Dr. GRPO leave it out). A group whose rewards
are all equal has zero advantage everywhere and teaches nothing, so it is dropped (:func:`fill_groups`; the caller
over-samples prompts to keep the batch full).

The loss of completion i, token t (``rho = exp(logp - logp_old)``, A the advantage)::

    l_it = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)   (+ kl_coef * k3(logp, logp_ref))

With one update per rollout batch ``logp_old`` is ``logp`` detached (rho = 1, no clipping: the plain policy
gradient); with several updates on one batch the ratio is clipped, asymmetrically when ``eps_high > eps_low``
(DAPO's clip-higher). KL: none by default (the report's GRPO has no KL term); ``kl_coef > 0`` adds the k3 estimator
``exp(ref - logp) - (ref - logp) - 1`` towards a frozen reference. The k3 KL to the starting policy is always
computed for the logs.

Aggregation (:func:`token_weights`), over the whole global batch (every micro-batch and rank), each a weight per
response token so that the loss is ``sum(w * l)``:

- ``token_mean`` (default; the report's code RL): every response token weighs the same, ``1 / N_tokens``;
- ``seq_mean``: mean over sequences of each sequence's token mean, ``1 / (N_seqs * len_i)``;
- ``seq_mean_token_sum``: mean over sequences of each sequence's token sum, ``1 / N_seqs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from model.rl.spec import Aggregation  # noqa: F401 (the loss aggregations; spec.py loads without torch)

AGGREGATIONS: tuple[str, ...] = ("token_mean", "seq_mean", "seq_mean_token_sum")


def group_advantages(rewards: torch.Tensor, scale_std: bool = False, eps: float = 1e-6) -> torch.Tensor:
    """rewards [n_groups, G] -> advantages [n_groups, G]: ``r - mean(group)``, over ``std(group) + eps`` when
    ``scale_std`` (population std, as the GRPO paper)."""
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be [n_groups, G], got shape {tuple(rewards.shape)}")
    adv = rewards - rewards.mean(dim=1, keepdim=True)
    if scale_std:
        adv = adv / (rewards.std(dim=1, unbiased=False, keepdim=True) + eps)
    return adv


def informative(rewards: Sequence[float], tol: float = 0.0) -> bool:
    """False when every reward of the group is equal (within ``tol``): its advantages are all zero."""
    return bool(rewards) and (max(rewards) - min(rewards)) > tol


@dataclass(frozen=True)
class GroupFill:
    """Which scored groups make the batch: ``kept`` (at most ``need``, in candidate order), ``filtered`` (all-equal
    rewards) and ``spare`` (informative but beyond ``need``)."""

    kept: list[int]
    filtered: list[int]
    spare: list[int]


def fill_groups(group_rewards: Sequence[Sequence[float]], need: int, tol: float = 0.0) -> GroupFill:
    """Walk the groups in order: all-equal ones are filtered, the first ``need`` informative ones kept."""
    kept: list[int] = []
    filtered: list[int] = []
    spare: list[int] = []
    for i, rewards in enumerate(group_rewards):
        if not informative(rewards, tol):
            filtered.append(i)
        elif len(kept) < need:
            kept.append(i)
        else:
            spare.append(i)
    return GroupFill(kept, filtered, spare)


def token_weights(mask: torch.Tensor, aggregation: str, n_seqs: int, n_tokens: int) -> torch.Tensor:
    """mask [B, T] (1 on response tokens that carry loss) -> weights [B, T] such that ``sum(w * l)`` over the whole
    global batch is the chosen aggregation. ``n_seqs`` / ``n_tokens``: sequences and masked tokens of the global
    batch (all micro-batches and ranks)."""
    mask = mask.float()
    if aggregation == "token_mean":
        return mask / max(n_tokens, 1)
    if aggregation == "seq_mean":
        lens = mask.sum(-1, keepdim=True).clamp(min=1)
        return mask / (lens * max(n_seqs, 1))
    if aggregation == "seq_mean_token_sum":
        return mask / max(n_seqs, 1)
    raise ValueError(f"unknown loss aggregation {aggregation!r}; use one of {list(AGGREGATIONS)}")


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): ``exp(ref - logp) - (ref - logp) - 1`` (>= 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


@dataclass
class LossParts:
    """The weighted loss of a micro-batch and its sums for the logs (weighted by the same token weights)."""

    loss: torch.Tensor
    pg: float
    kl: float
    clipped: float  # weighted share of tokens whose ratio was clipped


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    *,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> LossParts:
    """logp / old_logp / ref_logp / weights [B, T], advantages [B] -> the micro-batch's share of the loss.

    Summed over micro-batches this is the global loss (the weights carry the normalisation)."""
    adv = advantages[:, None].to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).to(logp.dtype)  # min picked the clipped term
    pg = (weights * per_token).sum()
    loss = pg
    kl_val = 0.0
    if ref_logp is not None and kl_coef > 0:
        kl = (weights * k3_kl(logp, ref_logp)).sum()
        loss = loss + kl_coef * kl
        kl_val = float(kl.detach())
    return LossParts(loss, float(pg.detach()), kl_val, float((weights * was_clipped).sum().detach()))


def token_logprobs(
    model: torch.nn.Module, input_ids: torch.Tensor, lengths: Sequence[int], is_glm: bool
) -> torch.Tensor:
    """input_ids [B, S] right-padded, ``lengths`` the real length of each row -> [B, S-1] log-probability of token
    t+1 given the tokens up to t (fp32; entries beyond a row's length are meaningless and must be masked).

    Our model runs with ``doc_lens`` (positions from 0, the pad tail its own segment) and no MTP or balance loss;
    a transformers model with its attention mask."""
    if is_glm:
        out = model(input_ids, doc_lens=[[int(n)] for n in lengths], mtp_weight=0.0, aux_weight=0.0)
    else:
        s = input_ids.shape[1]
        mask = (
            torch.arange(s, device=input_ids.device)[None]
            < torch.tensor(lengths, device=input_ids.device)[:, None]
        )
        out = model(input_ids=input_ids, attention_mask=mask.long())
    logits = out.logits[:, :-1].float()  # [B, S-1, V]
    logz = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return picked - logz
