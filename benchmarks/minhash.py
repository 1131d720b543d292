"""MinHash near-duplicate dedup: arcflow's numpy implementation against datatrove's four-stage MinhashDedup.

Text is extracted once from the shared web corpora's HTML with trafilatura (cached, outside the timed part).
Ground truth: sampled real pages get known edits (drop, insert or swap sentences, change a few words, truncate
the end by ~10 %, swap boilerplate header/footer); each (original, edited) pair is a true near-duplicate.
Both methods then run on the same documents with the same parameters (5-grams, 14 bands x 8 rows):
datatrove with LocalPipelineExecutor (one worker; stage 2 needs one task per band) on a temp folder, and ours
in-process on one core, plus a multi-process figure. Reported: documents/s, the wall-time ratio and the
CPU-time ratio (both run in this process; on a machine loaded by other jobs the CPU figure is the steadier),
recall of the synthetic pairs, precision (a predicted (kept, dropped) pair counts as correct when it is a
known pair or its true 5-gram Jaccard is at least 0.5), and duplicates found among the original pages.

Run: python benchmarks/minhash.py [--limit N] [--edits N] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_pipes.dedup.minhash import minhash_dedup  # noqa: E402
from data_pipes.dedup.normalise import normalise_text  # noqa: E402
from data_pipes.dedup.params import MinHashParams  # noqa: E402

CORPORA = [
    "web_python_docs",
    "web_postgresql_docs",
    "web_debian_handbook",
    "web_libreoffice_help_en_us",
    "web_javadoc_boilerplate",
]
SENTENCE = re.compile(r"(?<=[.!?])\s+")
HEADERS = ["Home | Docs | Download | Community", "Skip to main content. Menu", "Sign in  Register  Search"]
FOOTERS = ["Copyright the authors. All rights reserved.", "Last updated 2024. Privacy policy", "Back to top"]


def _extract(html: str) -> str:
    import trafilatura

    return trafilatura.extract(html, include_comments=False, include_tables=True) or ""


def load_texts(corpora_dir: Path, cache: Path, limit: int) -> list[str]:
    """Extracted texts of up to ``limit`` pages (spread over the corpora), cached as parquet."""
    path = cache / f"extracted_{limit}.parquet"
    if path.exists():
        return pq.read_table(path).column("text").to_pylist()
    per_corpus = max(1, limit // len(CORPORA))
    html: list[str] = []
    for name in CORPORA:
        html += (
            pq.read_table(corpora_dir / f"{name}.parquet", columns=["html"])
            .column("html")
            .to_pylist()[:per_corpus]
        )
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        texts = [t for t in pool.map(_extract, html, chunksize=16) if len(t.split()) >= 20]
    cache.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"text": texts}), path)
    return texts


def edit(text: str, kind: str, rng: random.Random, donor: str) -> str:
    """One known near-duplicate edit of ``text``."""
    sents = SENTENCE.split(text)
    i = rng.randrange(len(sents))
    if kind == "drop" and len(sents) > 3:
        del sents[i]
    elif kind == "insert":
        sents.insert(i, rng.choice(SENTENCE.split(donor)))
    elif kind == "swap" and len(sents) > 2:
        j = rng.randrange(len(sents))
        sents[i], sents[j] = sents[j], sents[i]
    elif kind == "words":
        words = text.split(" ")
        for k in rng.sample(range(len(words)), max(1, len(words) // 50)):
            words[k] = rng.choice(["very", "quite", "data", "system", "new", "other"])
        return " ".join(words)
    elif kind == "truncate":
        return text[: int(len(text) * 0.9)]
    elif kind == "boilerplate":
        return rng.choice(HEADERS) + "\n" + text + "\n" + rng.choice(FOOTERS)
    return " ".join(sents)


def build_corpus(texts: list[str], n_edits: int, seed: int = 0) -> tuple[list[str], dict[int, int]]:
    """Originals followed by edited copies; returns texts and {edited index: original index}."""
    rng = random.Random(seed)
    kinds = ["drop", "insert", "swap", "words", "truncate", "boilerplate"]
    eligible = [i for i, t in enumerate(texts) if len(t.split()) >= 100]
    originals = rng.sample(eligible, min(n_edits, len(eligible)))
    corpus, truth = list(texts), {}
    for k, i in enumerate(originals):
        truth[len(corpus)] = i
        corpus.append(edit(texts[i], kinds[k % len(kinds)], rng, texts[rng.randrange(len(texts))]))
    return corpus, truth


def _datatrove_hash_fc() -> str:
    """datatrove's xxhash config hashes ``str``, which xxhash >= 4 refuses; encode first (as xxhash 3 did)."""
    import datatrove.utils.hashes.xxhash as dt_xxhash
    import xxhash

    try:
        dt_xxhash.xxhash64("probe")
        return "xxhash"
    except TypeError:
        dt_xxhash.xxhash64 = lambda s: xxhash.xxh64_intdigest(s.encode("utf-8") if isinstance(s, str) else s)
        dt_xxhash.xxhash32 = lambda s: xxhash.xxh32_intdigest(s.encode("utf-8") if isinstance(s, str) else s)
        return "xxhash (str encoded to UTF-8 first, xxhash>=4 shim)"


