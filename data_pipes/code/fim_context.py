"""Context-level FIM (Bavarian et al. 2022, section 4.2): FIM per document segment of a packed training row.

The packer has already cut documents into fixed-length rows with ``doc_lens`` recording each segment. Here
each segment is, with probability ``fim_rate``, cut at two uniformly random *token* positions and rearranged
into PSM or SPM (same layouts as :mod:`data_pipes.code.fim`, with sentinel ids). Departure from the paper,
which cuts characters: the row is already tokens, and decoding and re-encoding would change its length; a
cut between tokens never splits one.

Length. The three sentinels make a segment 3 tokens longer. To keep every segment (and so ``doc_lens`` and
the row) at its length, the last 3 tokens of the suffix are dropped, as the paper's context-level
implementation trims the FIM'd document to fit the context; a segment whose suffix has fewer than 3 tokens is
left unchanged (counted as not FIM'd), so no padding is ever needed and ``doc_lens`` stays valid. A trailing
end-of-document token of a segment stays last (it ends the middle, as the paper's ``<EOT>``). Positions past
``sum(doc_lens)`` (padding) are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_SENTINELS = 3


@dataclass(frozen=True)
class FimIds:
    """Token ids of the FIM sentinels and of the end-of-document token (``None``: segments have none)."""

    prefix: int
    middle: int
    suffix: int
    eot: int | None = None


def fim_segment(seg: np.ndarray, ids: FimIds, i: int, j: int, spm: bool) -> np.ndarray | None:
    """``seg`` cut at token positions i <= j (of its content, i.e. without a trailing EOT) and rearranged,
    same length; ``None`` when the suffix is too short to give up the sentinels' room."""
    tail = seg[-1:] if ids.eot is not None and seg.size and seg[-1] == ids.eot else seg[:0]
    body = seg[: seg.size - tail.size]
    prefix, middle, suffix = body[:i], body[i:j], body[j:]
    if suffix.size < N_SENTINELS:
        return None
    suffix = suffix[: suffix.size - N_SENTINELS]
    pre, mid, suf = (np.array([x], dtype=seg.dtype) for x in (ids.prefix, ids.middle, ids.suffix))
    parts = [pre, suf, suffix, mid, prefix, middle] if spm else [pre, prefix, suf, suffix, mid, middle]
    out = np.concatenate([*parts, tail])
    assert out.size == seg.size
    return out


def fim_context(
    token_ids: np.ndarray,
    doc_lens: Sequence[int],
    ids: FimIds,
    rng: np.random.Generator,
    fim_rate: float = 0.5,
    spm_rate: float = 0.5,
) -> np.ndarray:
    """A copy of one packed row with FIM applied per document segment; same length and dtype.

    Four draws per segment, whatever happens, so one segment's outcome never shifts another's draws.
    """
    out = np.array(token_ids, copy=True)
    start = 0
    for n in doc_lens:
        seg = out[start : start + n]
        u_fim, u_spm, u_a, u_b = rng.random(4)
        has_eot = ids.eot is not None and n > 0 and seg[-1] == ids.eot
        body = n - int(has_eot)
        i, j = sorted((int(u_a * (body + 1)), int(u_b * (body + 1))))  # uniform in [0, body]
        if u_fim < fim_rate and body > 0:
            new = fim_segment(seg, ids, i, j, spm=bool(u_spm < spm_rate))
            if new is not None:
                out[start : start + n] = new
        start += n
    if start > out.size:
        raise ValueError(f"doc_lens sum to {start} but the row has {out.size} tokens")
    return out
