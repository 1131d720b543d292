"""Pass rates per domain and difficulty: counted in each shard, summed over the node, shown as a table."""

from __future__ import annotations

from collections.abc import Iterable

FIELDS = ("problems", "samples", "correct", "solved", "records", "teacher_errors")


def add(stats: dict[str, dict[str, int]], domain: str, difficulty: str, **counts: int) -> None:
    row = stats.setdefault(f"{domain}\t{difficulty}", dict.fromkeys(FIELDS, 0))
    for k, v in counts.items():
        row[k] += v


def merge(parts: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = {}
    for part in parts:
        for key, row in part.items():
            domain, difficulty = key.split("\t")
            add(total, domain, difficulty, **row)
    return total


def table(stats: dict[str, dict[str, int]]) -> list[dict]:
    """One row per (domain, difficulty): sample pass rate (correct / answered samples), the share of problems
    with at least one correct sample (pass@k), and the records kept."""
    rows = []
    for key in sorted(stats):
        domain, difficulty = key.split("\t")
        s = stats[key]
        answered = s["samples"] - s["teacher_errors"]
        rows.append(
            {
                "domain": domain,
                "difficulty": difficulty,
                **s,
                "pass_rate": round(s["correct"] / answered, 4) if answered else 0.0,
                "pass_at_k": round(s["solved"] / s["problems"], 4) if s["problems"] else 0.0,
            }
        )
    return rows


def markdown(rows: list[dict], teacher: str) -> str:
    head = "| domain | difficulty | problems | samples | pass rate | pass@k | records | teacher errors |"
    lines = [f"### Pass rates ({teacher})", "", head, "|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r['domain']} | {r['difficulty']} | {r['problems']} | {r['samples']} | {r['pass_rate']:.1%} | "
        f"{r['pass_at_k']:.1%} | {r['records']} | {r['teacher_errors']} |"
        for r in rows
    ]
    return "\n".join(lines)
