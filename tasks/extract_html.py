"""`extract_html`: raw-HTML documents to main text (resiliparse by default, trafilatura selectable).

One output shard per input shard. ``text`` becomes the extracted main text; ``meta`` gains ``title``,
``lang_hint`` (from ``<html lang>`` / content-language), ``extractor`` and ``extract_mode`` (and
``code_blocks`` in code mode); ``url`` and every other column pass through. ``mode: code`` keeps ``<pre>``
blocks verbatim (see ``data_pipes.web.extract_code``); pages without ``<pre>`` take the plain text path.

Drops: ``extract_empty`` (no main text, or fewer than ``min_chars``), ``extract_too_large`` (raw HTML above
``max_html_mb``). Quarantine: ``extract_failed: <why>`` (binary junk, a parser error). Never raises for bad
input.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from data_pipes.io.records import dump_meta
from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.web.extract import ExtractionError, TooLarge, extract
from tasks.base import KindParams, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.registry import register


class ExtractParams(KindParams):
    engine: Literal["resiliparse", "trafilatura"] = Field(
        "resiliparse", description="main-text extractor (resiliparse: default by measurement, see benchmarks)"
    )
    mode: Literal["text", "code"] = Field(
        "text", description="code: keep <pre> blocks verbatim, fenced by ```"
    )
    min_chars: int = Field(
        1, ge=1, description="extracted text shorter than this is dropped as extract_empty"
    )
    max_html_mb: float = Field(
        50.0, gt=0, description="raw HTML above this size is dropped as extract_too_large"
    )


def _meta(raw: str | None) -> dict:
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {"meta_raw": raw}
    return value if isinstance(value, dict) else {"meta_raw": value}


@register
class ExtractHtml(DocumentMapKind):
    name: ClassVar[str] = "extract_html"
    Params = ExtractParams
    packages = ("resiliparse", "trafilatura", "lxml", "polars")
    description = "main-text extraction from raw HTML (text or code-preserving mode), title and language hint"

    def run_shard(self, params: ExtractParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        kept, dropped, quarantined = self.split(frame, params)
        return write_shard(
            out_dir,
            task.index,
            kept,
            rows_in=frame.height,
            dropped=dropped,
            quarantined=quarantined,
            started=started,
        )

    def split(
        self, frame: pl.DataFrame, params: ExtractParams
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """(kept rows with extracted text, dropped rows with ``reason``, quarantined rows with ``error``)."""
        max_bytes = int(params.max_html_mb * 1024 * 1024)
        outcome: list[str] = []  # "kept", a drop reason, or "!<error>" for quarantine
        texts: list[str | None] = []
        metas: list[str | None] = []
        for html, url, raw_meta in zip(frame["text"], frame["url"], frame["meta"], strict=True):
            text, meta = html, raw_meta
            try:
                result = extract(
                    html or "", engine=params.engine, mode=params.mode, url=url or "", max_bytes=max_bytes
                )
            except TooLarge:
                outcome.append("extract_too_large")
            except ExtractionError as exc:
                outcome.append(f"!extract_failed: {exc}")
            else:
                text = result.text
                extra = {
                    "title": result.title,
                    "lang_hint": result.lang_hint,
                    "extractor": params.engine,
                    "extract_mode": params.mode,
                }
                if params.mode == "code":
                    extra["code_blocks"] = result.code_blocks
                meta = dump_meta({**_meta(raw_meta), **extra})
                outcome.append("kept" if len(text.strip()) >= params.min_chars else "extract_empty")
            texts.append(text)
            metas.append(meta)
        status = pl.Series("_outcome", outcome, dtype=pl.String)
        done = frame.with_columns(
            pl.Series("text", texts, dtype=pl.String), pl.Series("meta", metas, dtype=pl.String), status
        )
        is_bad = pl.col("_outcome").str.starts_with("!")
        kept = done.filter(pl.col("_outcome") == "kept").drop("_outcome")
        dropped = done.filter((pl.col("_outcome") != "kept") & ~is_bad).rename({"_outcome": "reason"})
        bad = done.filter(is_bad).select(
            "id", "source", "url", pl.col("_outcome").str.slice(1).alias("error")
        )
        return kept, dropped, bad
