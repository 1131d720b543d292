"""The web-data benchmark: our stages against their anchors, on the demo corpus and on ../shared/corpora.

Part 1 (demo corpus, in this process): the demo's pydoc and package pages, extracted with resiliparse, through
  - datatrove's Gopher quality -> Gopher repetition -> C4 -> FineWeb chain vs ours (docs/s per CPU-second, ratio,
    decision agreement), and
  - datatrove's four-stage MinHash dedup vs ours (wall time ratio, documents removed by each).
Part 2 (shared corpora): the detailed benchmarks, each against its anchor in its own run:
  benchmarks/web_heuristics.py, benchmarks/minhash.py, benchmarks/extraction.py, benchmarks/semdedup_cpu.py.

    python benchmarks/web.py [--limit N] [--skip-shared]

datatrove and spacy come from the `bench` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def demo_texts(limit: int | None) -> list[str]:
    from data_pipes.io.demo_corpus import list_demo_items, render_demo_item
    from data_pipes.web.extract import extract

    items = list_demo_items(("pydoc_html", "package_metadata"), limit)
    texts = []
    for item in items:
        rec = render_demo_item(item)
        if "error" in rec:
            continue
        try:
            text = extract(rec["text"]).text
        except Exception:  # noqa: BLE001 - a page the extractor rejects is simply not part of the benchmark
            continue
        if text.strip():
            texts.append(text)
    return texts


def heuristics_on_demo(texts: list[str]) -> None:
    from benchmarks.web_heuristics import run_datatrove, run_ours

    theirs, _, dt_cpu = run_datatrove(texts)
    ours, _, our_cpu = run_ours(pl.Series("text", texts))
    same = sum((a is None) == (b is None) for a, b in zip(theirs, ours, strict=True))
    n = len(texts)
    print(
        f"heuristics, demo corpus ({n} pages): datatrove {n / dt_cpu:,.0f} docs/CPU-s, ours {n / our_cpu:,.0f} "
        f"docs/CPU-s: {dt_cpu / our_cpu:.1f}x (target >= 10x); keep/drop agreement {same / n:.2%} "
        f"(target >= 99.5%); kept: datatrove {sum(a is None for a in theirs)}, ours {sum(b is None for b in ours)}"
    )


def minhash_on_demo(texts: list[str]) -> None:
    from benchmarks.minhash import _datatrove_hash_fc, run_datatrove
    from benchmarks.minhash import run_ours as minhash_ours
    from data_pipes.dedup.params import MinHashParams

    corpus = texts + [t[: int(len(t) * 0.9)] for t in texts[::5]]  # truncated copies: known near-duplicates
    hash_fc = _datatrove_hash_fc()
    with tempfile.TemporaryDirectory() as tmp:
        dt_wall, dt_cpu, dt_removed = run_datatrove(corpus, Path(tmp))
    ours_wall, ours_cpu, removed = minhash_ours(corpus, MinHashParams(), 1)
    print(
        f"minhash, demo corpus ({len(corpus)} docs, {len(texts[::5])} truncated copies; datatrove hash: {hash_fc}):"
        f" datatrove {dt_wall:.2f} s wall / {dt_cpu:.2f} s CPU, ours {ours_wall:.2f} s / {ours_cpu:.2f} s: "
        f"{dt_wall / ours_wall:.1f}x wall (target >= 5x); removed: datatrove {len(dt_removed)}, ours {len(removed)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="pages per corpus part")
    ap.add_argument("--skip-shared", action="store_true", help="only the demo corpus part")
    args = ap.parse_args()
    texts = demo_texts(args.limit)
    heuristics_on_demo(texts)
    minhash_on_demo(texts)
    if args.skip_shared:
        return
    limit = [] if args.limit is None else ["--limit", str(args.limit)]
    for script in ("web_heuristics.py", "minhash.py", "extraction.py", "semdedup_cpu.py"):
        path = ROOT / "benchmarks" / script
        if path.exists():
            print(f"\n=== {script} ===", flush=True)
            subprocess.run([sys.executable, str(path), *limit], check=False)


if __name__ == "__main__":
    main()
