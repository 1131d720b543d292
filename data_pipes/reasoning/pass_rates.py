"""Pass rates per dataset (the problem's ``source``: ``reasoning_gym:<generator>``, ``human_eval``,
``jsonl:<file>``...), domain and difficulty: counted in each shard, summed over the node, shown as a table.

Teacher errors (timeouts, HTTP errors, no solver) are their own column and never part of a pass rate: the
sample pass rate is correct / answered samples, and a dataset whose samples were all teacher errors has no
pass rate at all (``None``, shown as ``n/a``) rather than a figure that hides it. ``unsupported`` names those
datasets so the kind can log a warning about each.
"""

from __future__ import annotations

from collections.abc import Iterable

FIELDS = ("problems", "samples", "correct", "solved", "records", "teacher_errors")
SEP = "\t"


def add(stats: dict[str, dict[str, int]], dataset: str, domain: str, difficulty: str, **counts: int) -> None:
    row = stats.setdefault(SEP.join((dataset, domain, difficulty)), dict.fromkeys(FIELDS, 0))
    for k, v in counts.items():
        row[k] += v


def merge(parts: Iterable[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    total: dict[str, dict[str, int]] = {}
    for part in parts:
        for key, row in part.items():
            add(total, *key.split(SEP), **row)
    return total


def table(stats: dict[str, dict[str, int]]) -> list[dict]:
    """One row per (dataset, domain, difficulty): samples answered and teacher errors, the sample pass rate
    over answered samples (``None`` when none was answered), the share of problems with at least one correct
    sample (pass@k), and the records kept."""
    rows = []
    for key in sorted(stats):
        dataset, domain, difficulty = key.split(SEP)
        s = stats[key]
        answered = s["samples"] - s["teacher_errors"]
        rows.append(
            {
                "dataset": dataset,
                "domain": domain,
                "difficulty": difficulty,
                "problems": s["problems"],
                "samples": s["samples"],
                "answered": answered,
                "teacher_errors": s["teacher_errors"],
                "correct": s["correct"],
                "solved": s["solved"],
                "records": s["records"],
                "pass_rate": round(s["correct"] / answered, 4) if answered else None,
                "pass_at_k": round(s["solved"] / s["problems"], 4) if s["problems"] and answered else None,
            }
        )
    return rows


def unsupported(rows: list[dict]) -> dict[str, int]:
    """``{dataset: teacher errors}`` for every dataset whose samples were all teacher errors."""
    samples: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in rows:
        samples[r["dataset"]] = samples.get(r["dataset"], 0) + r["samples"]
        errors[r["dataset"]] = errors.get(r["dataset"], 0) + r["teacher_errors"]
    return {d: errors[d] for d in sorted(samples) if samples[d] and errors[d] == samples[d]}


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def markdown(rows: list[dict], teacher: str) -> str:
    head = (
        "| dataset | domain | difficulty | problems | samples | teacher errors | pass rate (answered) | pass@k "
        "| records |"
    )
    lines = [f"### Pass rates ({teacher})", "", head, "|---|---|---|---|---|---|---|---|---|"]
    lines += [
        f"| {r['dataset']} | {r['domain']} | {r['difficulty']} | {r['problems']} | {r['samples']} | "
        f"{r['teacher_errors']} | {_pct(r['pass_rate'])} | {_pct(r['pass_at_k'])} | {r['records']} |"
        for r in rows
    ]
    missing = unsupported(rows)
    if missing:
        lines += [
            "",
            "**The teacher cannot do** "
            + ", ".join(f"`{d}` ({n} samples, all teacher errors)" for d, n in missing.items())
            + ": no records come from them.",
        ]
    return "\n".join(lines)
