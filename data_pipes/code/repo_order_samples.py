"""Repository-level samples: a repository's files in dependency order, each under a path header.

Format of one sample (``TOKENS`` from :mod:`data_pipes.code.special_tokens`)::

    <|repo_name|>{repo}\\n
    <|file_sep|>{path}\\n{file text}[\\n]
    <|file_sep|>{path}\\n{file text}[\\n]
    ...
    <|file_sep|>{commit document text}[\\n]        (commits: append, in history order)

A newline is added after a file (or commit) text that does not end with one, so the next header starts a
line. Files come in :func:`data_pipes.code.repo_order.dependency_order`; commits (whose text starts with
``commit <sha>``, docs/CODE_CONTRACT.md) follow all files, in their ``meta.position`` order.

Long repositories: when the sample would exceed ``max_chars``, it is cut into consecutive *parts* at file
(or commit) boundaries; every part starts with the ``<|repo_name|>`` header again. A single file longer than
``max_chars`` makes a part of its own and is not cut (the packer splits long documents anyway). Parts are
numbered from 0 (``meta.part``; ``meta.n_parts`` is their count). Given the import graph, the cuts fall where
they separate the fewest imports and a part starts with copies of the small modules it imports from earlier
parts (:mod:`data_pipes.code.repo_split`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from data_pipes.code.repo_split import cut_points, positions, repeats
from data_pipes.code.special_tokens import TOKENS


@dataclass(frozen=True)
class Member:
    """One input row that goes into a repository sample: a file (``path`` set) or a commit."""

    id: str
    text: str
    path: str = ""
    commit: str = ""


@dataclass
class Part:
    """One output sample: its text and the members it holds, in order."""

    text: str
    members: list[Member] = field(default_factory=list)
    repeated: list[Member] = field(default_factory=list)  # small modules of earlier parts, copied in front


def repo_header(repo: str) -> str:
    return f"{TOKENS.repo_name}{repo}\n"


def member_block(member: Member) -> str:
    """One member's block: ``<|file_sep|>path\\ntext`` for a file, ``<|file_sep|>text`` for a commit."""
    body = member.text if member.text.endswith("\n") or not member.text else member.text + "\n"
    return f"{TOKENS.file_sep}{member.path}\n{body}" if member.path else f"{TOKENS.file_sep}{body}"


def render_parts(
    repo: str,
    members: Sequence[Member],
    max_chars: int | None = None,
    deps: Mapping[str, set[str]] | None = None,
    repeat_max_chars: int = 0,
) -> list[Part]:
    """The repository sample(s) of ``members`` (already in order), cut at member boundaries so that each part
    stays within ``max_chars`` where one member alone allows it. With ``deps`` (``{path: imported paths}``)
    the cuts follow the dependency order and small imported modules are repeated at the start of a later
    part (:mod:`data_pipes.code.repo_split`; a tenth of ``max_chars`` is kept for them)."""
    header = repo_header(repo)
    blocks = [member_block(m) for m in members]
    sizes = [len(b) for b in blocks]
    pos_deps = positions([m.path for m in members], deps or {})
    budget = None if max_chars is None else max(1, max_chars - len(header))
    reserve = 0
    if budget is not None and sum(sizes) > budget and repeat_max_chars > 0:
        reserve = budget // 10
    starts = cut_points(sizes, None if budget is None else max(1, budget - reserve), pos_deps)
    again = repeats(starts, len(members), sizes, pos_deps, repeat_max_chars, reserve)
    bounds = [*starts, len(members)]
    parts = []
    for k in range(len(starts)):
        lo, hi = bounds[k], bounds[k + 1]
        front = [members[d] for d in again[k]]
        text = header + "".join(blocks[d] for d in again[k]) + "".join(blocks[lo:hi])
        parts.append(Part(text, list(members[lo:hi]), front))
    return parts


def parse_sample(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Inverse of :func:`render_parts` for files, for tests and inspection: ``(repo, [(path, text), ...])``;
    texts keep the newline the format may have added. Commit blocks come back with an empty path."""
    if not text.startswith(TOKENS.repo_name):
        raise ValueError(f"not a repository sample: {text[:60]!r}")
    head, _, rest = text[len(TOKENS.repo_name) :].partition("\n")
    out = []
    for block in rest.split(TOKENS.file_sep)[1:]:
        first, _, body = block.partition("\n")
        out.append(("", block) if first.startswith("commit ") else (first, body))
    return head, out
