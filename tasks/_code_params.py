"""Params and helpers shared by the code source kinds (``code_repos``, ``git_history``); not a kind."""

from __future__ import annotations

import json
from collections import Counter
from typing import Literal

import polars as pl
from pydantic import Field

from data_pipes.code.records import CodeOptions
from data_pipes.io.shards import ShardResult
from tasks.base import KindParams, RunContext


class CodeFileParams(KindParams):
    """How code files are selected and read (docs/CODE_CONTRACT.md)."""

    include: list[str] = Field(
        default_factory=list, description="globs of paths inside a repo to read (all if empty)"
    )
    exclude: list[str] = Field(default_factory=list, description="globs of paths inside a repo to skip")
    max_file_mb: float = Field(1.0, gt=0, description="larger files are dropped as code_too_large")
    languages: dict[str, str] | None = Field(
        None,
        description="extension (no dot) -> language; default: data_pipes.code.languages.DEFAULT_LANGUAGES",
    )
    other_files: Literal["drop", "keep"] = Field(
        "drop",
        description="files of unknown language: drop (code_unknown_language) or keep as language 'other'",
    )
    decode: Literal["utf8", "detect"] = Field(
        "utf8", description="utf8: other bytes are quarantined (code_undecodable); detect: guess the encoding"
    )
    source: str | None = Field(None, description="value of the `source` column (default: the node id)")


def code_options(params: CodeFileParams, source: str) -> CodeOptions:
    languages = {k.lower().lstrip("."): v for k, v in params.languages.items()} if params.languages else None
    return CodeOptions(
        source=source,
        max_bytes=int(params.max_file_mb * 1024 * 1024),
        languages=languages,
        other_files=params.other_files,
        decode=params.decode,
        include=tuple(params.include),
        exclude=tuple(params.exclude),
    )


def language_counts(kept: pl.DataFrame) -> dict[str, int]:
    """Kept documents per ``meta.language`` (commits count as ``commit``)."""
    counts: Counter[str] = Counter()
    for meta in kept.get_column("meta").to_list():
        m = json.loads(meta)
        counts["commit" if m.get("format") == "commit" else m.get("language", "")] += 1
    return dict(sorted(counts.items()))


def source_report(ctx: RunContext, results: list[ShardResult]) -> None:
    """One table: kept documents per language, then dropped per reason and quarantined per error class."""
    kept: Counter[str] = Counter()
    for r in results:
        kept.update(r.extra.get("languages", {}))
    rows = [{"what": "kept", "key": k, "count": n} for k, n in sorted(kept.items())]
    for what, attr in (("dropped", "drop_reasons"), ("quarantined", "errors")):
        total: Counter[str] = Counter()
        for r in results:
            total.update(getattr(r, attr))
        rows += [{"what": what, "key": k, "count": n} for k, n in sorted(total.items())]
    ctx.add_report("code files", table=rows)
