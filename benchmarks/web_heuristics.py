"""Benchmark: arcflow's column-wise Gopher / C4 / FineWeb heuristics against datatrove's filters.

    python benchmarks/web_heuristics.py [--limit N]

Text is extracted once from the shared web corpora with trafilatura (fixed config) and cached as Parquet
under $ARCFLOW_BENCH_CACHE (default: <tmp>/arcflow_bench_cache), outside the timed sections. Then, on the
same texts: datatrove's GopherQualityFilter -> GopherRepetitionFilter -> C4QualityFilter ->
FineWebQualityFilter document by document, and `heuristic_chain` with POLARS_MAX_THREADS=1 (per core, in a
subprocess) and with all threads. It prints docs/s/core, the speed ratio, keep/drop agreement overall and
per corpus, and a table of disagreements by class.

Known disagreement classes (measured on all 10,562 documents: keep/drop agreement 100%, same reason 100%,
CPU 11.4x less than datatrove per core):
- word tokenisation: our spaCy emulation differs from spaCy on ~0.002% of whitespace chunks (runs of quotes,
  times such as `2am`, a few abbreviations such as `Bros.`); a document whose alpha-word ratio, word count or
  average word length sits right at a threshold can change reason or, rarely, verdict. The classes seen so
  far were fixed: a Chinese handbook page (spaCy keeps `Policy）。changelog.Debian.gz` whole as a host name),
  and, found by tests/data_pipes/web/test_datatrove_agreement.py, a final full stop after `|` (spaCy's
  punctuation class holds `|`), host-name labels starting with `_` and uncased top-level domains
  (`ドメイン.テスト`);
- sentence counting for C4 uses Unicode `Sentence_Terminal`, a slightly larger set than spaCy's sentencizer
  list; no document in these corpora is affected;
- duplicated n-grams are keyed by word sequence, datatrove joins words without a separator; not seen here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPORA = (
    "web_python_docs",
    "web_postgresql_docs",
    "web_debian_handbook",
    "web_libreoffice_help_en_us",
    "web_javadoc_boilerplate",
)
CORPORA_DIR = ROOT.parent / "shared" / "corpora"
CACHE_DIR = Path(os.environ.get("ARCFLOW_BENCH_CACHE", Path(tempfile.gettempdir()) / "arcflow_bench_cache"))


def _extract_one(html: str) -> str:
    import trafilatura

    return (
        trafilatura.extract(html, include_comments=False, include_tables=True, fast=True, deduplicate=False)
        or ""
    )


def extracted_texts() -> pl.DataFrame:
    """(corpus, id, text) for all shared web corpora, extracted with trafilatura once and cached."""
    cache = CACHE_DIR / "web_extracted_v1.parquet"
    if cache.exists():
        return pl.read_parquet(cache)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    frames = []
    with ProcessPoolExecutor() as pool:
        for name in CORPORA:
            df = pl.read_parquet(CORPORA_DIR / f"{name}.parquet", columns=["id", "html"])
            texts = list(pool.map(_extract_one, df["html"].to_list(), chunksize=16))
            frames.append(pl.DataFrame({"corpus": name, "id": df["id"], "text": texts}))
    out = pl.concat(frames)
    out.write_parquet(cache.with_suffix(".tmp"))
    cache.with_suffix(".tmp").rename(cache)
    return out


def run_datatrove(texts: list[str]) -> tuple[list[str | None], float, float]:
    """datatrove's four filters in order, one doc at a time: ('filter:reason' or None, seconds)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = [
        ("gopher_quality", GopherQualityFilter()),
        ("gopher_repetition", GopherRepetitionFilter()),
        ("c4", C4QualityFilter()),
        ("fineweb", FineWebQualityFilter()),
    ]
    out: list[str | None] = []
    start, cpu = time.perf_counter(), time.process_time()
    for i, text in enumerate(texts):
        doc = Document(text=text, id=str(i))
        verdict = None
        for name, flt in filters:
            res = flt.filter(doc)
            if res is not True:
                verdict = f"{name}:{res[1] if isinstance(res, tuple) else 'dropped'}"
                break
        out.append(verdict)
    return out, time.perf_counter() - start, time.process_time() - cpu


