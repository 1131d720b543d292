"""FIM: PSM/SPM round trips (property-based), seeding, rates, and context-level FIM on packed rows."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from data_pipes.code.fim import MID, PRE, SUF, apply_fim, fim_format, parse_fim
from data_pipes.code.fim_context import FimIds, fim_context
from data_pipes.code.special_tokens import FIM_SENTINELS, SPECIAL_TOKENS, TOKENS

texts = st.text(st.characters(), max_size=200).filter(lambda t: not any(s in t for s in FIM_SENTINELS))


@settings(max_examples=300, deadline=None)
@given(texts, st.integers(0, 10**9), st.integers(0, 10**9))
def test_psm_and_spm_round_trip_any_cut(text: str, a: int, b: int) -> None:
    i, j = sorted((a % (len(text) + 1), b % (len(text) + 1)))
    prefix, middle, suffix = text[:i], text[i:j], text[j:]
    assert parse_fim(fim_format(prefix, middle, suffix, "psm")) == (prefix, middle, suffix)
    spm = fim_format(prefix, middle, suffix, "spm")
    assert spm == f"{PRE}{SUF}{suffix}{MID}{prefix}{middle}"  # the paper's SPM variant
    assert parse_fim(spm) == ("", prefix + middle, suffix)


@settings(max_examples=300, deadline=None)
@given(texts, st.text(min_size=1, max_size=20), st.integers(0, 2**31), st.sampled_from([0.0, 1.0]))
def test_apply_fim_round_trip(text: str, doc_id: str, seed: int, spm_rate: float) -> None:
    sample = apply_fim(text, doc_id, seed, fim_rate=1.0, spm_rate=spm_rate)
    assert sample.mode == ("spm" if spm_rate == 1.0 else "psm")
    assert "".join(parse_fim(sample.text)) == text
    assert "".join(parse_fim(sample.text, sample.mode)) == text
    i, j = sample.cut
    assert 0 <= i <= j <= len(text)
    if sample.mode == "psm":
        assert parse_fim(sample.text) == (text[:i], text[i:j], text[j:])


def test_empty_and_one_char_documents() -> None:
    for text in ("", "x", "é"):
        for spm_rate in (0.0, 1.0):
            sample = apply_fim(text, "d", 1, fim_rate=1.0, spm_rate=spm_rate)
            assert "".join(parse_fim(sample.text)) == text
    assert apply_fim("", "d", 1, fim_rate=1.0, spm_rate=0.0).text == PRE + SUF + MID


def test_seeded_per_document_and_rates() -> None:
    docs = [f"def f{k}(x):\n    return x + {k}\n" for k in range(4000)]
    first = [apply_fim(d, f"id{k}", 7) for k, d in enumerate(docs)]
    again = [apply_fim(d, f"id{k}", 7) for k, d in enumerate(docs)]
    assert first == again
    assert [s.mode for s in first] != [apply_fim(d, f"id{k}", 8).mode for k, d in enumerate(docs)]
    modes = [s.mode for s in first]
    assert abs(modes.count("none") / len(docs) - 0.5) < 0.04
    assert abs(modes.count("spm") / (len(docs) - modes.count("none")) - 0.5) < 0.05
    assert {apply_fim("abc", "x", 3, fim_rate=0.0).mode} == {"none"}


def test_document_with_sentinel_is_left_alone() -> None:
    text = f"a {TOKENS.fim_middle} b"
    assert apply_fim(text, "x", 0, fim_rate=1.0).mode == "none"
    assert parse_fim(text, "none") == (text, "", "")


def test_special_tokens_declared_once() -> None:
    assert len(set(SPECIAL_TOKENS)) == len(SPECIAL_TOKENS)
    assert SPECIAL_TOKENS[:5] == ("<|endoftext|>", *FIM_SENTINELS)
    assert {"<think>", "</think>", "<tool_call>", "<arg_key>", "<|observation|>"} <= set(SPECIAL_TOKENS)


IDS = FimIds(prefix=1001, middle=1002, suffix=1003, eot=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=6), st.integers(0, 2**31), st.integers(0, 8))
def test_fim_context_keeps_length_and_boundaries(lens: list[int], seed: int, pad: int) -> None:
    rng = np.random.default_rng(seed)
    segs = [np.append(rng.integers(10, 1000, size=n - 1), 0) for n in lens]  # each ends with EOT (0)
    row = np.concatenate([*segs, np.full(pad, 5)]).astype(np.int32)
    out = fim_context(row, lens, IDS, np.random.default_rng(seed), fim_rate=1.0)
    assert out.shape == row.shape and out.dtype == row.dtype
    assert (out[sum(lens) :] == 5).all()  # padding untouched
    start = 0
    for n, seg in zip(lens, segs, strict=True):
        new = out[start : start + n]
        assert new[-1] == 0  # EOT stays last
        if (new == IDS.prefix).any():  # FIM'd: sentinels once each, the rest a sub-multiset of the segment
            assert [(new == t).sum() for t in (IDS.prefix, IDS.middle, IDS.suffix)] == [1, 1, 1]
            body = new[(new != IDS.prefix) & (new != IDS.middle) & (new != IDS.suffix)]
            assert body.size == n - 3
            assert not (np.bincount(body, minlength=1100) > np.bincount(seg, minlength=1100)).any()
        else:
            assert (new == seg).all()
        start += n


def test_fim_context_psm_layout() -> None:
    row = np.arange(10, 20, dtype=np.int64)  # one 10-token document, no EOT
    out = fim_context(row, [10], FimIds(1, 2, 3), np.random.default_rng(0), fim_rate=1.0, spm_rate=0.0)
    assert out[0] == 1 and (out == 3).sum() == 1 and (out == 2).sum() == 1
    pre = out[1:].tolist()
    s, m = pre.index(3), pre.index(2)
    prefix, suffix, middle = pre[:s], pre[s + 1 : m], pre[m + 1 :]
    assert prefix + middle == list(range(10, 10 + len(prefix) + len(middle)))
    assert suffix == list(range(10 + len(prefix) + len(middle), 20))[: len(suffix)]
    assert len(prefix) + len(middle) + len(suffix) == 7
