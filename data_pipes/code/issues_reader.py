"""Read issue / pull-request JSONL files (plain or gzipped) into document records.

Each line is validated against :class:`data_pipes.code.issues_render.Thread` and rendered. A line that is
not UTF-8, not JSON, not an object, or fails the schema becomes a quarantined record (error classes
``issues_undecodable``, ``issues_bad_json``, ``issues_bad_record``) naming the file and line; a file that
cannot be read past some point gets one quarantined record for the rest (``read_error_class``). Blank lines
are skipped. Ids hash the source, ``<repo>#<number>`` and the type, so a thread keeps its id wherever it is
read from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from pydantic import ValidationError

from data_pipes.code.issues_render import Thread, cut_diff, render_thread
from data_pipes.io.opening import open_binary, read_error_class
from data_pipes.io.records import good_record, make_id, quarantined_record


def thread_url(thread: Thread) -> str:
    if thread.url:
        return thread.url
    return f"repo://{thread.repo}/{'issues' if thread.type == 'issue' else 'pull'}/{thread.number}"


def thread_record(thread: Thread, source: str, max_diff_chars: int | None) -> dict[str, str]:
    """The document record of one valid thread."""
    meta = {
        "format": thread.type,
        "repo": thread.repo,
        "number": thread.number,
        "state": thread.state,
        "user": thread.user,
        "created_at": thread.created_at,
        "labels": thread.labels,
        "n_comments": len(thread.comments),
        "n_review_comments": len(thread.review_comments),
        "has_diff": bool(thread.diff),
        "diff_truncated": cut_diff(thread.diff, max_diff_chars)[1],
    }
    rid = make_id(source, f"{thread.repo}#{thread.number}", thread.type)
    return good_record(
        rid=rid, text=render_thread(thread, max_diff_chars), source=source, url=thread_url(thread), meta=meta
    )


def _summary(exc: ValidationError) -> str:
    errs = exc.errors()
    first = errs[0]
    where = ".".join(str(p) for p in first["loc"]) or "record"
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def read_threads(
    path: str, source: str, id_path: str, max_diff_chars: int | None = None
) -> Iterator[dict[str, str]]:
    """Records (good or quarantined) of every non-blank line of the JSONL file ``path``."""
    n = 0

    def bad(error_class: str, message: str) -> dict[str, str]:
        return quarantined_record(
            rid=make_id(source, id_path, n),
            source=source,
            url=f"{path}#L{n}",
            error=f"{error_class}: {message} (file {path}, line {n})",
        )

    try:
        with open_binary(path) as fh:
            for n, raw in enumerate(fh, start=1):  # noqa: B007 (n is read by bad())
                if not raw.strip():
                    continue
                try:
                    data = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    yield bad("issues_undecodable", f"not UTF-8 at byte {exc.start}")
                    continue
                except json.JSONDecodeError as exc:
                    yield bad("issues_bad_json", exc.msg)
                    continue
                if not isinstance(data, dict):
                    yield bad("issues_bad_record", f"a JSON {type(data).__name__}, not an object")
                    continue
                try:
                    thread = Thread.model_validate(data)
                except ValidationError as exc:
                    yield bad("issues_bad_record", _summary(exc))
                    continue
                yield thread_record(thread, source, max_diff_chars)
    except (OSError, EOFError) as exc:
        n += 1
        yield bad(read_error_class(exc), f"{type(exc).__name__}: {exc}; the rest of the file is unread")
