"""`fim`: document-level fill-in-the-middle (Bavarian et al. 2022), see data_pipes/code/fim.py.

Each document is, with probability ``fim_rate``, cut at two random character positions and rewritten in PSM
or SPM order (SPM with probability ``spm_rate``); the draws hash the node seed, ``seed`` and the document id,
so they do not depend on sharding. Adds the column ``fim`` (``psm``, ``spm`` or ``none``). Nothing is
dropped. ``formats`` limits FIM to rows whose ``meta.format`` is listed (default: code files); other rows
pass through as ``none``. A node that transforms nothing (no row of the ``formats``, as with the default
``["code"]`` on a ``files`` input) says so in its report and logs a warning. Context-level FIM (after packing) is ``data_pipes.code.fim_context``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import ClassVar

import polars as pl
from pydantic import Field

from data_pipes.code.fim import apply_fim
from data_pipes.io.shards import ShardResult, write_shard
from tasks.base import KindParams, RunContext, ShardTask
from tasks.doc_map import DocumentMapKind
from tasks.registry import register

log = logging.getLogger(__name__)


class FimParams(KindParams):
    fim_rate: float = Field(0.5, ge=0, le=1, description="share of documents transformed")
    spm_rate: float = Field(0.5, ge=0, le=1, description="share of transformed documents in SPM order")
    formats: list[str] | None = Field(
        default_factory=lambda: ["code"], description="meta.format values to transform (None: every row)"
    )
    seed: int = Field(0, description="added to the node seed")


@register
class Fim(DocumentMapKind):
    name: ClassVar[str] = "fim"
    Params = FimParams
    packages = ("polars",)
    description = "document-level fill-in-the-middle (PSM / SPM) on character spans"

    def run_shard(self, params: FimParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        frame = pl.read_parquet(task.payload["path"])
        kept, _ = self.process(frame, params, seed, task)
        counts = dict(Counter(kept.get_column("fim").to_list()))
        fmt = frame.get_column("meta").str.json_path_match("$.format").fill_null("(none)")
        formats = dict(Counter(fmt.to_list()))
        eligible = frame.height if params.formats is None else sum(formats.get(f, 0) for f in params.formats)
        extra = {"fim": counts, "formats": formats, "eligible": eligible}
        return write_shard(out_dir, task.index, kept, rows_in=frame.height, started=started, extra=extra)

    def process(
        self, frame: pl.DataFrame, params: FimParams, seed: int, task: ShardTask
    ) -> tuple[pl.DataFrame, pl.DataFrame]:  # type: ignore[override]
        if params.formats is None:
            eligible = [True] * frame.height
        else:
            fmt = frame.get_column("meta").str.json_path_match("$.format")
            eligible = fmt.is_in(params.formats).fill_null(False).to_list()
        texts, modes = [], []
        for text, doc_id, ok in zip(frame.get_column("text"), frame.get_column("id"), eligible, strict=True):
            sample = apply_fim(text or "", doc_id, seed + params.seed, params.fim_rate, params.spm_rate)
            texts.append(sample.text if ok else text)
            modes.append(sample.mode if ok else "none")
        kept = frame.with_columns(pl.Series("text", texts, pl.String), pl.Series("fim", modes, pl.String))
        return kept, frame.head(0).with_columns(pl.lit(None, pl.String).alias("reason"))

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        counts: Counter[str] = Counter()
        formats: Counter[str] = Counter()
        for r in results:
            counts.update(r.extra.get("fim", {}))
            formats.update(r.extra.get("formats", {}))
        eligible = sum(r.extra.get("eligible", 0) for r in results)
        note = noop_warning(ctx.params, sum(counts.values()), eligible, counts, formats)  # type: ignore[arg-type]
        if note:
            log.warning("node %r: %s", ctx.node_id, note)
        if counts:
            ctx.add_report(
                "FIM modes",
                table=[{"mode": m, "documents": n} for m, n in sorted(counts.items())],
                markdown=f"**Warning**: {note}" if note else None,
            )


def noop_warning(
    params: FimParams, rows: int, eligible: int, modes: Counter[str], formats: Counter[str]
) -> str | None:
    """Why a FIM node that transformed nothing did so, or None when it transformed something (or had no
    rows)."""
    if rows == 0 or modes.get("psm", 0) + modes.get("spm", 0) > 0 or params.fim_rate == 0:
        return None
    seen = ", ".join(f"{f!r}: {n}" for f, n in sorted(formats.items()))
    if eligible == 0:
        return (
            f"FIM transformed none of {rows} documents: formats {params.formats} matches no row's meta.format "
            f"(found {seen}); set `formats` to the ones wanted, or `formats: null` for every row"
        )
    return (
        f"FIM transformed none of {rows} documents ({eligible} of the formats {params.formats}): each was "
        f"left alone (draws above fim_rate {params.fim_rate}, or FIM sentinels already in the text)"
    )
