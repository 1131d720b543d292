"""The packed loader: positions and labels from doc_lens, the model's own target count, per-rank slices of one
global order, exact resume, and refusal of another data set's state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import model_config
from model.glm import GLMForCausalLM
from model.train.data import IGNORE, PackedLoader, batch_rows_at, labels_of, position_ids_of, shard_files


def test_positions_and_labels_follow_doc_lens() -> None:
    ids = np.array([10, 11, 12, 20, 21, 0], dtype=np.int32)
    assert position_ids_of([3, 2], 6).tolist() == [0, 1, 2, 0, 1, 0]
    assert labels_of(ids, [3, 2], 1).tolist() == [IGNORE, 11, 12, IGNORE, 21, IGNORE]
    mask = np.array([0, 0, 1, 1, 1, 0], dtype=np.int8)
    assert labels_of(ids, [3, 2], 1, mask).tolist() == [IGNORE, IGNORE, 12, IGNORE, 21, IGNORE]


def test_target_count_matches_the_model(store: dict) -> None:
    loader = PackedLoader(shard_files([str(store["packed"])]), seed=0, micro_batch=2)
    (mb,) = loader.next_batch(2)
    model = GLMForCausalLM(model_config("debug"), seed=0)
    out = model(mb.input_ids, doc_lens=mb.doc_lens, labels=mb.labels)
    assert out.n_tokens == mb.n_targets > 0
    # the model's positions are ours
    for row, lens in enumerate(mb.doc_lens):
        assert mb.position_ids[row].tolist() == position_ids_of(lens, mb.input_ids.shape[1]).tolist()


def test_ranks_take_slices_of_one_global_order(store: dict) -> None:
    files = shard_files([str(store["packed"])])
    one = PackedLoader(files, seed=3, micro_batch=2)
    two = [PackedLoader(files, seed=3, micro_batch=2, rank=r, world=2) for r in range(2)]
    for _ in range(3):
        ref = one.next_batch(8)
        mine = two[0].next_batch(8) + two[1].next_batch(8)
        assert [mb.samples for mb in ref] == [mb.samples for mb in mine]
        for a, b in zip(ref, mine, strict=True):
            assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    n = len(one.rows)
    rows = [one.row_of(i) for i in range(n)]
    assert sorted(rows) == list(range(n))  # one epoch visits each row once
    assert rows != list(range(n))  # in a seeded order
    with pytest.raises(ValueError, match="multiple of micro_batch x ranks"):
        two[0].next_batch(6)


def test_resume_at_the_exact_sample(store: dict) -> None:
    files = shard_files([str(store["packed"])])
    a = PackedLoader(files, seed=1, micro_batch=1)
    a.next_batch(3)
    state = a.state_dict()
    expected = [mb.samples for mb in a.next_batch(5)] + [mb.samples for mb in a.next_batch(4)]
    b = PackedLoader(files, seed=1, micro_batch=1)
    b.load_state_dict(state)
    got = [mb.samples for mb in b.next_batch(5)] + [mb.samples for mb in b.next_batch(4)]
    assert got == expected and got[0] == [3]
    drawn = b.consumed()
    assert [d["file"] for d in drawn] == files and sum(d["samples"] for d in drawn) == b.sample == 12
    b.sample = 3 * len(b.rows) + 1  # three epochs and one sample
    assert [d["samples"] for d in b.consumed()][0] in (3 * drawn[0]["rows"], 3 * drawn[0]["rows"] + 1)
    assert sum(d["samples"] for d in b.consumed()) == 3 * len(b.rows) + 1
    c = PackedLoader(files, seed=2, micro_batch=1)
    with pytest.raises(ValueError, match="seed 1"):
        c.load_state_dict(state)
    d = PackedLoader(files[:1], seed=1, micro_batch=1)
    with pytest.raises(ValueError, match="other data"):
        d.load_state_dict(state)


def test_batch_warmup_rows() -> None:
    sizes, samples = [], 0
    while True:
        rows = batch_rows_at(samples, 64, 16, 4, 64 * 40, 2)
        sizes.append(rows)
        samples += rows
        if rows == 16:
            break
    assert sizes[0] == 4 and sizes == sorted(sizes) and all(r % 2 == 0 for r in sizes) and len(sizes) > 3
    assert batch_rows_at(0, 64, 16, None, 0, 2) == 16
