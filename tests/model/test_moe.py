"""Router, loss-free balance and its data-parallel all-reduce."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from model.config import model_config
from model.moe import TopkRouter, max_violation, update_router_biases


def _skewed_router(seed: int = 0) -> TopkRouter:
    cfg = model_config("debug", n_routed_experts=8, num_experts_per_tok=2)
    router = TopkRouter(cfg).train()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        router.weight.copy_(torch.randn(router.weight.shape, generator=gen) * 0.05)
        router.weight[:2] += 0.03  # experts 0 and 1 score high for most tokens
    return router


def _tokens(seed: int, n: int = 512) -> torch.Tensor:
    return torch.randn(n, 64, generator=torch.Generator().manual_seed(seed)).abs()


def test_bias_update_lowers_maxvio_on_skewed_router() -> None:
    router = _skewed_router()
    vios = []
    for step in range(150):
        router(_tokens(step))
        vios.append(update_router_biases([router], u=1e-2)[0])
    assert vios[0] > 2.0  # experts 0/1 take nearly every token: load ~4x the mean
    assert max(vios[-20:]) < 0.5 * vios[0] and sum(vios[-20:]) / 20 < 0.5, vios[::15]
    assert float(router.load.sum()) == 0  # counts cleared after each update
    # the bias steers selection only: gate weights still come from the raw sigmoid scores
    x = _tokens(999, 4)
    idx, w, scores = router(x)
    torch.testing.assert_close(w, scores.gather(1, idx) / scores.gather(1, idx).sum(-1, keepdim=True))


def test_counts_skip_pads_and_eval_mode() -> None:
    router = _skewed_router()
    x = _tokens(0, 10)
    valid = torch.tensor([True] * 6 + [False] * 4)
    router(x, valid)
    assert float(router.load.sum()) == 6 * 2
    router.eval()
    router(x)
    assert float(router.load.sum()) == 6 * 2


def test_max_violation() -> None:
    assert max_violation(torch.tensor([1.0, 1.0, 1.0, 1.0])) == 0.0
    assert max_violation(torch.tensor([4.0, 0.0, 0.0, 0.0])) == pytest.approx(3.0)
    assert max_violation(torch.zeros(4)) == 0.0


def _rank_main(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        router = _skewed_router()
        router(_tokens(100 + rank))  # each rank routes its own half of the batch
        load = router.load.clone()
        vio = update_router_biases([router], u=1e-2)[0]
        out[rank] = (load, router.e_score_correction_bias.clone(), vio)
    finally:
        dist.destroy_process_group()


def test_loads_are_all_reduced_over_ranks() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.start_processes(_rank_main, args=(2, port, out), nprocs=2, join=True, start_method="fork")
    total = out[0][0] + out[1][0]
    expected = 1e-2 * torch.sign(total.mean() - total)
    for rank in (0, 1):
        torch.testing.assert_close(out[rank][1], expected)
        assert out[rank][2] == pytest.approx(max_violation(total))
    # one rank alone would have seen a different load (so the all-reduce mattered)
    assert not torch.equal(out[0][0], out[1][0])


def test_bias_and_counts_stay_fp32_when_the_model_is_cast() -> None:
    from model.glm import GLMForCausalLM

    model = GLMForCausalLM(model_config("debug")).to(torch.bfloat16)
    router = model.routers()[0]
    assert router.weight.dtype == torch.bfloat16
    assert router.e_score_correction_bias.dtype == torch.float32 and router.load.dtype == torch.float32
    with torch.no_grad():
        router.e_score_correction_bias.fill_(0.1)
    model.train()(torch.randint(0, 512, (1, 8)))
    router.update_bias(1e-3)
    steps = {round(float(b) - 0.1, 6) for b in router.e_score_correction_bias}
    assert steps <= {-1e-3, 0.0, 1e-3} and steps != {0.0}  # the 1e-3 steps survive
