"""`eval`: compare checkpoints on held-out loss and bits per byte per source, FIM exact match and problem pass rate.

Inputs: one or more checkpoint nodes (pretrain, midtrain, sft) and documents nodes. What each documents input is
for is read from its columns unless params name it: rows with ``prompt`` and ``answer``/``tests`` (a ``problems``
node) are problems; other documents (``id``, ``text``, ``source``, ``meta``) are held-out text for the loss and,
when their ``meta`` says ``{"format": "code"}``, for FIM. Packed token rows are not accepted: bits per byte needs
the text, and every checkpoint is scored with its own tokenizer on the same text.

The held-out sets are drawn once, the same for every checkpoint: per source, the first ``docs_per_source`` rows in
a seeded hash order of their ids (``tasks/_eval_select.py``); ``exclude`` names documents inputs whose ids are
never scored (the corpus the checkpoints trained on, so the scored text is really held out). Scoring is in
``tasks/_eval_score.py``. The output (type ``report``):

    part-00000.parquet   one row per checkpoint x task x source (+ ``all``): items, tokens, bytes, nats, loss, bpb,
                         correct, accuracy (exact match or pass rate)
    items.parquet        one row per checkpoint x item: the numbers, the generated text and the expected one
    excluded/            the input rows left out, with their reason
    reports/             a table per task, a plot, and a markdown summary comparing the checkpoints

Every row of the inputs the tasks read is scored (kept) or dropped with a reason; runs in the arcflow process, on
CUDA in bf16 when there is one (``device``), else on CPU in fp32 with ``threads`` torch threads (1 by default: the
same bytes on every run).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import polars as pl

from data_pipes.io.shards import ShardResult, write_parquet_atomic, write_shard
from tasks._eval_params import EvalParams, FimParams
from tasks.base import DataType, Kind, RunContext
from tasks.registry import register


@register
class Eval(Kind):
    name: ClassVar[str] = "eval"
    Params = EvalParams
    input_types: ClassVar[tuple[DataType, ...]] = (DataType.CHECKPOINT, DataType.DOCUMENTS)
    min_inputs: ClassVar[int] = 2
    max_inputs: ClassVar[int | None] = None
    input_counts: ClassVar[dict[DataType, tuple[int, int | None]]] = {
        DataType.CHECKPOINT: (1, None),
        DataType.DOCUMENTS: (1, None),
    }
    output_type: ClassVar[DataType] = DataType.REPORT
    packages = (
        "torch",
        "transformers",
        "tokenizers",
        "safetensors",
        "polars",
        "math-verify",
        "reasoning-gym",
    )
    phases: ClassVar[tuple[str, ...]] = ("select", "loss", "fim", "problems")
    description = (
        "held-out loss and bits per byte per source, FIM exact match, problem pass rate, per checkpoint"
    )

    def check_inputs(self, params: EvalParams, inputs: list[str]) -> list[tuple[tuple[str | int, ...], str]]:  # type: ignore[override]
        out: list[tuple[tuple[str | int, ...], str]] = []
        for section in ("loss", "fim", "problems"):
            p = getattr(params, section)
            if p is None:
                continue
            for key in ("inputs", "exclude", "checkpoints"):
                for k, name in enumerate(getattr(p, key, None) or []):
                    if name not in inputs:
                        out.append(
                            (
                                (section, key, k),
                                f"{name!r} is not an input of this node; its inputs are {inputs}",
                            )
                        )
        return out

    def run(self, ctx: RunContext) -> list[ShardResult]:
        import torch

        from tasks._eval_report import (
            TASK_TITLES,
            items_table,
            markdown,
            metrics,
            metrics_table,
            task_table,
        )
        from tasks._eval_score import Checkpoint, Scorer
        from tasks._eval_select import EvalInputError, manifest_kind, select

        params: EvalParams = ctx.params  # type: ignore[assignment]
        started = time.perf_counter()
        device = "cuda" if params.device != "cpu" and torch.cuda.is_available() else "cpu"
        if params.device == "cuda" and device != "cuda":
            raise EvalInputError(f"node {ctx.node_id!r}: params.device is cuda but torch sees no CUDA device")
        threads = torch.get_num_threads()
        torch.set_num_threads(params.threads)
        try:
            ctx.progress("select", 0, 1, "steps")
            seed = ctx.seed + params.seed
            sel = select(ctx.node_id, ctx.inputs, params, seed, set(params.model_fields_set))
            ctx.progress("select", 1, 1, "steps")
            cks = [
                Checkpoint(i.name, i.path, i.content_hash)
                for i in ctx.inputs
                if i.data_type == DataType.CHECKPOINT
            ]
            # every checkpoint's tokenizer and config checked before any model runs
            scorers = {c.name: Scorer(ctx.node_id, c, device) for c in cks}
            answering = self._answering(params, ctx, manifest_kind)
            for c in cks:
                scorers[c.name].check(
                    params.loss.max_tokens if sel.loss and params.loss is not None else None,
                    fim=bool(sel.fim),
                    problems=bool(sel.problems) and c.name in answering,
                )
            items: list[dict[str, Any]] = []
            done = {"loss": 0, "fim": 0, "problems": 0}
            totals = {
                "loss": len(sel.loss) * len(cks),
                "fim": len(sel.fim) * len(cks),
                "problems": len(sel.problems) * len(answering),
            }

            def prog(task: str, base: int) -> Any:
                return lambda d, _t: ctx.progress(task, base + d, totals[task], "items")

            timings: dict[str, float] = {}
            for c in cks:
                sc = scorers[c.name]
                t0 = time.perf_counter()
                if sel.loss and params.loss is not None:
                    base, n = done["loss"], len(sel.loss)

                    def rows_done(
                        d: int, t: int, base: int = base, n: int = n
                    ) -> None:  # rows of packed documents
                        ctx.progress("loss", base + n * d // max(t, 1), totals["loss"], "items")

                    rows = sc.loss(sel.loss, params.loss.max_tokens, params.loss.row_tokens, rows_done)
                    items += [{"checkpoint": c.name, **r} for r in rows]
                    done["loss"] += len(rows)
                if sel.fim and params.fim is not None:
                    rows = sc.fim(
                        sel.fim, params.fim.max_new_tokens, params.batch_size, prog("fim", done["fim"])
                    )
                    items += [{"checkpoint": c.name, **r} for r in rows]
                    done["fim"] += len(rows)
                if sel.problems and params.problems is not None and c.name in answering:
                    p = params.problems
                    rows = sc.problems(
                        sel.problems, p.max_new_tokens, p.thinking, params.batch_size, p.timeout_s,
                        prog("problems", done["problems"]),
                    )  # fmt: skip
                    items += [{"checkpoint": c.name, **r} for r in rows]
                    done["problems"] += len(rows)
                scorers[c.name] = None  # type: ignore[assignment]  # free its models
                timings[f"score_{c.name}_s"] = time.perf_counter() - t0
                if ctx.on_report is not None:
                    partial = metrics(items, {})
                    ctx.publish_live(
                        f"{ctx.node_id} metrics",
                        table=task_table(partial, "loss") or None,
                        png=_png(partial, [k.name for k in cks], f"{ctx.node_id}: {c.name} done"),
                    )
        finally:
            torch.set_num_threads(threads)

        names = [c.name for c in cks]
        rows = metrics(items, {c.name: c.content_hash for c in cks})
        write_parquet_atomic(items_table(items), f"{ctx.out_dir}/items.parquet")
        for task, title in TASK_TITLES.items():
            table = task_table(rows, task)
            if table:
                ctx.add_report(title, table=table)
        accounting = {
            "in": sel.rows_in, "kept": sel.kept, "dropped": len(sel.dropped), "reasons": sel.reasons,
            "inputs": sel.inputs,
        }  # fmt: skip
        ctx.add_report(
            "Evaluation",
            markdown=markdown(rows, names, accounting, sel.notes, _how(params, seed)),
            png=_png(rows, names, f"{ctx.node_id}: {', '.join(names)}") if rows else None,
        )
        ctx.timings.update(timings)
        dropped = pl.DataFrame(
            sel.dropped,
            schema={"input": pl.String, "id": pl.String, "source": pl.String, "reason": pl.String},
        )
        result = write_shard(
            ctx.out_dir, 0, metrics_table(rows), rows_in=sel.rows_in, kept_in=sel.kept, dropped=dropped,
            started=started, extra={"items": len(items), "checkpoints": len(cks)},
        )  # fmt: skip
        return [result]

    @staticmethod
    def _answering(params: EvalParams, ctx: RunContext, manifest_kind: Any) -> list[str]:
        """The checkpoints that answer problems: named, else those made by `sft`, else all."""
        cks = [i for i in ctx.inputs if i.data_type == DataType.CHECKPOINT]
        if params.problems is None:
            return []
        if params.problems.checkpoints is not None:
            names = {i.name for i in cks}
            for name in params.problems.checkpoints:
                if name not in names:
                    from tasks._eval_select import EvalInputError

                    raise EvalInputError(
                        f"node {ctx.node_id!r}: params.problems.checkpoints names {name!r}, which is not a "
                        f"checkpoint input of this node; its checkpoints are {sorted(names)}"
                    )
            return list(params.problems.checkpoints)
        chat = [i.name for i in cks if manifest_kind(i) == "sft"]
        return chat or [i.name for i in cks]


def _how(params: EvalParams, seed: int) -> dict[str, str]:
    """How each task drew and scored its items, for the summary."""

    loss_exclude = params.loss.exclude if params.loss is not None else []

    def base(n: int, what: str, p: Any) -> str:
        src = f" of {p.inputs}" if p.inputs else ""
        exclude = (
            getattr(p, "exclude", [])
            if not isinstance(p, FimParams) or p.exclude is not None
            else loss_exclude
        )
        ex = f", ids of {exclude} left out" if exclude else ""
        return (
            f"Up to {n} {what} per source{src}, the first in a hash order of their ids seeded with {seed}{ex}"
        )

    out = {}
    if params.loss is not None:
        p = params.loss
        out["loss"] = (
            base(p.docs_per_source, "documents", p) + f"; the first {p.max_tokens} tokens of each, after an "
            "end-of-text token, scored with each checkpoint's own tokenizer; bpb = nats / ln 2 / UTF-8 bytes."
        )
    if params.fim is not None:
        p = params.fim
        out["fim"] = (
            base(p.docs_per_source, "code documents", p) + f"; the middle is one seeded line of at most "
            f"{p.max_middle_chars} characters, prompted in PSM with {p.context_chars} characters each side, "
            f"greedy, {p.max_new_tokens} new tokens at most; exact match of the text."
        )
    if params.problems is not None:
        p = params.problems
        out["problems"] = (
            base(p.per_source, "problems", p) + f"; one user turn in the checkpoint's chat template "
            f"({'thinking' if p.thinking else 'direct'} mode), greedy, {p.max_new_tokens} new tokens at most; "
            "checked by the problems' verifiers."
        )
    return out


def _png(rows: list[dict[str, Any]], checkpoints: list[str], title: str) -> bytes:
    from data_pipes.plots import png_bytes
    from tasks._eval_report import figure

    return png_bytes(figure(rows, checkpoints, title))
