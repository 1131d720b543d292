"""`pack`: tokenize documents and pack them best-fit decreasing into fixed-length training rows.

Inputs: exactly one tokenizer node and one or more document nodes. Three phases:

1. ``ctx.map`` per input shard: (document-level FIM,) tokenize with ``encode_batch_fast``, append
   end-of-text, draw each document's appearance count (``epochs`` column x the input's weight, see
   ``data_pipes.tokens.mix``) and write ``_work`` files; finished shards are skipped on a rerun.
2. ``ctx.map`` per plan group: best-fit-decreasing packing of the group's items (documents longer than
   ``seq_len`` cut into chunks first) and a seeded shuffle of its rows; then per output shard, the plan cut
   from the groups' rows. A node up to ``plan_group_tokens`` tokens is one group: one global packing
   (``data_pipes.tokens.plan``). ``method: concat_chunk`` packs the other way, for comparison: the copies end to
   end in a seeded order, cut every ``seq_len`` tokens (``data_pipes.tokens.concat_chunk``).
3. ``ctx.run_shards``: each shard writes a contiguous slice of the shuffled rows (docs/PACKED_TOKENS.md), with
   context-level FIM per row when asked.

Accounting is in documents (``write_shard(kept_in=...)``): ``in`` = input documents, ``kept`` = documents
packed (once, however many times they repeat; counted by the shard holding the document's first row),
``dropped`` = documents with no tokens (``pack_empty``) or a repeat count of 0 (``pack_epochs_zero``), all
reported by shard 0; ``out`` = sequences.
"""

from __future__ import annotations

import time
from typing import ClassVar, Literal

import numpy as np
import polars as pl
from pydantic import Field

from data_pipes.io.shards import ShardResult, write_shard
from data_pipes.tokens.bpe_train import EOS_TOKEN, PAD_TOKEN
from data_pipes.tokens.pack_rows import ContextFim, build_rows
from data_pipes.tokens.plan import build_plan, dropped_paths, plan_path
from data_pipes.tokens.tokenize import BATCH_DOCS
from data_pipes.tokens.work import TokenizeJob, cached_tokenizer, tokenize_shard, work_paths
from tasks.base import DataType, InputRef, Kind, KindParams, RunContext, ShardTask
from tasks.registry import register
from tasks.tokenizer_train import tokenizer_json

MAX_SHARD_TOKENS = (1 << 31) - 1  # list<int32> offsets of one shard's input_ids


class FimParams(KindParams):
    mode: Literal["none", "document", "context"] = Field(
        "none", description="document: character-level FIM before tokenization; context: per packed segment"
    )
    rate: float = Field(0.5, ge=0, le=1, description="share of documents (segments) transformed")
    spm_rate: float = Field(0.5, ge=0, le=1, description="share of transformed ones in SPM order")


class PackParams(KindParams):
    seq_len: int = Field(
        4096, ge=64, description="tokens per row: 4096 pre-training, 32768 / 131072 mid-training"
    )
    method: Literal["bfd", "concat_chunk"] = Field(
        "bfd",
        description="bfd: best-fit decreasing, only documents longer than seq_len are cut; concat_chunk: the "
        "documents end to end in a seeded order, cut every seq_len tokens (the baseline BFD is measured against)",
    )
    weights: dict[str, float] = Field(
        default_factory=dict, description="input node -> appearance multiplier (default 1.0)"
    )
    append_eos: bool = Field(True, description="end every document with <|endoftext|>")
    fim: FimParams = Field(default_factory=FimParams)
    seed: int = Field(0, description="added to the node seed (repeat draws, shuffle, FIM)")
    rows_per_shard: int | None = Field(None, ge=1, description="rows per output shard; default ~32M tokens")
    batch_docs: int = Field(BATCH_DOCS, ge=1, description="documents per encode_batch call")
    plan_group_tokens: int = Field(
        1 << 31,
        ge=1,
        description="tokens per plan group: larger nodes are packed in groups of input shards, in parallel, "
        "each holding a share of every input (fill stays within ~0.01% of one global packing)",
    )


