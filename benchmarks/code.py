"""Code benchmark: import edges that the dependency order satisfies, and the tier epochs that reach the tokens.

Corpora: ../shared/corpora (the source trees in repos/*.tar.gz: Rust crates and Go modules; the HEAD tree of
git/requests.bundle) plus, for Python with ``if TYPE_CHECKING:`` imports, the web frameworks and libraries
installed in this environment (starlette, fastapi, httpx, click, jinja2, rich, typer, pydantic, sqlalchemy),
each read as a repository whose root holds the package folder.

Figures:

* **dependency order** (``dependency_order``): per repository, runtime edges satisfied (the imported file
  comes first), the same outside genuine runtime cycles (edges inside a runtime strongly connected component
  cannot all be satisfied by any order), type-only edges (Python ``TYPE_CHECKING``) satisfied, and edges from
  test / example files. *Before* is the previous rule (Kahn's algorithm over the whole graph, a cycle broken
  at the globally smallest in-degree, type-only imports counted as ordinary ones, kept here as
  ``legacy_order``); *after* is the condensation order. Target: >= 95% of runtime edges outside cycles.
* **splitting** (``max_repo_chars`` 512,000 and 128,000): runtime import edges whose import comes earlier in
  the importer's own part (as a member or a repeated copy), greedy cuts against cuts along the dependency order
  with modules of at most 4,000 characters repeated.
* **epochs reaching tokens** (``--epochs``): a pipeline demo_corpus(stdlib_code) -> code_quality ->
  repo_samples (``tier_rule: max`` and ``mean``) -> tokenizer_train -> pack, run through the engine; pack's
  mixture report gives packed / unique tokens per tier, set against the configured epochs.

Run: python benchmarks/code.py [--epochs] [--work DIR]
"""

from __future__ import annotations

import argparse
import glob
import heapq
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_pipes.code.archive_reader import archive_name, read_archive  # noqa: E402
from data_pipes.code.git_reader import opened, read_tree_files, resolve  # noqa: E402
from data_pipes.code.records import CodeOptions  # noqa: E402
from data_pipes.code.repo_condense import edge_counts, is_late  # noqa: E402
from data_pipes.code.repo_order import dependency_edges, split_edges, topological_order  # noqa: E402
from data_pipes.code.repo_order_samples import Member, render_parts  # noqa: E402

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
PY_PACKAGES = ("starlette", "fastapi", "httpx", "click", "jinja2", "rich", "typer", "pydantic", "sqlalchemy")
OPTS = CodeOptions(source="bench", max_bytes=1 << 20)


def legacy_order(graph: Mapping[str, set[str]]) -> list[str]:
    """The previous rule: Kahn over the whole graph, ready files by path, and when only cycles (or files
    waiting on one) remain, the remaining file with the smallest in-degree (ties by path)."""
    indeg = {f: len({d for d in deps if d in graph and d != f}) for f, deps in graph.items()}
    users: dict[str, list[str]] = {f: [] for f in graph}
    for f, deps in graph.items():
        for d in {d for d in deps if d in graph and d != f}:
            users[d].append(f)
    ready = [f for f, n in indeg.items() if n == 0]
    heapq.heapify(ready)
    remaining, order = set(graph), []
    while remaining:
        f = heapq.heappop(ready) if ready else min(remaining, key=lambda x: (indeg[x], x))
        remaining.discard(f)
        order.append(f)
        for u in users[f]:
            if u in remaining:
                indeg[u] -= 1
                if indeg[u] == 0:
                    heapq.heappush(ready, u)
    return order


def _texts(records: Iterator[dict]) -> dict[str, str]:
    out = {}
    for r in records:
        if r.get("reason") or r.get("error"):
            continue
        out[json.loads(r["meta"])["path"]] = r["text"]
    return out


def repositories() -> Iterator[tuple[str, dict[str, str]]]:
    """(name, {path: text}) of every benchmark repository."""
    for path in sorted(glob.glob(str(CORPORA / "repos" / "*.tar.gz"))):
        name = archive_name(path) or path
        yield name, _texts(read_archive(path, name, OPTS))
    for bundle in sorted(glob.glob(str(CORPORA / "git" / "*.bundle"))):
        with opened(bundle) as repo:
            name = Path(bundle).stem
            yield name, _texts(read_tree_files(repo, name, resolve(repo, "HEAD"), OPTS))
    import importlib.util

    for pkg in PY_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        files = {
            f"{pkg}/{p.relative_to(root).as_posix()}": p.read_text(errors="replace")
            for p in sorted(root.rglob("*.py*"))
            if p.suffix in (".py", ".pyi") and "__pycache__" not in p.parts
        }
        yield f"py-{pkg}", files


def _pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100.0 * a / b:.1f}%)" if b else "0/0"


def bench_order() -> dict[str, list[int]]:
    totals: dict[str, list[int]] = {}
    head = (
        f"{'repository':<26} {'files':>5} | {'runtime before':>18} {'runtime after':>18} | "
        f"{'outside cycles before':>21} {'after':>18} | {'type-only before':>16} {'after':>14} | "
        f"{'test edges before':>17} {'after':>16}"
    )
    print(head)
    print("-" * len(head))
    for name, files in repositories():
        edges = dependency_edges(files)
        strong, weak = split_edges(edges)
        union = {p: set(ds) for p, ds in edges.items()}
        before, after = legacy_order(union), topological_order(strong, weak)
        assert sorted(before) == sorted(after) == sorted(files)
        b, a = edge_counts(before, strong, weak), edge_counts(after, strong, weak)
        late = {p: {d for d in ds if not is_late(d)} for p, ds in union.items() if is_late(p)}
        lb, la = edge_counts(before, late), edge_counts(after, late)
        row = [
            b.runtime_satisfied,
            a.runtime_satisfied,
            b.runtime,
            *b.runtime_outside_cycles,
            a.runtime_outside_cycles[0],
            b.type_only_satisfied,
            a.type_only_satisfied,
            b.type_only,
            lb.runtime_satisfied,
            la.runtime_satisfied,
            lb.runtime,
        ]
        for k, v in enumerate(row):
            totals.setdefault("all", [0] * len(row))[k] += v
        print(_line(name, len(files), row))
    print("-" * len(head))
    print(_line("all", 0, totals["all"]))
    return totals


