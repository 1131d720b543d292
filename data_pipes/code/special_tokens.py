"""The special tokens of the recipe, declared once: FIM, repository samples, chat, thinking and tool calls.

Every stage that writes a special token into text (FIM, repo-level samples, issue/PR rendering, chat
templates) and the tokenizer that must keep each one a single id import them from here, so the two never
disagree.

``SPECIAL_TOKENS`` is the ordered tuple the tokenizer adds (in this order, so ids are stable across runs);
new tokens are appended, never inserted, so existing ids do not move. ``TOKENS`` is the same set by role, as
a small frozen dataclass for readable call sites (``TOKENS.fim_prefix``).

Names follow the spelling most open code models use (``<|fim_prefix|>``, ``<|repo_name|>``, ``<|file_sep|>``);
the chat roles, ``<think>`` tags and the XML-like tool-call tags follow the GLM-4.5 report's template.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields


@dataclass(frozen=True)
class SpecialTokens:
    """The special tokens by role. Field order is the id order of ``SPECIAL_TOKENS``: append new fields
    last."""

    endoftext: str = "<|endoftext|>"
    # fill-in-the-middle (Bavarian et al. 2022): prefix, suffix and middle sentinels, and the padding token
    # that context-level FIM uses to keep a packed sequence at its length
    fim_prefix: str = "<|fim_prefix|>"
    fim_middle: str = "<|fim_middle|>"
    fim_suffix: str = "<|fim_suffix|>"
    fim_pad: str = "<|fim_pad|>"
    # repository-level samples: the repository name header, then one separator before each file's path
    repo_name: str = "<|repo_name|>"
    file_sep: str = "<|file_sep|>"
    # chat roles
    system: str = "<|system|>"
    user: str = "<|user|>"
    assistant: str = "<|assistant|>"
    observation: str = "<|observation|>"
    # reasoning
    think_start: str = "<think>"
    think_end: str = "</think>"
    # tool calls (XML-like, GLM-4.5)
    tool_call_start: str = "<tool_call>"
    tool_call_end: str = "</tool_call>"
    arg_key_start: str = "<arg_key>"
    arg_key_end: str = "</arg_key>"
    arg_value_start: str = "<arg_value>"
    arg_value_end: str = "</arg_value>"
    tool_response_start: str = "<tool_response>"
    tool_response_end: str = "</tool_response>"

    def names(self) -> tuple[str, ...]:
        """Field names in id order."""
        return tuple(f.name for f in fields(self))


TOKENS = SpecialTokens()
SPECIAL_TOKENS: tuple[str, ...] = astuple(TOKENS)
FIM_SENTINELS: tuple[str, ...] = (TOKENS.fim_prefix, TOKENS.fim_middle, TOKENS.fim_suffix, TOKENS.fim_pad)

assert len(set(SPECIAL_TOKENS)) == len(SPECIAL_TOKENS), "special tokens must be distinct"


def token_ids(vocab: dict[str, int]) -> dict[str, int]:
    """Map each role name to its id in a tokenizer ``vocab``; names the tokens that are missing."""
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise KeyError(
            f"tokenizer lacks special tokens {missing}; add data_pipes.code.special_tokens.SPECIAL_TOKENS "
            "as special tokens when training it"
        )
    return {name: vocab[tok] for name, tok in zip(TOKENS.names(), SPECIAL_TOKENS, strict=True)}
