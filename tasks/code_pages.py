"""`code_pages`: find the code-related pages among raw HTML documents and re-extract them keeping code formatting.

A page is code-related when its HTML shows it (at least ``min_pre_blocks`` ``<pre>`` blocks, or at least
``min_code_tags`` ``<code>`` elements or syntax-highlighting classes such as ``highlight``, ``sourceCode``,
``language-*``), or when an upstream classifier's score column reaches ``min_score``. The tag counts are computed
over the whole shard with polars. Code-related pages are extracted in code mode (``<pre>`` blocks kept verbatim,
fenced); the others are dropped as ``code_pages_not_code``, so this node's output is the code branch's web input
while the main web branch reads the same raw pages independently.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import KindParams, ShardTask
from tasks.extract_html import ExtractHtml, ExtractParams
from tasks.param_error import ParamError
from tasks.registry import register

HIGHLIGHT = r'(?i)class="[^"]*(highlight|sourcecode|language-|brush:|prettyprint|codehilite)'


class CodePagesParams(KindParams):
    min_pre_blocks: int = Field(1, ge=0, description="<pre> blocks that make a page code-related (0: off)")
    min_code_tags: int = Field(5, ge=0, description="<code> elements / highlight classes that do (0: off)")
    score_column: str | None = Field(None, description="a classifier's score column, e.g. from quality_score")
    min_score: float = Field(0.5, ge=0, le=1, description="score at or above which a page is code-related")
    engine: Literal["resiliparse", "trafilatura"] = "resiliparse"
    min_chars: int = Field(200, ge=1, description="shorter extracted pages are dropped as extract_empty")


def code_signals(html: pl.Series) -> pl.DataFrame:
    """Per page: number of <pre> blocks, of <code> elements and of syntax-highlighting classes."""
    lower = html.fill_null("").str.to_lowercase()
    return pl.DataFrame(
        {
            "pre": lower.str.count_matches("<pre[\\s>]"),
            "code": lower.str.count_matches("<code[\\s>]"),
            "highlight": html.fill_null("").str.count_matches(HIGHLIGHT),
        }
    )


@register
class CodePages(ExtractHtml):
    name: ClassVar[str] = "code_pages"
    Params = CodePagesParams  # type: ignore[assignment]
    description = (
        "code-related web pages (by HTML tags or a classifier), re-extracted keeping code formatting"
    )

    def run_shard(self, params: CodePagesParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        sig = code_signals(frame.get_column("text"))
        is_code = pl.repeat(False, frame.height, dtype=pl.Boolean, eager=True)
        if params.min_pre_blocks:
            is_code = is_code | (sig["pre"] >= params.min_pre_blocks)
        if params.min_code_tags:
            is_code = is_code | ((sig["code"] + sig["highlight"]) >= params.min_code_tags)
        if params.score_column:
            if params.score_column not in frame.columns:
                raise ParamError(
                    "",
                    ("score_column",),
                    f"code_pages: score column {params.score_column!r} is not in the input",
                    f"name one of its columns: {', '.join(frame.columns)}",
                )
            is_code = is_code | (frame.get_column(params.score_column).fill_null(0.0) >= params.min_score)
        candidates = frame.filter(is_code)
        others = frame.filter(~is_code).with_columns(pl.lit("code_pages_not_code").alias("reason"))
        extract = ExtractParams(engine=params.engine, mode="code", min_chars=params.min_chars)
        kept, dropped, bad = self.split(candidates, extract)
        dropped = pl.concat([others, dropped], how="diagonal_relaxed")
        return write_shard(
            out_dir, task.index, kept, rows_in=frame.height, dropped=dropped, quarantined=bad, started=started
        )
