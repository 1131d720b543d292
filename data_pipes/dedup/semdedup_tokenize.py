"""SemDedup tokenisation: texts -> length-sorted, right-padded id batches, in this process or a process pool.

A chunk of texts is cut to ``text_chars`` characters (tokenising a whole page to keep 256 tokens wastes most
of the tokeniser's time), tokenised with truncation at ``max_tokens``, sorted by token length (longest first)
so each batch pads to a near-equal width, and cut into ``batch_size`` batches of int32 numpy arrays. Nothing
here imports torch.

On a GPU the tokeniser, not the encoder, is the bottleneck: the Rust tokeniser is parallel, but turning each
encoding into a numpy row is Python work under the GIL that also serves the thread feeding the GPU. The
:class:`TokenizerPool` therefore spreads whole chunks over spawned worker processes (each with its own GIL and
a single-threaded tokeniser), with a bounded number of chunks in flight, and yields them in order.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # ids [b, width] int32, lengths [b] int32, rows [b] int64


@dataclass(frozen=True)
class TokenizeSpec:
    tokenizer_path: str  # a tokenizer.json
    max_tokens: int
    text_chars: int
    batch_size: int
    pad_id: int = 0


_TOKENIZERS: dict[tuple[str, int, bool], Any] = {}
# ASCII control characters that BertNormalizer(clean_text=True) deletes (tab, newline, return become spaces
# there, which the BERT pre-tokeniser treats like the originals, so they stay)
_ASCII_CONTROL = {c: None for c in (*range(0, 9), 11, 12, *range(14, 32), 127)}


def get_tokenizer(path: str, max_tokens: int, plain: bool = False) -> Any:
    """A cached ``tokenizers.Tokenizer`` with truncation at ``max_tokens`` and no padding; ``plain`` drops its
    normaliser (for :func:`ascii_lowercase` input)."""
    key = (path, max_tokens, plain)
    if key not in _TOKENIZERS:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(path)
        tok.no_padding()
        tok.enable_truncation(max_length=max_tokens)
        if plain:
            tok.normalizer = None
        _TOKENIZERS[key] = tok
    return _TOKENIZERS[key]


@dataclass
class _FastPath:
    """What the pure-Python path needs: whether the BertNormalizer lowercases, and the special tokens."""

    lowercase: bool
    prefix: list[int]
    suffix: list[int]
    words: dict[str, list[int]]  # word -> its WordPiece ids (grows; bounded by WORD_CACHE)


WORD_CACHE = 1_000_000
# BertPreTokenizer on ASCII: a word is a run of non-space, non-punctuation characters; a punctuation is a word
_WORD = re.compile(r"[^\s!-/:-@\[-`{-~]+|[!-/:-@\[-`{-~]")


def _fast_path(path: str, max_tokens: int) -> _FastPath | None:
    """The fast path's setup if the tokenizer is BERT's (BertNormalizer, BertPreTokenizer, WordPiece, a
    [CLS] x [SEP] template), else None."""
    with open(path, encoding="utf-8") as fh:
        spec = json.load(fh)
    norm = spec.get("normalizer") or {}
    if (
        norm.get("type") != "BertNormalizer"
        or not norm.get("clean_text", True)
        or (spec.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer"
        or (spec.get("model") or {}).get("type") != "WordPiece"
    ):
        return None
    tok = get_tokenizer(path, max_tokens, plain=True)
    bare, full = tok.encode("a", add_special_tokens=False).ids, tok.encode("a", add_special_tokens=True).ids
    at = len(full) - len(bare) - 1 if len(full) > len(bare) else -1
    cut = next((i for i in range(len(full) - len(bare) + 1) if full[i : i + len(bare)] == bare), -1)
    if at < 0 or cut < 0:
        return None
    return _FastPath(bool(norm.get("lowercase", True)), full[:cut], full[cut + len(bare) :], {})


def ascii_normalise(text: str, lowercase: bool) -> str:
    """What BertNormalizer does to an ASCII text, in C-speed str methods: drop control characters and
    lowercase (NFD accent stripping and CJK spacing are no-ops on ASCII)."""
    text = text.translate(_ASCII_CONTROL)
    return text.lower() if lowercase else text


def _encode(tok: Any, texts: list[str], special: bool = True) -> list[list[int]]:
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # _fast skips the character offsets
    return [e.ids for e in encode(texts, add_special_tokens=special)]


def _fast_ids(fast: _FastPath, spec: TokenizeSpec, texts: list[str]) -> list[list[int]]:
    """BERT ids of ASCII texts without the Rust pipeline: split words with a regex (as BertPreTokenizer does),
    look each word's WordPiece ids up in a per-process cache (misses go to the Rust tokenizer in one batch),
    concatenate until ``max_tokens`` minus the special tokens, add them. WordPiece works word by word, so the
    ids equal the full tokenizer's (a test checks); most words repeat, so this is several times faster."""
    budget = spec.max_tokens - len(fast.prefix) - len(fast.suffix)
    words = [_WORD.findall(ascii_normalise(t, fast.lowercase)) for t in texts]
    cache = fast.words
    missing = list({w for ws in words for w in ws[:budget] if w not in cache})
    if missing:
        if len(cache) + len(missing) > WORD_CACHE:
            cache.clear()
            missing = list({w for ws in words for w in ws[:budget]})
        plain = get_tokenizer(spec.tokenizer_path, spec.max_tokens, plain=True)
        cache.update(zip(missing, _encode(plain, missing, special=False), strict=True))
    out = []
    for ws in words:
        ids = list(fast.prefix)
        for w in ws[:budget]:
            ids += cache[w]
            if len(ids) >= budget + len(fast.prefix):
                break
        del ids[budget + len(fast.prefix) :]
        out.append(ids + fast.suffix)
    return out


