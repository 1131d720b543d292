"""Sentence splitting as datatrove's English `split_into_sentences` does it (spaCy's blank English tokenizer
plus its rule-based `sentencizer`), for C4's `split_paragraph=False` mode.

Tokens are our spaCy-style word tokens (`word_tokenizer.split_chunk` on each whitespace-free chunk) plus
spaCy's whitespace tokens: the whitespace between two chunks is no token when it is exactly one space, else a
token of its own (less a leading space, which belongs to the token before). A sentence starts at the first token
that is neither punctuation nor a sentence terminal after a sentence terminal (a whole token, one character);
whitespace tokens are not punctuation, so a newline after a full stop starts the next sentence. Like datatrove,
the parts run from the end of one sentence's last token to the end of the next one's, the last part to the end
of the text, so they cover the text exactly. Departure: the terminal set is Unicode's `Sentence_Terminal`, as in
`sentences.count_sentences` (spaCy's list has a few fewer characters, all outside Latin, Greek and CJK).
"""

from __future__ import annotations

import re

import regex

from data_pipes.web.word_tokenizer import split_chunk

_CHUNK = re.compile(r"\S+")  # Python's whitespace, as spaCy's tokenizer (str.isspace) sees it
_TERMINAL = regex.compile(r"^\p{Sentence_Terminal}$")
_PUNCT = regex.compile(r"^\p{P}+$")


def _tokens(text: str) -> list[tuple[int, int, bool, bool]]:
    """(start, end, is_punct, is_terminal) of each token, whitespace tokens included."""
    out: list[tuple[int, int, bool, bool]] = []
    prev_end = 0
    for m in _CHUNK.finditer(text):
        gap_start = prev_end + 1 if text.startswith(" ", prev_end) else prev_end
        if gap_start < m.start():
            out.append((gap_start, m.start(), False, False))
        pos = m.start()
        for tok in split_chunk(m.group()):
            end = pos + len(tok)
            assert text[pos:end] == tok, "tokens must spell their chunk"  # internal invariant
            out.append((pos, end, bool(_PUNCT.match(tok)), bool(_TERMINAL.match(tok))))
            pos = end
        prev_end = m.end()
    gap_start = prev_end + 1 if text.startswith(" ", prev_end) else prev_end
    if gap_start < len(text):
        out.append((gap_start, len(text), False, False))
    return out


def split_sentences(text: str) -> list[str]:
    """The text cut into sentences (not stripped; they join back to the text). A text without tokens is one
    part."""
    tokens = _tokens(text)
    ends: list[int] = []  # end offset of each sentence's last token, but the last sentence's
    seen_terminal = False
    for i, (_start, _end, is_punct, is_terminal) in enumerate(tokens):
        if seen_terminal and not is_punct and not is_terminal:
            ends.append(tokens[i - 1][1])
            seen_terminal = False
        elif is_terminal:
            seen_terminal = True
    cuts = [0, *ends, len(text)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