def run_datatrove(corpus: list[str], workdir: Path) -> tuple[float, dict[int, int]]:
    """datatrove's four stages end to end; returns wall and CPU seconds and {dropped doc: kept doc}."""
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.utils.hashing import HashConfig
    from loguru import logger

    logger.remove()
    config = MinhashConfig(hash_config=HashConfig(precision=64, hash_fc="xxhash"))
    docs = [Document(text=t, id=str(i)) for i, t in enumerate(corpus)]
    kept: list[int] = []

    def collect(data, rank: int = 0, world_size: int = 1):  # noqa: ANN001, ANN202
        for doc in data:
            kept.append(int(doc.id))
            yield doc

    sig, buckets, clusters = workdir / "sigs", workdir / "buckets", workdir / "clusters"
    stages = [
        ([docs, MinhashDedupSignature(output_folder=str(sig), config=config)], 1),
        ([MinhashDedupBuckets(input_folder=str(sig), output_folder=str(buckets), config=config)], 14),
        ([MinhashDedupCluster(str(buckets), str(clusters), config=config, save_cluster_id=True)], 1),
        ([docs, MinhashDedupFilter(input_folder=str(clusters)), collect], 1),
    ]
    start, cpu = time.perf_counter(), time.process_time()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        for i, (pipeline, tasks) in enumerate(stages):
            LocalPipelineExecutor(
                pipeline, tasks=tasks, workers=1, logging_dir=str(workdir / f"logs{i}")
            ).run()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    removed = set(range(len(corpus))) - set(kept)
    # cluster ids are written outside the timed part's results; map each dropped doc to its cluster's kept doc
    path = clusters / "000000.clusters"
    pairs = np.fromfile(path, dtype="<u4").reshape(-1, 2) if path.exists() else np.empty((0, 2), np.uint32)
    keeper = {int(c): int(d) for d, c in pairs if int(d) not in removed}
    return seconds, cpu, {int(d): keeper.get(int(c), -1) for d, c in pairs if int(d) in removed}


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = normalise_text(text).split()
    return {tuple(words[i : i + 5]) for i in range(len(words) - 4)}


def _jaccard(a: str, b: str) -> float:
    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / max(1, len(sa | sb))


def evaluate(name: str, corpus: list[str], truth: dict[int, int], removed: dict[int, int]) -> None:
    """Recall/precision of (kept, dropped) decisions. ``removed`` maps dropped doc -> its kept doc, or -1."""
    n_orig = len(corpus) - len(truth)
    # a true pair is found when both documents end in the same cluster (same kept document)
    found = sum(1 for e, o in truth.items() if e in removed and removed[e] in (removed.get(o, o), -1))
    recall = found / max(1, len(truth))
    checked = correct = 0
    for d, k in removed.items():
        partner = k if k >= 0 else truth.get(d, -1)
        if d in truth and (k < 0 or k == truth[d] or truth.get(k) == truth[d]):
            correct, checked = correct + 1, checked + 1
        elif partner >= 0:
            checked += 1
            correct += _jaccard(corpus[d], corpus[partner]) >= 0.5
    precision = correct / max(1, checked)
    real = sum(1 for d in removed if d < n_orig)
    print(
        f"  {name}: recall {recall:.3f} ({found}/{len(truth)} edited copies found), "
        f"precision {precision:.3f} ({correct}/{checked} drops verified), "
        f"duplicates among the {n_orig} original pages: {real}"
    )


