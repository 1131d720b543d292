"""How the CLI prints traces and training lineage (:mod:`flows.trace`, :mod:`flows.trace_training`) with rich."""

from __future__ import annotations

import json
from typing import Any

# ---- rendering (the CLI prints these) ----------------------------------------------------------------------------
MAX_RANGES = 8  # drawn-row ranges shown per shard; --json lists all


def _status_note(result: dict[str, Any]) -> str:
    if result.get("status") in (None, "up_to_date"):
        return ""
    return " [yellow](its last stored output, which a run would not reuse: the node is stale)[/]"


def render_row(result: dict[str, Any], console: Any) -> None:
    """One block per segment (ids, URLs and previews stay whole at any terminal width)."""
    from rich.markup import escape

    console.print(
        f"[bold]{result['node']}[/] row {result['row']} of {result['rows']:,} ({result['shard']}, seq_len "
        f"{result['seq_len']}, {len(result['segments'])} segment(s), {result['n_pad']} pad tokens) · fingerprint "
        f"{result['fingerprint'][:12]}" + _status_note(result),
        highlight=False,
        soft_wrap=True,
    )
    for s in result["segments"]:
        where = s["url"] or s["path"] or "(not found in the store)"
        if s["url"] and s["path"] and s["path"] not in s["url"]:
            where += f" (path {s['path']})"
        if s["found_in"] and s["found_in"] != s["node"]:
            where += f" (found in {s['found_in']})"
        bucket = f", bucket {s['bucket']}" if s["bucket"] else ""
        lines = [
            f"[bold]segment {s['segment']}[/]: tokens {s['tokens'][0]}..{s['tokens'][1] - 1} of the row, from token "
            f"{s['doc_offset']} of its document",
            f"  document {s['doc_id']} · node {s['node']} · source {escape(s['source'])}{escape(bucket)}",
            f"  {escape(where)}",
            f"  [dim]{escape(json.dumps(s['preview'], ensure_ascii=False))}[/]",
        ]
        console.print("\n".join(lines), highlight=False, soft_wrap=True)
    if result["n_pad"]:
        console.print(
            f"padding: tokens {result['pad_tokens'][0]}..{result['pad_tokens'][1] - 1}", highlight=False
        )


def _drawn_text(shard: dict[str, Any]) -> str:
    drawn = shard["drawn"]
    if shard["seq_index"] and drawn == [shard["seq_index"]]:
        return f"all {shard['seq_index'][0]}..{shard['seq_index'][1]}"
    shown = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in drawn[:MAX_RANGES])
    return shown + (f", +{len(drawn) - MAX_RANGES} more" if len(drawn) > MAX_RANGES else "")


def render_training(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    order = "shuffled" if result["shuffle"] else "in file order"
    console.print(
        f"[bold]{result['node']}[/] ({result['kind']}): {result['samples']:,} samples = {result['epochs']:.3f} "
        f"epochs of {result['rows']:,} rows, in the trainer's order ({result['order']}, seed {result['seed']}, "
        f"{order}) · fingerprint {result['fingerprint'][:12]}" + _status_note(result),
        highlight=False,
        soft_wrap=True,
    )
    parent = result.get("parent")
    console.print(
        "parent checkpoint: "
        + (
            f"{parent['node']} (fingerprint {str(parent.get('fingerprint'))[:12]}, content "
            f"{parent['content_hash'][:12]})"
            if parent
            else "none (trained from scratch)"
        ),
        highlight=False,
    )
    table = Table(title="samples drawn per shard (seq_index: the pack node's row number)")
    for col in (
        "node",
        "fingerprint",
        "shard",
        "rows (seq_index)",
        "samples",
        "epochs",
        "times drawn: rows",
        "rows drawn",
    ):
        table.add_column(col, overflow="fold")
    for s in result["shards"]:
        seq = f"{s['rows']} ({s['seq_index'][0]}..{s['seq_index'][1]})" if s["seq_index"] else "0"
        times = ", ".join(f"{t}x: {n}" for t, n in s["times"].items())
        table.add_row(
            s["node"],
            (s["fingerprint"] or "(rebuilt)")[:12],
            s["file"],
            seq,
            str(s["samples_drawn"]),
            f"{s['epochs']:.3f}",
            times,
            _drawn_text(s),
        )
    console.print(table)
    if result["kind"] == "sft":
        chats = {c["path"] for s in result["shards"] for c in s.get("chat_shards", [])}
        console.print(
            f"SFT rows rebuilt from {len(chats)} chat shard(s) exactly as the stage packed them; "
            "each row's nodes name the chat shard of each record",
            highlight=False,
        )
    mismatch = [s for s in result["shards"] if s.get("lineage_samples") not in (None, s["samples_drawn"])]
    for s in mismatch:
        console.print(
            f"[red]{s['file']}: lineage.json records {s['lineage_samples']} samples, the replay "
            f"{s['samples_drawn']}[/]"
        )
    step = result.get("step")
    if step:
        table = Table(
            title=f"step {step['step']}: samples {step['samples'][0]}..{step['samples'][1] - 1} "
            f"({step['ranks']} rank(s), micro-batches of {step['micro_batch']})"
        )
        for col in ("sample", "rank", "micro", "node", "shard", "seq_index", "documents"):
            table.add_column(col, overflow="fold")
        for r in step["rows"]:
            docs = ", ".join(f"{d} ({n})" for d, n in zip(r["doc_ids"], r["nodes"], strict=True))
            table.add_row(
                str(r["sample"]),
                str(r["rank"]),
                str(r["micro_batch"]),
                r["node"],
                r["file"],
                str(r["seq_index"]),
                docs,
            )
        console.print(table)


def render_lineage(lineage: dict[str, Any], console: Any) -> None:
    """The training lineage section of ``show``."""
    console.print("[bold]training lineage[/] (lineage.json)", highlight=False)
    parent = lineage["parent"]
    console.print(
        "  parent checkpoint (init_from): "
        + (
            f"{parent['node']} · fingerprint {parent.get('fingerprint')} · content {parent['content_hash']}"
            if parent
            else "none (trained from scratch)"
        ),
        highlight=False,
        soft_wrap=True,
    )
    epochs = lineage.get("epochs")
    console.print(
        f"  samples: {lineage.get('samples')} ({epochs:.3f} epochs)" if epochs is not None else "",
        highlight=False,
    )
    console.print(
        "  input shards (node/file · rows · samples drawn · the input's fingerprint):", highlight=False
    )
    for sh in lineage["shards"]:
        drawn = f" · {sh['samples']} samples drawn" if "samples" in sh else " · chat records"
        where = sh.get("fingerprint") or "(rows the stage packed from the records above)"
        console.print(
            f"    {sh['node']}/{sh['file']} · {sh.get('rows', '?')} rows{drawn} · {where}",
            highlight=False,
            soft_wrap=True,
        )
    code = lineage["code"]
    console.print(
        f"  code: {code['modules']} modules, digest {code['digest'][:16]} ("
        + ", ".join(f"{m} {h[:10]}" for m, h in code["main"].items())
        + ")",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        "  versions: " + ", ".join(f"{k} {v}" for k, v in sorted(lineage["versions"].items())),
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  spec the launcher ran: {lineage['spec']}; `arcflow trace NODE` lists the rows drawn",
        highlight=False,
        soft_wrap=True,
    )
