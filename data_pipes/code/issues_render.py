"""Issue and pull-request threads: the JSONL record schema (GitHub-export-like) and the text they render to.

One JSON object per line; see docs/CODE_SAMPLES.md for the full schema. Required: ``repo``, ``number``,
``type`` (``issue`` or ``pull_request``), ``title``. Optional: ``state``, ``user``, ``created_at``, ``body``,
``labels``, ``comments``, ``diff`` (pull requests), ``review_comments``, ``url``. Unknown keys are ignored,
so raw GitHub API exports with extra fields load; ``user`` may be a login or ``{"login": ...}`` and a label
a name or ``{"name": ...}``, as the GitHub API gives them.

Rendered text (blocks separated by one blank line; absent parts are left out)::

    Issue #12 in owner/repo: Title            (or: Pull request #12 in owner/repo: Title)
    State: closed. Labels: bug, docs.

    alice opened on 2024-01-02T03:04:05Z:
    <body>

    Diff:                                     (pull requests with a diff)
    <unified diff>

    bob commented on 2024-01-03T00:00:00Z:
    <body>

    carol reviewed src/x.py line 12 on 2024-01-04T00:00:00Z:
    <diff_hunk>
    <body>

Comments and review comments form one conversation after the diff, in ``created_at`` order when every one
has a date, else in input order (comments, then review comments). A diff longer than ``max_diff_chars`` is
cut at a line boundary and followed by ``[diff truncated: <n> characters omitted]``, as commit documents are.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _login(value: Any) -> Any:
    return value.get("login") if isinstance(value, dict) else value


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Comment(_Loose):
    user: str = "unknown"
    created_at: str = ""
    body: str = ""

    _user = field_validator("user", mode="before")(lambda v: "unknown" if v is None else _login(v))
    _body = field_validator("body", "created_at", mode="before")(lambda v: "" if v is None else v)


class ReviewComment(Comment):
    path: str = ""
    line: int | None = None
    diff_hunk: str = ""

    _hunk = field_validator("diff_hunk", "path", mode="before")(lambda v: "" if v is None else v)


class Thread(_Loose):
    repo: str = Field(min_length=1)
    number: int = Field(ge=0)
    type: Literal["issue", "pull_request"]
    title: str
    state: str = ""
    user: str = "unknown"
    created_at: str = ""
    body: str = ""
    labels: list[str] = Field(default_factory=list)
    comments: list[Comment] = Field(default_factory=list)
    diff: str = ""
    review_comments: list[ReviewComment] = Field(default_factory=list)
    url: str = ""

    _user = field_validator("user", mode="before")(lambda v: "unknown" if v is None else _login(v))
    _text = field_validator("state", "created_at", "body", "diff", "url", mode="before")(
        lambda v: "" if v is None else v
    )

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        if v is None:
            return []
        return [x.get("name") if isinstance(x, dict) else x for x in v] if isinstance(v, list) else v

    @field_validator("comments", "review_comments", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return [] if v is None else v


def cut_diff(diff: str, max_chars: int | None) -> tuple[str, bool]:
    """``diff`` cut at the last line boundary before ``max_chars``, with the truncation note."""
    if max_chars is None or len(diff) <= max_chars:
        return diff, False
    head = diff[:max_chars]
    head = head[: head.rfind("\n") + 1] if "\n" in head else ""
    return f"{head}[diff truncated: {len(diff) - len(head)} characters omitted]\n", True


def _block(header: str, *bodies: str) -> str:
    text = "\n".join(b.rstrip("\n") for b in bodies if b.strip())
    return f"{header}\n{text}" if text else header


def render_thread(thread: Thread, max_diff_chars: int | None = None) -> str:
    """The text of one issue or pull request thread (format in the module docstring)."""
    kind = "Issue" if thread.type == "issue" else "Pull request"
    status = [
        f"State: {thread.state}." if thread.state else "",
        f"Labels: {', '.join(thread.labels)}." if thread.labels else "",
    ]
    blocks = [
        f"{kind} #{thread.number} in {thread.repo}: {thread.title}"
        + ("\n" + " ".join(s for s in status if s) if any(status) else "")
    ]
    when = f" on {thread.created_at}" if thread.created_at else ""
    blocks.append(_block(f"{thread.user} opened{when}:", thread.body))
    if thread.diff:
        blocks.append(_block("Diff:", cut_diff(thread.diff, max_diff_chars)[0]))
    talk: list[Comment] = [*thread.comments, *thread.review_comments]
    if talk and all(c.created_at for c in talk):
        talk.sort(key=lambda c: c.created_at)
    for c in talk:
        when = f" on {c.created_at}" if c.created_at else ""
        if isinstance(c, ReviewComment):
            where = f" {c.path}" + (f" line {c.line}" if c.line is not None else "") if c.path else ""
            blocks.append(_block(f"{c.user} reviewed{where}{when}:", c.diff_hunk, c.body))
        else:
            blocks.append(_block(f"{c.user} commented{when}:", c.body))
    return "\n\n".join(blocks) + "\n"
