"""Exact dedup on normalised text."""

from __future__ import annotations

import numpy as np

from data_pipes.dedup.exact import exact_dedup


def test_reformatted_copies_are_exact_duplicates(distinct_texts: list[str]) -> None:
    a, b = distinct_texts[:2]
    shards = [[a, b], [a.upper().replace(",", " ,"), "  " + b + "  "], [b.replace("the", "a")]]
    result = exact_dedup(shards)
    assert [k.tolist() for k in result.keep] == [[True, True], [False, False], [True]]
    assert result.duplicate_of[1].tolist() == [0, 1]  # doc keys of shard 0 rows 0 and 1
    assert result.n_duplicates == 2


def test_one_shard_equals_three_shards(distinct_texts: list[str]) -> None:
    texts = distinct_texts + [distinct_texts[2], distinct_texts[0].lower(), distinct_texts[3]]
    one = exact_dedup([texts])
    three = exact_dedup([texts[:2], texts[2:5], texts[5:]])
    assert np.array_equal(np.concatenate(three.keep), one.keep[0])
    assert one.keep[0].tolist() == [True] * 4 + [False] * 3
