"""Per-node reports as plain data (tables and markdown), rendered by the Prefect layer and the CLI alike."""

from __future__ import annotations

from typing import Any


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


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True)
