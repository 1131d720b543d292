"""Vectorised hashing of word n-gram shingles for a batch of normalised documents.

datatrove joins each n-gram's words in Python and hashes the string with xxhash, one call per shingle. We hash
every shingle of a batch at once with numpy: the batch's UTF-8 bytes get a polynomial prefix hash modulo 2^64
(P[k] = sum_{i<k} (byte_i + 1) * R^i), so the hash of any byte span [s, e) is (P[e] - P[s]) * R^-s, which is
position-independent because R is odd and hence invertible modulo 2^64. Runs of spaces are first squeezed to
one space, and the span of a shingle runs from the start of its first word to the end of its last one, so it
hashes exactly the string " ".join(words). A
splitmix64 finaliser then spreads the bits, and the top 32 bits are the shingle hash.

Departure: the shingle hash is not xxhash, so signatures differ from datatrove's bit for bit; the set
semantics (distinct word 5-grams of the normalised text, documents with fewer than n words get no shingles)
are the same.

Languages written without spaces (Chinese, Japanese, Thai) would otherwise give a paragraph one "word" and no
shingle. As datatrove's MinHash splits every document with its language's word tokenizer, :func:`word_split`
first cuts such documents into words with the segmenters of ``data_pipes.web.lang.segmenters`` (rjieba,
Sudachi mode A, pythainlp newmm: datatrove's tokenizers for these languages) and joins them with one space, so
the n-grams are word 5-grams there too; datatrove uses word n-grams, not character n-grams, for every language.
The language is the row's ``lang`` (from ``langid``); without one, the text's dominant script (Han, kana, Thai).
Every other document, English included, is left as it is, so its shingles are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

_R = np.uint64(0x9E3779B97F4A7C15 | 1)  # odd multiplier of the polynomial hash
_R_INV = np.uint64(pow(int(_R), -1, 1 << 64))
_SPACE = 32


class _PowerTable:
    """R^i and R^-i modulo 2^64 for i < size, grown on demand and shared by all batches of a process."""

    def __init__(self) -> None:
        self.pow = np.ones(1, dtype=np.uint64)
        self.inv = np.ones(1, dtype=np.uint64)

    def ensure(self, size: int) -> None:
        if size <= self.pow.size:
            return
        size = max(size, 2 * self.pow.size)
        self.pow = _powers(_R, size)
        self.inv = _powers(_R_INV, size)


def _powers(base: np.uint64, size: int) -> np.ndarray:
    """[1, base, base^2, ...] modulo 2^64 (numpy's integer cumprod wraps around)."""
    steps = np.full(size, base, dtype=np.uint64)
    steps[0] = 1
    return np.cumprod(steps, dtype=np.uint64)


_POWERS = _PowerTable()


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, in place on a uint64 array."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


_SCRIPT_SEGMENTER = {"Hani": "zh", "Kana": "ja", "Thai": "th"}  # scripts written without spaces


def unspaced_segmenter(texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[str | None]:
    """Per document, the segmenter (``"zh"``, ``"ja"``, ``"th"``) of a language written without spaces, else None.

    A non-empty ``lang`` decides (codes as ``langid`` writes them, normalised as the heuristics do); a document
    without one goes by its dominant script, looked at only when the text has non-ASCII characters.
    """
    from data_pipes.web.lang.rules import normalise_lang_column
    from data_pipes.web.lang.scripts import dominant_script
    from data_pipes.web.lang.segmenters import UNSPACED

    if langs is not None and len(langs) != len(texts):
        raise ValueError(f"{len(langs)} languages for {len(texts)} texts; give one `lang` per document")
    codes = (
        normalise_lang_column(pl.Series(list(langs), dtype=pl.String)).to_list()
        if langs is not None
        else [""] * len(texts)
    )
    out: list[str | None] = [c if c in UNSPACED else None for c in codes]
    unknown = [i for i, c in enumerate(codes) if not c and not texts[i].isascii()]
    if unknown:
        scripts = dominant_script(pl.Series([texts[i] for i in unknown], dtype=pl.String)).to_list()
        for i, script in zip(unknown, scripts, strict=True):
            out[i] = _SCRIPT_SEGMENTER.get(script)
    return out


def word_split(normalised: Sequence[str], langs: Sequence[str | None] | None = None) -> list[str]:
    """``normalised`` with each document of an unspaced language cut into words joined by one space (see the
    module docstring); other documents are returned unchanged. Segmenters load once per process."""
    from data_pipes.web.lang.segmenters import segment

    kinds = unspaced_segmenter(normalised, langs)
    out = list(normalised)
    for kind in sorted({k for k in kinds if k is not None}):
        rows = [i for i, k in enumerate(kinds) if k == kind]
        words = (
            segment(pl.Series([normalised[i] for i in rows], dtype=pl.String), kind)
            .group_by("doc", maintain_order=True)
            .agg(pl.col("tok").str.join(" "))
        )
        for doc, joined in zip(words["doc"].to_list(), words["tok"].to_list(), strict=True):
            out[rows[doc]] = joined
        done = set(words["doc"].to_list())
        for j, i in enumerate(rows):
            if j not in done:  # no word at all
                out[i] = ""
    return out


def _squeeze_spaces(data: np.ndarray, doc_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop every space that follows a space, so a shingle's span is exactly its words joined by one space.

    Without this, a shingle across a paragraph break or a removed punctuation mark ("end.  next") hashed
    differently from the same words separated by one space, and near copies that differ only in whitespace
    lost shingles (benchmark recall 0.933 -> 0.975 with this step). Document starts move to where their first
    kept byte lands.
    """
    is_space = data == _SPACE
    drop = np.zeros(data.size, dtype=bool)
    drop[1:] = is_space[1:] & is_space[:-1]
    if not drop.any():
        return data, doc_start
    kept_before = np.concatenate([[0], np.cumsum(~drop)])  # kept bytes before each position
    return data[~drop], kept_before[doc_start]


def hash_shingles(normalised: Sequence[str], n_grams: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash every word n-gram of every document in ``normalised``.

    Returns ``(hashes, doc)``: uint32 shingle hashes and, for each, the int64 index of its document, grouped
    by document in ascending order. Duplicated shingles are kept (they cannot change a minimum).
    """
    data = np.frombuffer(" ".join(normalised).encode("utf-8"), dtype=np.uint8)
    # document d occupies bytes [doc_start[d], doc_start[d] + len_d) of the joined batch
    lengths = np.fromiter((len(t.encode("utf-8")) for t in normalised), dtype=np.int64, count=len(normalised))
    doc_start = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    data, doc_start = _squeeze_spaces(data, doc_start)
    n_bytes = data.size

    spaces = np.flatnonzero(data == _SPACE)
    word_start = np.concatenate([[0], spaces + 1])
    word_end = np.concatenate([spaces, [n_bytes]])
    nonempty = word_end > word_start  # doubled spaces and empty documents leave empty words
    word_start, word_end = word_start[nonempty], word_end[nonempty]
    n_shingles = word_start.size - n_grams + 1
    if n_shingles <= 0:
        return np.empty(0, np.uint32), np.empty(0, np.int64)

    word_doc = np.searchsorted(doc_start, word_start, side="right") - 1
    first, last = word_start[:n_shingles], word_end[n_grams - 1 :]
    doc = word_doc[:n_shingles]
    same_doc = doc == word_doc[n_grams - 1 :]
    first, last, doc = first[same_doc], last[same_doc], doc[same_doc]

    _POWERS.ensure(n_bytes + 1)
    prefix = np.empty(n_bytes + 1, dtype=np.uint64)
    prefix[0] = 0
    np.cumsum((data.astype(np.uint64) + np.uint64(1)) * _POWERS.pow[:n_bytes], out=prefix[1:])
    h = (prefix[last] - prefix[first]) * _POWERS.inv[first]
    h = _mix64(h)
    return (h >> np.uint64(32)).astype(np.uint32), doc