@register
class Pack(Kind):
    name: ClassVar[str] = "pack"
    Params = PackParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.TOKENIZER, DataType.DOCUMENTS)
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {
        DataType.TOKENIZER: (1, 1),
        DataType.DOCUMENTS: (1, None),
    }
    output_type: ClassVar[DataType] = DataType.PACKED_TOKENS
    packages = ("tokenizers", "numpy", "polars", "pyarrow")
    description = "tokenize and pack best-fit decreasing into seq_len rows with document boundaries"
    phases: ClassVar[tuple[str, ...]] = ("tokenize", "plan", "write")

    def check_inputs(self, params: PackParams, inputs: list[str]) -> list[tuple[tuple[str | int, ...], str]]:  # type: ignore[override]
        return [
            (("weights", name), f"{name!r} is not an input of this node; its inputs are {inputs}")
            for name in params.weights
            if name not in inputs
        ]

    def check_params(self, params: PackParams) -> list[tuple[tuple[str | int, ...], str]]:  # type: ignore[override]
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for name, w in params.weights.items():
            if w < 0:
                problems.append((("weights", name), f"weight {w} is negative; use 0 to leave an input out"))
        if params.rows_per_shard is not None and params.rows_per_shard * params.seq_len > MAX_SHARD_TOKENS:
            problems.append((("rows_per_shard",), "rows_per_shard x seq_len must stay below 2**31; lower it"))
        return problems

    def run(self, ctx: RunContext) -> list[ShardResult]:
        params: PackParams = ctx.params  # type: ignore[assignment]
        seed = ctx.seed + params.seed
        tok_path, docs = _split_inputs(ctx.inputs, params)
        jobs = []
        for inp in docs:
            for path in inp.shards:
                jobs.append(
                    TokenizeJob(
                        index=len(jobs),
                        path=path,
                        node=inp.name,
                        weight=params.weights.get(inp.name, 1.0),
                        tokenizer=tok_path,
                        out_dir=ctx.out_dir,
                        seed=seed,
                        append_eos=params.append_eos,
                        fim_document_rate=params.fim.rate if params.fim.mode == "document" else 0.0,
                        spm_rate=params.fim.spm_rate,
                        batch_docs=params.batch_docs,
                    )
                )
        started = time.perf_counter()
        done = ctx.map(tokenize_shard, jobs, phase="tokenize")
        tokenize_s = time.perf_counter() - started
        rows_per_shard = params.rows_per_shard or max(1, (1 << 25) // params.seq_len)
        started = time.perf_counter()
        plan = build_plan(
            ctx.out_dir,
            [j.index for j in jobs],
            params.seq_len,
            seed,
            rows_per_shard,
            tokens=[d["tokens"] for d in done],
            group_tokens=params.plan_group_tokens,
            mapper=lambda fn, items: ctx.map(fn, items, phase="plan", unit="tasks"),
            method=params.method,
        )
        plan_s = time.perf_counter() - started
        tasks = [
            ShardTask(
                k,
                {
                    "tokenizer": tok_path,
                    "rows": plan.rows,
                    "rows_per_shard": rows_per_shard,
                    "seed": seed,
                    "docs": plan.docs_per_shard[k],
                    "groups": plan.groups,
                },
                label=f"rows {k * rows_per_shard}..",
            )
            for k in range(plan.n_shards)
        ]
        results = ctx.run_shards(tasks)
        ctx.extra["pack"] = {"plan": plan, "tokenized": done}
        ctx.timings.update(tokenize_s=tokenize_s, plan_s=plan_s)  # the manifest's timings, not the report
        self.summarize(ctx, results)
        return results

    def run_shard(self, params: PackParams, task: ShardTask, out_dir: str, seed: int) -> ShardResult:  # type: ignore[override]
        started = time.perf_counter()
        k, p = task.index, task.payload
        segs = pl.read_parquet(plan_path(out_dir, k))
        row_base = k * p["rows_per_shard"]
        n_rows = max(0, min(p["rows_per_shard"], p["rows"] - row_base))
        files = {
            f: np.load(work_paths(out_dir, f)[0], mmap_mode="r") for f in segs["file"].unique().to_list()
        }
        tok = cached_tokenizer(p["tokenizer"])
        fim = None
        if params.fim.mode == "context":
            from data_pipes.code.special_tokens import TOKENS

            fim = ContextFim(
                params.fim.rate,
                params.fim.spm_rate,
                tok.token_to_id(TOKENS.fim_prefix),
                tok.token_to_id(TOKENS.fim_middle),
                tok.token_to_id(TOKENS.fim_suffix),
                tok.token_to_id(EOS_TOKEN) if params.append_eos else None,
            )
        table = build_rows(
            segs, files, n_rows, params.seq_len, tok.token_to_id(PAD_TOKEN), row_base, p["seed"], fim
        )
        dropped = (
            pl.concat(
                [pl.read_parquet(f) for f in dropped_paths(out_dir, p["groups"])], how="vertical_relaxed"
            )
            if k == 0
            else None
        )
        n_dropped = dropped.height if dropped is not None else 0
        extra = {
            "segments": segs.height,
            "tokens": int(segs["length"].sum() or 0),
            "pad": int(n_rows * params.seq_len - (segs["length"].sum() or 0)),
            "docs_dropped": n_dropped,
        }
        return write_shard(
            out_dir,
            k,
            table,
            rows_in=p["docs"] + n_dropped,
            dropped=dropped,
            started=started,
            extra=extra,
            kept_in=p["docs"],
        )

    def summarize(self, ctx: RunContext, results: list[ShardResult]) -> None:
        info = ctx.extra.get("pack")
        if info is None:
            return
        plan = info["plan"]
        params: PackParams = ctx.params  # type: ignore[assignment]
        table = [plan.bfd.row(), plan.baseline.row()]
        md = [
            f"**seq_len {params.seq_len}**: {plan.rows} rows from {plan.docs_packed} of {plan.docs_in} "
            f"documents ({plan.dropped} dropped), {plan.bfd.docs} document copies"
            + (f", packed in {plan.groups} plan groups." if plan.groups > 1 else "."),
            f"- BFD fill {plan.bfd.fill:.4%}, padding {plan.bfd.pad} tokens, {plan.bfd.docs_split} copies "
            "longer than seq_len split into chunks, none shorter."
            if params.method == "bfd"
            else f"- concat_chunk (this node's method): fill {plan.bfd.fill:.4%}, padding {plan.bfd.pad} "
            f"tokens, {plan.bfd.docs_split} copies split ({plan.bfd.short_docs_split} of them no longer than "
            "seq_len).",
            f"- concat-and-chunk on the same copies: fill {plan.baseline.fill:.4%}, "
            f"{plan.baseline.docs_split} copies split ({plan.baseline.short_docs_split} of them no longer "
            "than seq_len).",
        ]
        ctx.add_report("Packing", markdown="\n".join(md), table=table)
        ctx.add_report("Tokens per node, source and bucket", table=plan.mix)


def _split_inputs(inputs: list[InputRef], params: PackParams) -> tuple[str, list[InputRef]]:
    toks = [i for i in inputs if i.data_type == DataType.TOKENIZER]
    docs = [i for i in inputs if i.data_type == DataType.DOCUMENTS]
    if len(toks) != 1 or not docs:
        raise ValueError(
            f"pack needs exactly one tokenizer input and at least one document input; got tokenizers "
            f"{[i.name for i in toks]} and documents {[i.name for i in docs]}"
        )
    unknown = sorted(set(params.weights) - {d.name for d in docs})
    if unknown:
        raise ValueError(
            f"params.weights names {unknown}, which are not document inputs of this node; "
            f"its document inputs are {[d.name for d in docs]}"
        )
    return tokenizer_json(toks[0]), docs


__all__ = ["Pack", "PackParams"]
