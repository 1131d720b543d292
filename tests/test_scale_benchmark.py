"""benchmarks/scale.py's bookkeeping: CPU and RSS per step from the poller's series, the corpus generator's
determinism and edits (text form), and the docs table, on synthetic inputs (no pipeline run)."""

from __future__ import annotations

import random

import pytest

from benchmarks import scale


def _nodes() -> dict[str, dict[str, object]]:
    return {
        "pages": {"started": 110.0, "wall_s": 20.0, "counts": {"in": 1000}},
        "exact": {"started": 130.0, "wall_s": 15.0, "counts": {"in": 1000}},
    }


def test_step_cpu_splits_the_series_at_node_starts() -> None:
    # CPU so far per role, sampled each second from t=100: the driver burns 0.1 s/s, the worker 1 s/s from 110
    series = [
        (float(t), {"driver": 0.1 * (t - 100), "worker": float(max(0, t - 110))}) for t in range(100, 151)
    ]
    steps = scale.step_cpu(series, _nodes())
    assert list(steps) == ["startup", "pages", "exact", "finish"]
    assert steps["startup"] == {"driver": pytest.approx(1.0), "worker": 0.0}
    assert steps["pages"] == {"driver": pytest.approx(2.0), "worker": pytest.approx(20.0)}
    assert steps["exact"]["worker"] == pytest.approx(15.0)  # ends at its start + wall (145)
    assert steps["finish"]["worker"] == pytest.approx(5.0)
    total = sum(sum(v.values()) for v in steps.values())
    assert total == pytest.approx(sum(series[-1][1].values()))  # every CPU second lands in one step


def test_step_rss_is_the_peak_within_each_step() -> None:
    rss = [
        (float(t), {"worker": 500.0 + (300.0 if t == 135 else 0.0), "driver": 540.0}) for t in range(100, 151)
    ]
    peaks = scale.step_rss(rss, _nodes())
    assert peaks["pages"]["worker"] == 500.0 and peaks["exact"]["worker"] == 800.0
    assert peaks["finish"]["driver"] == 540.0


def test_text_corpus_is_seeded_per_document(monkeypatch: pytest.MonkeyPatch) -> None:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    rng = random.Random(0)
    base = [
        (f"b{i}", f"u{i}", "\n".join(" ".join(rng.choices(words, k=12)) + "." for _ in range(3)), "en")
        for i in range(20)
    ]
    monkeypatch.setattr(scale, "_BASE_TEXT", base)
    docs = [scale._html(7, i, cache=scale.Path("unused")) for i in range(400)]
    assert docs == [
        scale._html(7, i, cache=scale.Path("unused")) for i in range(400)
    ]  # same seed, same bytes
    assert [d[0] for d in docs[:20]] == [b[2] for b in base]  # the real pages first, unchanged
    kinds = [d[2] for d in docs[20:]]
    assert set(kinds) == {"exact", "near", "variant"} and kinds.count("variant") > kinds.count("near")
    for i, (text, _, kind) in enumerate(docs):
        if kind == "exact":
            assert text in [d[0] for d in docs[:i]]  # a copy of an earlier document
        if kind == "variant":
            assert text not in [b[2] for b in base] and text.count("\n") == 2  # lines edited, kept as lines


def test_table_marks_a_stopped_run() -> None:
    usage = {
        "cpu_s": {"worker": 30.0, "driver": 6.0, "prefect_server": 4.0},
        "peak_rss_mb": {"driver": 550.0, "worker": 700.0},
        "wall_s": 100.0,
        "load_before": [1.0, 1.0, 1.0],
        "load_after": [2.0, 2.0, 2.0],
        "load_mean": 1.5,
    }
    steps = {"startup": {"driver": 2.0}, "pages": {"worker": 10.0}, "finish": {"worker": 5.0}}
    done = {"docs": 10000, "usage": usage, "steps": steps}
    stopped = {"docs": 30000, "usage": {**usage, "stopped": True}, "steps": steps}
    lines = scale.markdown_table([stopped, done]).splitlines()
    assert lines[0].split(" | ")[2:5] == ["startup", "pages", "finish"]  # only the steps that ran
    assert lines[2].startswith("| 10,000 | **4.00** | 0.20 | 1.00 | 0.50 | 3.0 / 0.6 / 0.4 | 550 MB | 700 MB")
    assert lines[3].startswith("| 30,000 | stopped | 0.07 | 0.33 | – |")
