"""Quality library: fastText training and scoring, scorers, bucket cut-offs and the math heuristic."""

from __future__ import annotations

import hashlib
import inspect
import math
import random
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data_pipes.web import quality_buckets as qb
from data_pipes.web import quality_fasttext as ft
from data_pipes.web.quality_math import math_density
from data_pipes.web.quality_training import global_caps
from data_pipes.web.scorers import build_scorer, check_scorer, scorer_signature

MODULES = (json_mod := __import__("json"), __import__("csv"), __import__("shutil"), __import__("textwrap"))


def _lines() -> list[tuple[str, str]]:
    rnd = random.Random(1)
    good = [inspect.getdoc(m) for m in MODULES] + [
        inspect.getdoc(getattr(m, a)) for m in MODULES for a in dir(m) if not a.startswith("_")
    ]
    good = [" ".join(g.split()) for g in good if g and len(g) > 150]
    bad = []
    for g in good:
        words = g.split()
        rnd.shuffle(words)
        bad.append(" ".join(words))
    pairs = [("hq", g) for g in good] + [("lq", b) for b in bad]
    rnd.shuffle(pairs)
    return pairs


def test_preprocess_joins_lines_and_cuts() -> None:
    assert ft.Preprocess(text_chars=12).line("ab\ncd\r\n  ef gh") == "ab cd ef"
    assert ft.Preprocess(lowercase=True).line("A\tB") == "a b" and ft.Preprocess().line(None) == ""


def test_training_is_deterministic_in_one_process(tmp_path: Path) -> None:
    # fastText leaves 90% of the input matrix uninitialised with thread=1; reused memory made a second model
    # in the same process differ (or diverge to NaN) until allocations were zeroed
    config = ft.TrainConfig(epoch=10, lr=0.5, dim=16, bucket=20000, seed=5)
    digests = []
    for i in range(3):
        ft.train(_lines(), str(tmp_path / f"m{i}.bin"), config)
        digests.append(hashlib.sha256((tmp_path / f"m{i}.bin").read_bytes()).hexdigest())
    assert len(set(digests)) == 1
    model = ft.load(str(tmp_path / "m0.bin"))
    assert ft.labels_of(model) in (["hq", "lq"], ["lq", "hq"])
    probs = ft.probabilities(model, [line for _, line in _lines()] + [""], "hq")
    assert all(0 <= p <= 1 for p in probs) and probs[-1] == 0.0


def test_metrics() -> None:
    m = ft.metrics(["hq", "hq", "lq", "lq"], [0.9, 0.2, 0.6, 0.1], "hq")
    assert m == {"heldout_docs": 4, "precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.5}


def test_math_density_ranks_math_above_prose() -> None:
    import statistics

    assert math_density(inspect.getdoc(statistics.variance)) > math_density(inspect.getdoc(json_mod.dumps))
    assert math_density("$x^2 + y^2 = z^2$ by the theorem, so \\frac{a}{b} = 3.5") > 0.9
    assert math_density("") == 0.0


def test_scorer_registry_and_dotted_paths() -> None:
    texts = ["the mean is 2.5 and the variance 1.25", "hello world"]
    builtin = build_scorer("math_density")(texts)
    dotted = build_scorer("data_pipes.web.quality_math:score_texts", {"scale": 8.0})(texts)
    assert builtin == dotted and builtin[0] > builtin[1]
    assert "neither a registered scorer" in (check_scorer("nonsense") or "")
    assert "cannot import" in (check_scorer("no_such_module_xyz:f") or "")
    assert scorer_signature("math_density") == ""
    assert scorer_signature("data_pipes.web.quality_math:score_texts").startswith("data_pipes")
    with pytest.raises(ValueError, match="bad options"):
        build_scorer("math_density", {"nope": 1})


def test_percentile_cutoffs_are_exact_with_ties() -> None:
    scores = np.array([0.0] * 60 + [0.5] * 30 + [1.0] * 10)  # heavy ties, as a heuristic teacher gives
    hashes = qb.id_hashes(pl.Series([f"doc{i}" for i in range(100)]), seed=3)
    buckets = [
        qb.Bucket("top", 90, 3.2, False),
        qb.Bucket("mid", 25, 1.0, False),
        qb.Bucket("low", 0, 0, True),
    ]
    cutoffs = qb.percentile_cutoffs(scores, hashes, [90, 25])
    index = qb.assign(scores, hashes, buckets, cutoffs)
    assert np.bincount(index).tolist() == [10, 65, 25]
    assert qb.percentile_cutoffs(scores, hashes, [60])[0] is not None
    assert qb.percentile_cutoffs(scores, hashes, [100]) == [None]
    k = math.ceil(0.6 * 100)  # the exact-rational rank: 0.6 * 100 in floats is 60.00000000000001
    assert (
        int(qb.at_or_above(scores, hashes, qb.percentile_cutoffs(scores, hashes, [60])[0]).sum()) == 100 - k
    )
    shuffled = np.random.default_rng(0).permutation(100)  # sharding/order does not matter
    again = qb.assign(scores[shuffled], hashes[shuffled], buckets, cutoffs)
    assert (again == index[shuffled]).all()


def test_threshold_assignment_and_problems() -> None:
    buckets = [
        qb.Bucket("hi", 0.8, 2.0, False),
        qb.Bucket("mid", 0.3, 1.0, False),
        qb.Bucket("lo", None, 0, True),
    ]
    index = qb.assign(np.array([0.9, 0.8, 0.5, 0.1]), None, buckets, [0.8, 0.3])
    assert index.tolist() == [0, 0, 1, 2]
    assert qb.bucket_problems(buckets, "threshold") == []
    problems = qb.bucket_problems(
        [qb.Bucket("a", 0.2, 1, False), qb.Bucket("a", 0.5, -1, False), qb.Bucket("b", 0.1, 1, True)],
        "threshold",
    )
    messages = " ".join(m for _, _, m in problems)
    assert "used twice" in messages and ">= 0" in messages and "must be below" in messages
    assert "epochs must be 0" in messages and "omit its `min_score`" in messages


def test_tokens_and_mixture() -> None:
    texts = pl.Series(["abcd efgh", "ü" * 4, None])
    assert qb.token_estimate(texts, "bytes_div_4").tolist() == [9 / 4, 2.0, 0.0]
    assert qb.token_estimate(texts, "words").tolist() == [2.0, 1.0, 0.0]
    buckets = [
        qb.Bucket("top", 90, 3.2, False),
        qb.Bucket("rest", 0, 1.0, False),
        qb.Bucket("x", None, 0, True),
    ]
    rows = qb.mixture_table(buckets, [10, 80, 10], [100.0, 800.0, 50.0], [0.9, 0.1, None])
    assert [r["effective_tokens"] for r in rows] == [320, 800, 0]
    assert rows[0]["mixture_share"] == round(320 / 1120, 4)
    assert "UTF-8 bytes / 4" in qb.mixture_markdown(rows, "percentile", "bytes_div_4", "quality_score")


def test_global_caps_merge_shards() -> None:
    per_shard = [{"a": [0.1, 0.5]}, {"a": [0.2, 0.3], "b": [0.9]}]
    assert global_caps(per_shard, 3) == {"a": 0.3, "b": 0.9}
    assert global_caps(per_shard, None) == {"a": 1.0, "b": 1.0}
