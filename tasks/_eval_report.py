"""The `eval` kind's metrics: per-item rows summed into one row per checkpoint x task x source (plus an ``all`` row
per checkpoint and task), and the tables, markdown and plot made of them."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

ALL = "all"
METRIC_SCHEMA = pa.schema(
    [
        ("checkpoint", pa.string()),
        ("checkpoint_content_hash", pa.string()),
        ("task", pa.string()),
        ("source", pa.string()),
        ("items", pa.int64()),
        ("tokens", pa.int64()),
        ("bytes", pa.int64()),
        ("nats", pa.float64()),
        ("loss", pa.float64()),
        ("bpb", pa.float64()),
        ("correct", pa.int64()),
        ("accuracy", pa.float64()),
    ]
)
ITEM_SCHEMA = pa.schema(
    [
        ("checkpoint", pa.string()),
        ("task", pa.string()),
        ("input", pa.string()),
        ("source", pa.string()),
        ("id", pa.string()),
        ("tokens", pa.int64()),
        ("bytes", pa.int64()),
        ("nats", pa.float64()),
        ("loss", pa.float64()),
        ("bpb", pa.float64()),
        ("expected", pa.string()),
        ("output", pa.string()),
        ("correct", pa.bool_()),
        ("detail", pa.string()),
    ]
)
TASK_TITLES = {
    "loss": "Held-out loss and bits per byte",
    "fim": "FIM exact match",
    "problems": "Problems pass rate",
}


def metrics(items: list[dict[str, Any]], hashes: dict[str, str]) -> list[dict[str, Any]]:
    """One row per (checkpoint, task, source) in first-seen order, then ``all`` per (checkpoint, task)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for it in items:
        groups.setdefault((it["checkpoint"], it["task"], it["source"]), []).append(it)
        groups.setdefault((it["checkpoint"], it["task"], ALL), []).append(it)
    keys = sorted(
        groups, key=lambda k: (k[1] != "loss", k[1] != "fim", k[1], k[2] == ALL, k[2], _order(items, k[0]))
    )
    return [
        _row(ck, task, source, groups[(ck, task, source)], hashes.get(ck, "")) for ck, task, source in keys
    ]


def _order(items: list[dict], ck: str) -> int:
    for k, it in enumerate(items):
        if it["checkpoint"] == ck:
            return k
    return len(items)


def _row(ck: str, task: str, source: str, group: list[dict], ck_hash: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(METRIC_SCHEMA.names)
    row.update(checkpoint=ck, checkpoint_content_hash=ck_hash, task=task, source=source, items=len(group))
    if task == "loss":
        tokens = sum(it["tokens"] for it in group)
        nbytes = sum(it["bytes"] for it in group)
        nats = math.fsum(it["nats"] for it in group)
        row.update(
            tokens=tokens,
            bytes=nbytes,
            nats=nats,
            loss=nats / tokens if tokens else None,
            bpb=nats / math.log(2) / nbytes if nbytes else None,
        )
    else:
        correct = sum(1 for it in group if it["correct"])
        row.update(tokens=sum(it["tokens"] for it in group), correct=correct, accuracy=correct / len(group))
    return row


def metrics_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=METRIC_SCHEMA)


def items_table(items: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{k: it.get(k) for k in ITEM_SCHEMA.names} for it in items], schema=ITEM_SCHEMA
    )


