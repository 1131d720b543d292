"""Per-node reports as plain data (tables and markdown), rendered by the Prefect layer and the CLI alike."""

from __future__ import annotations

from typing import Any

from flows.outcome import all_quarantined


def counts_table(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of outcome, reason and count: the accounting of one node."""
    c = manifest["counts"]
    rows: list[dict[str, Any]] = [
        {"outcome": "in", "reason": "", "rows": c["in"]},
        {"outcome": "kept", "reason": "", "rows": c["kept"]},
    ]
    if c.get("out", c["kept"]) != c["kept"]:
        rows.append({"outcome": "output rows", "reason": "", "rows": c["out"]})
    rows += [
        {"outcome": "dropped", "reason": r, "rows": n} for r, n in manifest.get("drop_reasons", {}).items()
    ]
    rows += [
        {"outcome": "quarantined", "reason": e, "rows": n}
        for e, n in manifest.get("quarantine_errors", {}).items()
    ]
    return rows


def summary_markdown(manifest: dict[str, Any], reused: bool) -> str:
    c = manifest["counts"]
    lines = [
        f"# {manifest['node']} ({manifest['kind']})",
        "",
        f"**{'reused from the store' if reused else 'computed'}** · fingerprint `{manifest['fingerprint'][:16]}` · "
        f"content `{manifest['content_hash'][:16]}`",
        "",
        f"in {c['in']:,} = kept {c['kept']:,} + dropped {c['dropped']:,} + quarantined {c['quarantined']:,}"
        + (f" · output rows {c['out']:,}" if c.get("out", c["kept"]) != c["kept"] else ""),
        "",
        *_all_quarantined_note(manifest),
        "## Lineage",
        "",
        "| input | fingerprint | content |",
        "|---|---|---|",
    ]
    for i in manifest.get("inputs", []):
        lines.append(f"| {i['name']} | `{i['fingerprint'][:16]}` | `{i['content_hash'][:16]}` |")
    if not manifest.get("inputs"):
        lines.append("| (source) | | |")
    lines += ["", "## Params", "", "```json", _json(manifest.get("params", {})), "```", ""]
    t = manifest.get("timings", {})
    lines.append(
        f"{manifest.get('shards', 0)} shards · wall {t.get('wall_s', 0)} s · "
        f"shard time {t.get('shard_s_total', 0)} s · started {t.get('started_at', '?')}"
    )
    return "\n".join(lines)


def _all_quarantined_note(manifest: dict[str, Any]) -> list[str]:
    """A bold line (and a blank one) when the node quarantined every input row: the run fails at it."""
    if not all_quarantined(manifest):
        return []
    return [
        "**Every input row was quarantined**: the output has no usable rows, so a run fails at this node and "
        "skips the nodes downstream of it (the rows and their errors are in `quarantine/part-*.parquet`).",
        "",
    ]


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True)


# ---- the Prefect layer's artifacts: one markdown per node, reports inlined ------------------------------------
MAX_TABLE_ROWS = 40  # report rows shown inline; the whole table stays in the reports/ folder


def markdown_table(rows: list[dict[str, Any]], limit: int = MAX_TABLE_ROWS) -> str:
    """``rows`` (dicts sharing keys) as a GitHub markdown table, at most ``limit`` rows and a line saying how many
    more there are."""
    if not rows:
        return "(empty table)"
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    numeric = {c for c in columns if all(isinstance(r.get(c), int | float) for r in rows if c in r)}
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|",
    ]
    for row in rows[:limit]:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    if len(rows) > limit:
        lines.append(f"\n… {len(rows) - limit:,} more rows")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "x" if value else ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def reports_markdown(out_dir: str, reports: list[dict[str, Any]]) -> str:
    """The kind's own reports (``manifest["reports"]``) as one markdown section: each report's markdown, its table
    as a markdown table, and its PNG embedded as a data URI (so it shows without a file server)."""
    import base64
    import json
    import os

    if not reports:
        return ""
    parts = ["## Reports"]
    for report in reports:
        parts.append(f"### {report['title']}")
        if "markdown" in report:
            with open(os.path.join(out_dir, report["markdown"]), encoding="utf-8") as fh:
                # the report's own headings go one level under the report's title
                parts.append(_demote_headings(fh.read().strip()))
        if "table" in report:
            with open(os.path.join(out_dir, report["table"]), "rb") as fh:
                parts.append(markdown_table(json.loads(fh.read())))
        if "png" in report:
            with open(os.path.join(out_dir, report["png"]), "rb") as fh:
                data = base64.b64encode(fh.read()).decode()
            parts.append(f"![{report['title']}](data:image/png;base64,{data})")
    return "\n\n".join(parts)


def _demote_headings(text: str) -> str:
    return "\n".join("###" + line if line.startswith("#") else line for line in text.splitlines())


def reused_markdown(manifest: dict[str, Any], run_link: str | None, label: str) -> str:
    """What a cached node publishes: reused, from which run and when, the counts, and where the computing run's
    artifacts are. Built from the manifest alone (no output is read), so a cached rerun stays cheap."""
    c = manifest["counts"]
    run = manifest.get("run") or {}
    started = manifest.get("timings", {}).get("started_at", "?")
    if run.get("flow_run_id"):
        name = f"`{run.get('flow_run_name') or run['flow_run_id']}`"
        where = f"[{name}]({run_link})" if run_link else name
        origin = f"computed by flow run {where} (id `{run['flow_run_id']}`), started {started}"
    else:
        origin = f"computed outside a Prefect flow run, started {started}"
    lines = [
        f"# {manifest['node']} ({manifest['kind']}): reused",
        "",
        f"**Cached**: the stored output was reused, nothing was computed. It was {origin}.",
        "",
        f"in {c['in']:,} = kept {c['kept']:,} + dropped {c['dropped']:,} + quarantined {c['quarantined']:,}"
        + (f" · output rows {c['out']:,}" if c.get("out", c["kept"]) != c["kept"] else ""),
        "",
        *_all_quarantined_note(manifest),
        f"fingerprint `{manifest['fingerprint'][:16]}` · content `{manifest['content_hash'][:16]}` · {label}",
    ]
    if run_link:
        lines += ["", f"Counts, plots and lineage: [the computing run's artifacts]({run_link})."]
    return "\n".join(lines)