def run_ours(texts: pl.Series) -> tuple[list[str | None], float, float]:
    """heuristic_chain with default params; reasons translated to 'filter:datatrove_reason'."""
    from data_pipes.web import c4, fineweb, gopher_quality, gopher_repetition
    from data_pipes.web.heuristic_chain import heuristic_chain

    start, cpu = time.perf_counter(), time.process_time()
    _, reasons = heuristic_chain(
        texts,
        gopher_quality.GopherQualityParams(),
        gopher_repetition.GopherRepetitionParams(),
        c4.C4Params(),
        fineweb.FineWebParams(),
    )
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    names = {}
    for module, prefix in (
        (gopher_quality, "gopher_quality"),
        (gopher_repetition, "gopher_repetition"),
        (c4, "c4"),
        (fineweb, "fineweb"),
    ):
        names |= {ours: f"{prefix}:{theirs}" for ours, theirs in module.DATATROVE_REASONS.items()}
    return [None if r is None else names.get(r, r) for r in reasons.to_list()], seconds, cpu_seconds


def _ours_in_subprocess(path: Path, threads: int | None) -> tuple[list[str | None], float, float]:
    env = dict(os.environ)
    if threads:
        env["POLARS_MAX_THREADS"] = str(threads)
    code = (
        "import json,sys,polars as pl;sys.path.insert(0,sys.argv[2]);"
        "from benchmarks.web_heuristics import run_ours;"
        "print(json.dumps(run_ours(pl.read_parquet(sys.argv[1])['text'])))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    reasons, seconds, cpu_seconds = json.loads(proc.stdout.strip().splitlines()[-1])
    return reasons, seconds, cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="documents per corpus (default: all)")
    parser.add_argument(
        "--section", type=int, action="append", help="with --per-language: only these sections (1, 2, 3)"
    )
    parser.add_argument(
        "--per-language",
        action="store_true",
        help="the per-language section instead (benchmarks/web_heuristics_lang.py): keep rates before/after on the "
        "Debian handbook's 26 languages, agreement with datatrove's per-language filters, segmenter speed",
    )
    args = parser.parse_args()
    if args.per_language:
        from benchmarks.web_heuristics_lang import main as per_language

        per_language(set(args.section or ()))
        return
    frame = extracted_texts()
    if args.limit:
        frame = frame.group_by("corpus", maintain_order=True).head(args.limit)
    n = frame.height
    texts_path = CACHE_DIR / f"bench_texts_{n}.parquet"
    frame.select("text").write_parquet(texts_path)
    print(f"{n} documents, {frame['text'].str.len_chars().sum() / 1e6:.1f} M characters")

    ours_1, secs_1, cpu_1 = _ours_in_subprocess(texts_path, threads=1)
    _, secs_all, _ = _ours_in_subprocess(texts_path, threads=None)
    theirs, secs_dt, cpu_dt = run_datatrove(frame["text"].to_list())

    # per core = per CPU-second of the single-threaded run (wall time shown too; a busy machine inflates it)
    print(
        f"datatrove (1 process):       {n / cpu_dt:8.1f} docs/s/core "
        f"(CPU {cpu_dt:.1f} s, wall {secs_dt:.1f} s)"
    )
    print(
        f"ours (POLARS_MAX_THREADS=1): {n / cpu_1:8.1f} docs/s/core (CPU {cpu_1:.1f} s, wall {secs_1:.1f} s)"
    )
    print(
        f"ours (all {os.cpu_count()} threads):      {n / secs_all:8.1f} docs/s wall  (wall {secs_all:.1f} s)"
    )
    print(
        f"speed ratio per core (CPU time): {cpu_dt / cpu_1:.1f}x   wall, 1 thread: {secs_dt / secs_1:.1f}x   "
        f"wall, all threads: {secs_dt / secs_all:.1f}x"
    )

    res = frame.select("corpus").with_columns(
        ours=pl.Series(ours_1, dtype=pl.String), theirs=pl.Series(theirs, dtype=pl.String)
    )
    res = res.with_columns(
        agree=pl.col("ours").is_null() == pl.col("theirs").is_null(),
        same_reason=pl.col("ours").eq_missing(pl.col("theirs")),
    )
    print(
        f"keep/drop agreement overall: {res['agree'].mean():.4%}   "
        f"same reason: {res['same_reason'].mean():.4%}"
    )
    per = res.group_by("corpus", maintain_order=True).agg(
        docs=pl.len(),
        kept_theirs=pl.col("theirs").is_null().sum(),
        kept_ours=pl.col("ours").is_null().sum(),
        agreement=pl.col("agree").mean(),
        same_reason=pl.col("same_reason").mean(),
    )
    with pl.Config(tbl_rows=50, tbl_width_chars=200, fmt_str_lengths=60):
        print(per)
        classes = (
            res.filter(~pl.col("same_reason"))
            .group_by(pl.col("theirs").fill_null("KEPT"), pl.col("ours").fill_null("KEPT"))
            .agg(docs=pl.len(), keep_drop_differs=~pl.col("agree").first())
            .sort("docs", descending=True)
        )
        print("disagreements by class (datatrove verdict vs ours):")
        print(classes)


if __name__ == "__main__":
    main()