def run_ours(corpus: list[str], params: MinHashParams, workers: int) -> tuple[float, float, dict[int, int]]:
    """Wall seconds, CPU seconds of this process (not of pool workers) and {dropped doc: kept doc}."""
    shards = (
        [corpus[i::1] for i in range(1)] if workers == 1 else np.array_split(np.arange(len(corpus)), workers)
    )
    if workers > 1:
        shards = [[corpus[j] for j in idx] for idx in shards]
    start, cpu = time.perf_counter(), time.process_time()
    result = minhash_dedup(shards, params, workers=workers)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    keep = np.concatenate(result.keep)
    roots = dict(zip(result.clusters.doc.tolist(), result.clusters.root.tolist(), strict=True))
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in shards])])

    def index(key: int) -> int:
        return int(offsets[key >> 32] + (key & 0xFFFFFFFF))

    removed = {index(d): index(r) for d, r in roots.items() if d != r}
    assert len(removed) == int((~keep).sum())
    return seconds, cpu, removed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--limit", type=int, default=5000, help="pages taken from the corpora (spread evenly)"
    )
    parser.add_argument("--edits", type=int, default=1000, help="edited near-duplicate copies added")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="processes for the multi-core run"
    )
    parser.add_argument("--corpora", type=Path, default=ROOT.parent / "shared" / "corpora")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "arcflow_minhash_bench")
    args = parser.parse_args()

    texts = load_texts(args.corpora, args.cache, args.limit)
    corpus, truth = build_corpus(texts, args.edits)
    mb = sum(len(t) for t in corpus) / 1e6
    print(
        f"corpus: {len(texts)} extracted pages + {len(truth)} edited copies = {len(corpus)} docs, {mb:.1f} MB"
    )
    hash_fc = _datatrove_hash_fc()
    params = MinHashParams()
    minhash_dedup(
        [corpus[:50]], params
    )  # warm the lazily built normalisation tables (~1 s, once per process)

    with tempfile.TemporaryDirectory() as tmp:
        dt_s, dt_cpu, dt_removed = run_datatrove(corpus, Path(tmp))
    our_s, our_cpu, our_removed = run_ours(corpus, params, workers=1)
    multi = run_ours(corpus, params, workers=args.workers) if args.workers > 1 else None

    n = len(corpus)
    print(f"datatrove MinhashDedup (4 stages, LocalPipelineExecutor, 1 worker, hash_fc={hash_fc}):")
    print(f"  {dt_s:.2f} s, {n / dt_s:.0f} docs/s; CPU {dt_cpu:.2f} s, {n / dt_cpu:.0f} docs per CPU-s")
    print(
        f"arcflow minhash_dedup (1 core): {our_s:.2f} s, {n / our_s:.0f} docs/s; "
        f"CPU {our_cpu:.2f} s, {n / our_cpu:.0f} docs per CPU-s"
    )
    if multi is not None:
        print(
            f"arcflow minhash_dedup ({args.workers} processes): {multi[0]:.2f} s, {n / multi[0]:.0f} docs/s"
        )
        assert multi[2] == our_removed, "multi-process result differs from the single-core one"
    print(f"wall-time ratio datatrove / arcflow (1 core): {dt_s / our_s:.1f}x")
    print(f"CPU-time ratio datatrove / arcflow (1 core, steadier under load): {dt_cpu / our_cpu:.1f}x")
    print("quality against the ground truth:")
    evaluate("datatrove", corpus, truth, dt_removed)
    evaluate("arcflow  ", corpus, truth, our_removed)


if __name__ == "__main__":
    main()
