"""MinHash dedup: near copies cluster, distinct texts do not, the kept document and the result are stable."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from data_pipes.dedup.clusters import connected_components
from data_pipes.dedup.minhash import minhash_dedup
from data_pipes.dedup.normalise import normalise_text
from data_pipes.dedup.params import MinHashParams
from data_pipes.dedup.signatures import EMPTY, minhash_signatures


def test_normalisation_matches_datatrove_rules() -> None:
    text = "Héllo,  World! It's 3.14 — naïve\u00a0café; cost $12,000.50\n(approx)."
    assert normalise_text(text) == "hello world it s 0 naive cafe cost 0 0 approx"


def test_signature_shape_and_short_documents() -> None:
    sigs = minhash_signatures(["one two three four five six", "too short"], MinHashParams())
    assert sigs.shape == (2, 112) and sigs.dtype == np.uint32
    assert (sigs[1] == EMPTY).all() and (sigs[0] != EMPTY).all()


def test_signatures_do_not_depend_on_batching(corpus: tuple[list[str], list[set[int]]]) -> None:
    texts, _ = corpus
    whole = minhash_signatures(texts, MinHashParams())
    small = minhash_signatures(texts, MinHashParams(batch_bytes=4096))
    assert np.array_equal(whole, small)


def test_near_duplicates_cluster_and_first_is_kept(corpus: tuple[list[str], list[set[int]]]) -> None:
    texts, groups = corpus
    result = minhash_dedup([texts])
    keep, cluster = result.keep[0], result.cluster[0]
    assert keep.tolist() == [True, True, True, True, False, False, False, True]
    for group in groups:
        ids = {int(cluster[i]) for i in group}
        assert len(ids) == 1 and -1 not in ids
    assert cluster[2] == cluster[3] == cluster[7] == -1


def test_distinct_texts_are_not_clustered(distinct_texts: list[str]) -> None:
    result = minhash_dedup([distinct_texts])
    assert result.keep[0].all() and (result.cluster[0] == -1).all() and result.n_pairs == 0


def test_one_shard_equals_three_shards(corpus: tuple[list[str], list[set[int]]]) -> None:
    texts, _ = corpus
    one = minhash_dedup([texts])
    three = minhash_dedup([texts[:3], texts[3:5], texts[5:]])
    assert np.array_equal(np.concatenate(three.keep), one.keep[0])
    assert np.array_equal(np.concatenate(three.cluster), one.cluster[0])


def test_kept_document_is_smallest_shard_row(corpus: tuple[list[str], list[set[int]]]) -> None:
    texts, _ = corpus
    reordered = [texts[6], texts[4], texts[0]]  # all three are copies of paragraph 0
    result = minhash_dedup([reordered[:1], reordered[1:]])
    assert [k.tolist() for k in result.keep] == [[True], [False, False]]


def test_union_find_labels_components_by_smallest_key() -> None:
    pairs = np.array([[5, 9], [1, 5], [20, 30], [9, 2]], dtype=np.int64)
    clusters = connected_components(pairs)
    assert clusters.doc.tolist() == [1, 2, 5, 9, 20, 30]
    assert clusters.root.tolist() == [1, 1, 1, 1, 20, 20]
    assert clusters.cluster.tolist() == [0, 0, 0, 0, 1, 1]


def test_params_forbid_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        MinHashParams(num_buckets=14)  # type: ignore[call-arg]
    assert MinHashParams().threshold == pytest.approx(0.719, abs=1e-3)