def task_table(rows: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """The report table of one task: one row per checkpoint x source, rounded for reading."""
    out = []
    for r in rows:
        if r["task"] != task:
            continue
        if task == "loss":
            out.append(
                {"checkpoint": r["checkpoint"], "source": r["source"], "documents": r["items"],
                 "tokens": r["tokens"], "bytes": r["bytes"], "loss": _round(r["loss"]), "bpb": _round(r["bpb"])}
            )  # fmt: skip
        else:
            name = "exact_match" if task == "fim" else "pass_rate"
            out.append(
                {"checkpoint": r["checkpoint"], "source": r["source"], "items": r["items"],
                 "correct": r["correct"], name: _round(r["accuracy"])}
            )  # fmt: skip
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def comparison(
    rows: list[dict[str, Any]], task: str, checkpoints: list[str]
) -> tuple[list[str], list[str], dict]:
    """(sources, checkpoints, {source: {checkpoint: value}}) of the task's headline figure (bpb, exact match or
    pass rate); only the checkpoints scored on that task, in the given order."""
    field = "bpb" if task == "loss" else "accuracy"
    sources: list[str] = []
    table: dict[str, dict[str, float | None]] = {}
    scored = {r["checkpoint"] for r in rows if r["task"] == task}
    for r in rows:
        if r["task"] != task:
            continue
        if r["source"] not in table:
            sources.append(r["source"])
            table[r["source"]] = {}
        table[r["source"]][r["checkpoint"]] = r[field]
    sources = [s for s in sources if s != ALL] + ([ALL] if ALL in table else [])
    cks = [c for c in checkpoints if c in scored]
    return sources, cks, {s: {c: table[s].get(c) for c in cks} for s in sources}


def markdown(
    rows: list[dict[str, Any]],
    checkpoints: list[str],
    accounting: dict[str, Any],
    notes: list[str],
    how: dict[str, str],
) -> str:
    """The summary: per task, a source x checkpoint table of its headline figure under ``how`` (how the items were
    drawn); then the row accounting and the notes."""
    lines = [f"# Evaluation: {', '.join(checkpoints)}", ""]
    heads = {
        "loss": "Held-out bits per byte (lower is better)",
        "fim": "FIM exact match (higher is better)",
        "problems": "Problems pass rate (higher is better)",
    }
    for task, head in heads.items():
        sources, cks, table = comparison(rows, task, checkpoints)
        if not sources:
            continue
        lines += [f"## {head}", "", how.get(task, ""), "", "| source | " + " | ".join(cks) + " |"]
        lines.append("|---|" + "---:|" * len(cks))
        for s in sources:
            cells = [_fmt(table[s][c], task) for c in cks]
            lines.append(f"| {'**all**' if s == ALL else s} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "## Rows",
        "",
        f"{accounting['in']:,} rows read from {', '.join(accounting['inputs']) or 'no input'}: "
        f"{accounting['kept']:,} scored, {accounting['dropped']:,} left out"
        + (
            ": " + ", ".join(f"{r} {n:,}" for r, n in accounting["reasons"].items())
            if accounting["reasons"]
            else ""
        )
        + ".",
        "",
        "Per-item results (outputs, expected answers, nats) are in `items.parquet`, the figures above in "
        "`part-00000.parquet`.",
    ]
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _fmt(v: float | None, task: str) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if task == "loss" else f"{v:.1%}"


def figure(rows: list[dict[str, Any]], checkpoints: list[str], title: str) -> Any:
    """Grouped bars, one panel per task: bpb, exact match and pass rate per source, one bar per checkpoint (with
    its value written on it), one legend for the figure."""
    from matplotlib.patches import Patch

    from data_pipes.plots import new_figure

    tasks = [t for t in ("loss", "fim", "problems") if any(r["task"] == t for r in rows)]
    panels = max(1, len(tasks))
    n_bars = max((len(comparison(rows, t, checkpoints)[0]) * len(checkpoints) for t in tasks), default=1)
    fig = new_figure(max(7.0, 2.5 + 0.42 * n_bars), 2.7 * panels + 0.4)
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    fig.suptitle(title)
    labels = {"loss": "bits per byte", "fim": "FIM exact match", "problems": "pass rate"}
    colours = {c: f"C{k % 10}" for k, c in enumerate(checkpoints)}
    for ax, task in zip(axes, tasks, strict=False):
        sources, cks, table = comparison(rows, task, checkpoints)
        bar = 0.8 / max(1, len(cks))
        for j, ck in enumerate(cks):
            shown = [(i, table[s][ck]) for i, s in enumerate(sources) if table[s][ck] is not None]
            xs = [i + (j - (len(cks) - 1) / 2) * bar for i, _ in shown]
            bars = ax.bar(xs, [v for _, v in shown], bar, color=colours[ck], label=ck)
            fmt = "{:.2f}" if task == "loss" else "{:.0%}"
            ax.bar_label(bars, [fmt.format(v) for _, v in shown], fontsize=7, padding=1)
        ax.set_xticks(range(len(sources)), [_short(s) for s in sources], fontsize=8)
        ax.set_ylabel(labels[task])
        top = max((v for s in sources for v in table[s].values() if v is not None), default=1.0)
        ax.set_ylim(0, 1.15 if task != "loss" else max(top, 1e-9) * 1.18)
        ax.margins(x=0.02)
    handles = [Patch(color=colours[c], label=c) for c in checkpoints]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(checkpoints), 4), fontsize=8)
    return fig


def _short(s: str, n: int = 28) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