def tokenize(spec: TokenizeSpec, texts: Sequence[str]) -> list[list[int]]:
    """Token ids per text (cut at ``text_chars``, truncated at ``max_tokens``, special tokens added). ASCII
    texts take :func:`_fast_ids` when the tokenizer is BERT's; the rest the full Rust tokenizer."""
    cut = [t[: spec.text_chars] if t else "" for t in texts]
    key = (spec.tokenizer_path, spec.max_tokens)
    if key not in _FAST_PATH:
        _FAST_PATH[key] = _fast_path(spec.tokenizer_path, spec.max_tokens)
    fast = _FAST_PATH[key]
    if fast is None:
        return _encode(get_tokenizer(spec.tokenizer_path, spec.max_tokens), cut)
    ascii_rows = [i for i, t in enumerate(cut) if t.isascii()]
    out: list[list[int]] = [[] for _ in cut]
    for i, ids in zip(ascii_rows, _fast_ids(fast, spec, [cut[i] for i in ascii_rows]), strict=True):
        out[i] = ids
    if len(ascii_rows) < len(cut):
        rest = sorted(set(range(len(cut))) - set(ascii_rows))
        full = get_tokenizer(spec.tokenizer_path, spec.max_tokens)
        for i, ids in zip(rest, _encode(full, [cut[i] for i in rest]), strict=True):
            out[i] = ids
    return out


_FAST_PATH: dict[tuple[str, int], _FastPath | None] = {}


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int32 id matrix [batch, longest] and int32 lengths [batch]."""
    lengths = np.fromiter((len(t) for t in token_ids), dtype=np.int32, count=len(token_ids))
    width = int(lengths.max()) if len(token_ids) else 0
    ids = np.full((len(token_ids), width), pad_id, dtype=np.int32)
    for row, toks in enumerate(token_ids):
        ids[row, : len(toks)] = toks
    return ids, lengths


def prepare_chunk(spec: TokenizeSpec, texts: Sequence[str], offset: int = 0) -> list[Batch]:
    """Tokenise, length-sort and batch ``texts``; ``rows`` are positions in the chunk plus ``offset``."""
    tokens = tokenize(spec, texts)
    lengths = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    order = np.argsort(-lengths, kind="stable")
    batches = []
    for b0 in range(0, len(order), spec.batch_size):
        rows = order[b0 : b0 + spec.batch_size]
        ids, lens = pad_batch([tokens[i] for i in rows], spec.pad_id)
        batches.append((ids, lens, rows + offset))
    return batches


def _pool_init() -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already


def _pool_job(spec: TokenizeSpec, texts: list[str], offset: int) -> list[Batch]:
    return prepare_chunk(spec, texts, offset)


class TokenizerPool:
    """Spawned worker processes that run :func:`prepare_chunk`; reuse one for many calls."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_pool_init)

    def imap(
        self, spec: TokenizeSpec, texts: Sequence[str], spans: Sequence[tuple[int, int]]
    ) -> Iterator[list[Batch]]:
        """Prepared chunks for ``spans`` of ``texts``, in order, at most ``2 * workers`` in flight."""
        pending: deque[Future[list[Batch]]] = deque()
        todo = iter(spans)
        for start, end in todo:
            pending.append(self._pool.submit(_pool_job, spec, list(texts[start:end]), start))
            if len(pending) >= 2 * self.workers:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(self._pool.submit(_pool_job, spec, list(texts[nxt[0] : nxt[1]]), nxt[0]))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


_POOLS: dict[int, TokenizerPool | None] = {}


def shared_pool(workers: int) -> TokenizerPool | None:
    """A process-wide pool of ``workers`` processes, or None where this process may not have children (a
    daemonic Dask worker): the caller then tokenises in a thread."""
    if workers <= 0:
        return None
    if workers not in _POOLS:
        try:
            _POOLS[workers] = TokenizerPool(workers)
        except (AssertionError, OSError):
            _POOLS[workers] = None
    return _POOLS[workers]


def drop_pool(workers: int) -> None:
    """Forget a broken pool; later calls tokenise in a thread."""
    pool = _POOLS.get(workers)
    if pool is not None:
        pool.close()
    _POOLS[workers] = None


def default_workers(device: str) -> int:
    """Tokeniser processes: none on CPU (the encoder is the bottleneck there), all cores but one on GPU."""
    if device == "cpu":
        return 0
    return max(1, (os.cpu_count() or 2) - 1)
