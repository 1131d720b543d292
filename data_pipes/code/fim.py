"""Fill-in-the-middle (Bavarian et al. 2022, arXiv 2207.14255): document-level FIM on characters, and its
inverse.

A document is cut at two uniformly random character positions into ``prefix``, ``middle`` and ``suffix``
(the paper's character-level spans: the cut happens before tokenization, so a span may split a token).
With probability ``fim_rate`` a document is transformed; a transformed one is in SPM mode with probability
``spm_rate``, else PSM:

* PSM: ``<|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|> middle``
* SPM: ``<|fim_prefix|> <|fim_suffix|> suffix <|fim_middle|> prefix middle``; this is the paper's SPM variant
  (its appendix D: both sentinels first, then the suffix, then prefix and middle as one run, so the prefix
  flows into the middle as in left-to-right text). Its text does not mark where the prefix ends, so
  :func:`parse_fim` returns SPM samples as ``("", prefix + middle, suffix)``.

The paper ends each FIM sample with ``<EOT>``; here the tokenizer's end-of-document token that packing puts
after every document plays that part, so the text itself carries no ``<|endoftext|>``.

The draws of a document come from a hash of the node seed and the document id, so the result depends on the
document alone, never on sharding or worker count. Departure: a document that already contains a FIM sentinel
string is left as is (mode ``none``): its sample could not be parsed back unambiguously.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from data_pipes.code.special_tokens import FIM_SENTINELS, TOKENS

FimMode = Literal["psm", "spm", "none"]
PRE, MID, SUF = TOKENS.fim_prefix, TOKENS.fim_middle, TOKENS.fim_suffix
_UNIT = float(1 << 53)


@dataclass(frozen=True)
class FimSample:
    """A document after the FIM decision: its new ``text``, the ``mode`` and the cut positions (i <= j)."""

    text: str
    mode: FimMode
    cut: tuple[int, int] | None = None


def document_draws(doc_id: str, seed: int) -> tuple[float, float, float, float]:
    """Four uniform numbers in [0, 1) from (seed, doc_id): apply FIM?, SPM?, first cut, second cut."""
    digest = hashlib.blake2b(f"{seed}:{doc_id}".encode("utf-8", "surrogatepass"), digest_size=32).digest()
    return tuple(  # type: ignore[return-value]
        (int.from_bytes(digest[k : k + 8], "little") >> 11) / _UNIT for k in range(0, 32, 8)
    )


def has_sentinel(text: str) -> bool:
    return any(s in text for s in FIM_SENTINELS)


def fim_format(prefix: str, middle: str, suffix: str, mode: FimMode) -> str:
    """The FIM text of three spans in ``mode`` (``none`` gives the plain concatenation)."""
    if mode == "psm":
        return f"{PRE}{prefix}{SUF}{suffix}{MID}{middle}"
    if mode == "spm":
        return f"{PRE}{SUF}{suffix}{MID}{prefix}{middle}"
    return prefix + middle + suffix


def apply_fim(text: str, doc_id: str, seed: int, fim_rate: float = 0.5, spm_rate: float = 0.5) -> FimSample:
    """Document-level FIM of one document, seeded by ``(seed, doc_id)``."""
    u_fim, u_spm, u_a, u_b = document_draws(doc_id, seed)
    if u_fim >= fim_rate or has_sentinel(text):
        return FimSample(text, "none")
    n = len(text)
    i, j = sorted((int(u_a * (n + 1)), int(u_b * (n + 1))))  # uniform cut positions in [0, n]
    mode: FimMode = "spm" if u_spm < spm_rate else "psm"
    return FimSample(fim_format(text[:i], text[i:j], text[j:], mode), mode, (i, j))


def parse_fim(text: str, mode: FimMode | None = None) -> tuple[str, str, str]:
    """Inverse of :func:`apply_fim`: ``(prefix, middle, suffix)`` whose concatenation is the document.

    ``mode`` is the row's ``fim`` value; without it the mode is read from the leading sentinels. SPM text
    does not mark the prefix/middle boundary, so an SPM sample comes back as
    ``("", prefix + middle, suffix)``.
    """
    if mode is None:
        mode = "spm" if text.startswith(PRE + SUF) else "psm" if text.startswith(PRE) else "none"
    if mode == "none":
        return text, "", ""
    if mode == "psm":
        if not text.startswith(PRE):
            raise ValueError(f"PSM text must start with {PRE!r}: {text[:40]!r}")
        body = text[len(PRE) :]
        s, m = body.find(SUF), body.rfind(MID)
        if s < 0 or m < s:
            raise ValueError(f"PSM text lacks {SUF!r} or {MID!r} in order: {text[:80]!r}")
        return body[:s], body[m + len(MID) :], body[s + len(SUF) : m]
    if not text.startswith(PRE + SUF):
        raise ValueError(f"SPM text must start with {PRE + SUF!r}: {text[:40]!r}")
    body = text[len(PRE) + len(SUF) :]
    m = body.find(MID)
    if m < 0:
        raise ValueError(f"SPM text lacks {MID!r}: {text[:80]!r}")
    return "", body[m + len(MID) :], body[:m]
