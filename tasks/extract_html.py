"""`extract_html`: raw-HTML documents to main text (resiliparse by default, trafilatura selectable).

One output shard per input shard. ``text`` becomes the extracted text; ``url`` and every other column pass
through. ``mode: code`` keeps ``<pre>`` blocks verbatim (see ``data_pipes.web.extract_code``); pages without
``<pre>`` take the plain text path.

Nothing is lost silently (see ``data_pipes.web.extract``): a page whose main-content pass keeps less than
``min_main_share`` of its visible text falls back to full-text mode (``fallback: full_text``, the default), or
to trafilatura and then full text (``fallback: trafilatura``); ``fallback: none`` turns this off.

``meta`` keeps every key of the input's meta and gains: ``extractor`` (the pass whose text the row holds:
``resiliparse``, ``trafilatura`` or ``resiliparse_full_text``), ``extract_mode``, ``code_blocks`` (code mode),
``main_share`` (main-pass / visible characters, when it was measured), ``html_lang`` (the language the page
declares: ``<html lang>`` / content-language) and ``title``. The source's ``lang_hint`` and ``title`` win over
the page's: they are only filled in (``lang_hint`` from ``html_lang``) when the input has none; the
extraction keys describe the text the row now holds, so they replace an earlier extraction's.

Drops: ``extract_empty`` (no text, or fewer than ``min_chars``), ``extract_too_large`` (raw HTML above
``max_html_mb``); a dropped row holds its input HTML in ``text``, so every drop can be inspected. Quarantine:
``extract_failed: <why>`` (binary junk, a parser error). Never raises for bad input.
"""

from __future__ import annotations

import json
import time
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field

from data_pipes.io.records import dump_meta
from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.web.extract import MIN_MAIN_SHARE, Extraction, ExtractionError, TooLarge, extract
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
    fallback: Literal["full_text", "trafilatura", "none"] = Field(
        "full_text",
        description="when the main-content pass keeps too little: resiliparse full text, trafilatura (then "
        "full text), or none",
    )
    min_main_share: float = Field(
        MIN_MAIN_SHARE,
        ge=0,
        le=1,
        description="fall back when the main text is below this share of the visible text (0.1 by measurement)",
    )


def _meta(raw: str | None) -> dict:
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {"meta_raw": raw}
    return value if isinstance(value, dict) else {"meta_raw": value}


def merged_meta(raw: str | None, result: Extraction, mode: str) -> str:
    """The input's meta plus what the extraction found (see the module docstring for which side wins)."""
    meta = _meta(raw)
    for key, value in (("title", result.title), ("lang_hint", result.lang_hint)):
        if not meta.get(key):
            meta[key] = value
    meta["html_lang"] = result.lang_hint
    meta["extractor"] = result.extractor
    meta["extract_mode"] = mode
    if mode == "code":
        meta["code_blocks"] = result.code_blocks
    else:
        meta.pop("code_blocks", None)
    if result.main_share is not None:
        meta["main_share"] = round(result.main_share, 4)
    else:
        meta.pop("main_share", None)
    return dump_meta(meta)


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
            text, meta = html, raw_meta  # a dropped row keeps its input HTML
            try:
                result = extract(
                    html or "",
                    engine=params.engine,
                    mode=params.mode,
                    url=url or "",
                    max_bytes=max_bytes,
                    fallback=params.fallback,
                    min_main_share=params.min_main_share,
                )
            except TooLarge:
                outcome.append("extract_too_large")
            except ExtractionError as exc:
                outcome.append(f"!extract_failed: {exc}")
            else:
                meta = merged_meta(raw_meta, result, params.mode)
                if len(result.text.strip()) >= params.min_chars:
                    text = result.text
                    outcome.append("kept")
                else:
                    outcome.append("extract_empty")
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
