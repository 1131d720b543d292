"""Word tokenisers per script, each returning the `(doc, tok)` frame the heuristics count words on.

- space-delimited scripts: `word_tokenizer.tokenize` (spaCy-style affix splitting on whitespace chunks);
  English keeps datatrove's exact emulation, other languages the profile without English's special cases,
  keeping hyphenated words whole ("compound") where spaCy's tokenizer for the language does (German,
  Spanish, Dutch, Nordic ...), splitting French / Italian / Catalan elisions ("elision"), and leaving a
  final full stop on a non-Arabic word in Arabic and Persian ("arabic"), splitting dotted numbers and every
  hyphen in Polish ("polish");
- Chinese: `rjieba` (jieba-rs: jieba's dictionary and algorithm in Rust, wheels on PyPI), ASCII tokens re-cut
  at punctuation as jieba does;
- Japanese: `sudachipy` with `sudachidict_core`, split mode A (what spaCy's Japanese tokenizer, and so
  datatrove and FineWeb-2, use);
- Thai: `pythainlp`'s `newmm` (dictionary shipped in the wheel; datatrove's Thai tokenizer).
The choice was measured (speed, and agreement with the tokenizer FineWeb-2 tuned its figures on) in
`benchmarks/web_heuristics.py --per-language`. Segmenters are imported on first use; a missing package is an
error naming it. Like datatrove, tokens are stripped and whitespace-only tokens dropped."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

import polars as pl

from data_pipes.web.word_tokenizer import PROFILES, tokenize

SEGMENTERS = (*PROFILES, "zh", "ja", "th")
UNSPACED = ("zh", "ja", "th")  # segmenters of scripts written without spaces between words
_PACKAGES = {"zh": "rjieba", "ja": "sudachipy and sudachidict-core", "th": "pythainlp"}
_SUDACHI_MAX_BYTES = 40_000  # Sudachi refuses inputs over 49,149 bytes


def _missing(kind: str, exc: ImportError) -> ImportError:
    return ImportError(
        f"the {kind!r} word segmenter needs {_PACKAGES[kind]}: pip install "
        f"{_PACKAGES[kind].replace(' and ', ' ')} (an arcflow dependency), or set the language's "
        f"tokenizer to 'plain' in the node's `languages` params ({exc})"
    )


# jieba (datatrove's Chinese tokenizer) cuts ASCII tokens such as "apt-get" or "sources.list" at punctuation,
# keeping dotted numbers ("4.2") and runs of one mark ("--") whole; jieba-rs keeps them whole. Re-cutting them
# so raises the token-boundary F1 against jieba from 0.952 to 0.981 on the handbook's Chinese pages
_ASCII_PARTS = re.compile(r"[0-9]+(?:\.[0-9]+)+|[A-Za-z0-9]+|([^A-Za-z0-9])\1*")


@lru_cache(maxsize=1)
def _zh() -> Callable[[str], list[str]]:
    try:
        import rjieba
    except ImportError as exc:
        raise _missing("zh", exc) from exc

    def cut(text: str) -> list[str]:
        out: list[str] = []
        for tok in rjieba.cut(text):
            if tok.isascii() and not tok.isalnum() and not tok.isspace():
                out.extend(m.group() for m in _ASCII_PARTS.finditer(tok.strip()))
            else:
                out.append(tok)
        return out

    return cut


@lru_cache(maxsize=1)
def _ja() -> Callable[[str], list[str]]:
    try:
        from sudachipy import Dictionary, SplitMode
    except ImportError as exc:
        raise _missing("ja", exc) from exc
    tokenizer = Dictionary(dict="core").tokenizer(mode=SplitMode.A)

    def cut(text: str) -> list[str]:
        out: list[str] = []
        for piece in _byte_chunks(text, _SUDACHI_MAX_BYTES):
            out.extend(m.surface() for m in tokenizer.tokenize(piece))
        return out

    return cut


@lru_cache(maxsize=1)
def _th() -> Callable[[str], list[str]]:
    try:
        from pythainlp.tokenize import word_tokenize
    except ImportError as exc:
        raise _missing("th", exc) from exc
    return lambda text: word_tokenize(text, engine="newmm", keep_whitespace=False)


_CUTTERS: dict[str, Callable[[], Callable[[str], list[str]]]] = {"zh": _zh, "ja": _ja, "th": _th}


def _byte_chunks(text: str, limit: int) -> list[str]:
    """Cut a text at line ends (else anywhere) into pieces of at most `limit` UTF-8 bytes."""
    if len(text) * 4 <= limit or len(text.encode()) <= limit:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        while len(line.encode()) > limit:  # a single huge line: cut by characters
            head = line[: limit // 4]
            pieces.append(head)
            line = line[len(head) :]
        n = len(line.encode())
        if size + n > limit and current:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        pieces.append("".join(current))
    return pieces


def segment(texts: pl.Series, kind: str) -> pl.DataFrame:
    """Word tokens of each text with the segmenter `kind` (one of `SEGMENTERS`): `doc` (u32), `tok`."""
    if kind in PROFILES:
        return tokenize(texts, kind)
    if kind not in _CUTTERS:
        raise ValueError(f"unknown word segmenter {kind!r}; known: {', '.join(SEGMENTERS)}")
    cut = _CUTTERS[kind]()
    tokens = [[t.strip() for t in cut(text)] if text else [] for text in texts.cast(pl.String).to_list()]
    return (
        pl.DataFrame({"tok": pl.Series(tokens, dtype=pl.List(pl.String))})
        .with_row_index("doc")
        .explode("tok")
        .filter(pl.col("tok").str.len_chars() > 0)
    )
