"""Byte-level BPE training with HF ``tokenizers``, saved as a folder ``transformers.AutoTokenizer`` loads.

The model is GPT-2 style: the ByteLevel pre-tokenizer (its split regex, no prefix space) maps bytes to 256
visible characters, so any string round-trips (``decode(encode(x)) == x``) with no unknown token; no
normaliser runs (NFC or lower-casing would break the round trip). The special tokens of
``data_pipes.code.special_tokens`` are added first, in their declared order, so they get ids 0..n-1 and stay
single ids whatever the vocabulary size.

Determinism: tokenizers' BPE trainer breaks count ties by pair ids, and word ids come from the order of the
input iterator, so the same texts in the same order give byte-identical ``tokenizer.json`` files (checked
across processes in the tests). We feed the sample in a seeded hash order, never in shard-arrival order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from data_pipes.code.special_tokens import SPECIAL_TOKENS, TOKENS

TOKENIZER_FILE = "tokenizer.json"
EOS_TOKEN = TOKENS.endoftext
PAD_TOKEN = (
    TOKENS.endoftext
)  # padding is masked through doc_lens / n_pad, so the end-of-text id serves (as Qwen)


def min_vocab_size(special_tokens: Sequence[str] = SPECIAL_TOKENS) -> int:
    """The smallest useful vocabulary: the special tokens plus the 256 byte symbols."""
    return len(special_tokens) + 256


def new_bpe(special_tokens: Sequence[str] = SPECIAL_TOKENS) -> Tokenizer:
    """An untrained byte-level BPE with its pre-tokenizer and decoder set."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    min_frequency: int = 2,
    length: int | None = None,
) -> Tokenizer:
    """Train a byte-level BPE on ``texts`` (in the given order). ``vocab_size`` counts the special tokens and
    the 256 byte symbols; a corpus too small to learn that many merges gives a smaller vocabulary."""
    floor = min_vocab_size(special_tokens)
    if vocab_size < floor:
        raise ValueError(f"vocab_size={vocab_size} is below {floor} (special tokens + 256 bytes); raise it")
    tok = new_bpe(special_tokens)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=length)
    return tok


def save_hf_folder(
    tok: Tokenizer,
    folder: str,
    special_tokens: Sequence[str] = SPECIAL_TOKENS,
    model_max_length: int = 131072,
) -> str:
    """Write ``tokenizer.json``, ``tokenizer_config.json`` and ``special_tokens_map.json`` (the
    ``PreTrainedTokenizerFast`` layout) without importing transformers; returns the tokenizer.json path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, TOKENIZER_FILE)
    tok.save(path, pretty=False)
    extra = [t for t in special_tokens if t not in (EOS_TOKEN, PAD_TOKEN)]
    special_map = {"eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN, "additional_special_tokens": extra}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
        "add_prefix_space": False,
        **special_map,
    }
    for name, data in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
    return path


def load_tokenizer(folder_or_file: str) -> Tokenizer:
    """The tokenizer of an HF folder (or a ``tokenizer.json`` path)."""
    path = folder_or_file
    if os.path.isdir(path):
        path = os.path.join(path, TOKENIZER_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no tokenizer at {path!r}; train one with a `tokenizer_train` node")
    return Tokenizer.from_file(path)


def bytes_per_token(tok: Tokenizer, texts: Sequence[str]) -> float:
    """Compression on ``texts``: UTF-8 bytes per token (higher is better)."""
    if not texts:
        return 0.0
    n_bytes = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts)
    n_tok = sum(len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False))
    return n_bytes / max(1, n_tok)