def bench_split(max_chars: int) -> None:
    """Runtime import edges served inside the importer's part (the import earlier in the same part's text, as
    a member or a repeated copy) when repositories longer than ``max_chars`` are cut: greedy cuts (before)
    against cuts along the dependency order with small modules repeated (after)."""
    print(f"\nsplitting at max_repo_chars={max_chars}: runtime edges served inside the importer's part")
    tot = [0, 0, 0, 0]
    for name, files in repositories():
        strong, weak = split_edges(dependency_edges(files))
        order = topological_order(strong, weak)
        members = [Member(p, files[p], path=p) for p in order]
        if len(render_parts(name, members)[0].text) <= max_chars:
            continue
        row = []
        for deps, repeat in ((None, 0), (strong, 4000)):
            parts = render_parts(name, members, max_chars, deps, repeat)
            served = 0
            for part in parts:
                seen: set[str] = set()
                for m in [*part.repeated, *part.members]:
                    served += len(strong.get(m.path, set()) & seen)
                    seen.add(m.path)
            row += [served, len(parts), sum(len(p.repeated) for p in parts)]
        total = sum(len(ds) for ds in strong.values())
        tot = [tot[0] + row[0], tot[1] + row[3], tot[2] + total, tot[3] + row[5]]
        print(
            f"  {name:<24} parts {row[1]} -> {row[4]}: {_pct(row[0], total)} -> {_pct(row[3], total)} "
            f"({row[5]} repeated modules)"
        )
    print(f"  all: {_pct(tot[0], tot[2])} -> {_pct(tot[1], tot[2])} ({tot[3]} repeated modules)")


def _line(name: str, n: int, r: list[int]) -> str:
    return (
        f"{name:<26} {n or '':>5} | {_pct(r[0], r[2]):>18} {_pct(r[1], r[2]):>18} | "
        f"{_pct(r[3], r[4]):>21} {_pct(r[5], r[4]):>18} | {_pct(r[6], r[8]):>16} {_pct(r[7], r[8]):>14} | "
        f"{_pct(r[9], r[11]):>17} {_pct(r[10], r[11]):>16}"
    )


def epochs_table(work: str, rule: str, items: int = 400) -> list[dict]:
    """Run demo_corpus(stdlib_code) -> code_quality -> repo_samples -> tokenizer_train -> pack in ``work``
    and return pack's mixture report rows."""
    import yaml

    from flows.engine import Engine
    from flows.validate import load_pipeline

    nodes = {
        "code": {
            "uses": "demo_corpus",
            "params": {"parts": ["stdlib_code"], "max_items_per_part": items, "items_per_shard": 100},
        },
        "tiers": {"uses": "code_quality", "inputs": ["code"]},
        "repos": {"uses": "repo_samples", "inputs": ["tiers"], "params": {"tier_rule": rule}},
        "tok": {
            "uses": "tokenizer_train",
            "inputs": ["code"],
            "params": {"vocab_size": 2000, "sample_docs": 200},
        },
        "packed": {"uses": "pack", "inputs": ["tok", "repos", "tiers"], "params": {"seq_len": 4096}},
    }
    os.makedirs(work, exist_ok=True)
    spec = {"name": "code_bench", "workdir": os.path.join(work, ".arcflow"), "nodes": nodes}
    spec["executor"] = {"n_workers": 1, "processes": False}
    path = os.path.join(work, "pipeline.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(spec, fh, sort_keys=False)
    pipeline = load_pipeline(path)
    engine = Engine(pipeline)
    try:
        manifest = {n: engine.run_node(n)[1] for n in pipeline.order}
    finally:
        engine.close()
    out = Path(work) / ".arcflow" / "outputs" / manifest["packed"]["fingerprint"] / "reports"
    for report in sorted(out.glob("*.json")):
        data = json.loads(report.read_text())
        if isinstance(data, list) and data and "configured_epochs" in data[0]:
            return data
    raise RuntimeError(f"no mixture report under {out}")


def bench_epochs(work: str) -> None:
    print(
        "\nepochs that reach the tokens per tier (pack's mixture report; node `tiers` = the files themselves)"
    )
    for rule in ("max", "mean"):
        print(f"repo_samples tier_rule={rule}:")
        for row in epochs_table(os.path.join(work, rule), rule):
            keys = (
                "node",
                "bucket",
                "docs",
                "tokens_in",
                "packed_tokens",
                "configured_epochs",
                "reached_epochs",
            )
            print("  " + "  ".join(f"{k}={row[k]}" for k in keys))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", action="store_true", help="also run the tier epochs pipeline")
    ap.add_argument("--work", default=None, help="work folder for --epochs (default: a temporary one)")
    args = ap.parse_args()
    totals = bench_order()["all"]
    sat, total = totals[5], totals[4]
    print(
        f"\nruntime edges outside cycles satisfied after: {100.0 * sat / max(total, 1):.2f}% (target >= 95%)"
    )
    for max_chars in (512_000, 128_000):
        bench_split(max_chars)
    if args.epochs:
        bench_epochs(args.work or tempfile.mkdtemp(prefix="code-bench-"))


if __name__ == "__main__":
    main()
