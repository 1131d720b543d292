"""The `datatrove` kind's overhead against datatrove's own executor, running the same step on the same documents.

Documents: the German, French and Chinese pages of the shared Debian handbook corpus (`../shared/corpora/
web_debian_handbook.parquet`), HTML extracted to text with resiliparse once, cycled to ``--docs`` documents (each
copy its own id), in ``--shards`` Parquet shards of arcflow's document columns (id, text, source, url, lang, meta).

For each step, three runs, each in a fresh process (so each loads its word tokenizer itself), best of
``--repeat``, CPU seconds of the process and its children (datatrove's extractor runs in a child process):

* ``arcflow``: the kind's shard work, `DatatroveStep.run_shard` on every shard: read the shard, rows to Documents,
  the step, Documents to rows, kept / excluded / quarantined Parquet files and the marker (what a Dask worker
  does for the node; the orchestrator's fixed costs are measured by benchmarks/orchestration.py);
* ``datatrove``: `LocalPipelineExecutor(pipeline=[ParquetReader, step, ParquetWriter], tasks=shards, workers=1)`
  over the same shards (zstd, as arcflow writes);
* ``bare``: the step's own ``run`` over Documents already in memory, nothing read or written: the floor.

Steps: GopherQualityFilter (language=deu, German stop words) and FineWebQualityFilter (language=fra) on the
German and French documents, PIIFormatter on all, and the Trafilatura extractor on a fifth of the documents as
HTML. Printed: docs/s per CPU second for each, and arcflow / datatrove as a ratio of CPU seconds (below 1: arcflow
spends less). Run: `nice -n 5 .venv/bin/python benchmarks/datatrove_kind.py --docs 1000` (figures in
docs/DATATROVE.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpora" / "web_debian_handbook.parquet"
DE_STOP = [
    "der",
    "die",
    "und",
    "in",
    "den",
    "von",
    "zu",
    "das",
    "mit",
    "sich",
    "des",
    "auf",
    "für",
    "ist",
    "im",
]
STEPS = {  # name: (import path, args, languages of the documents it runs on, input: text or html, share of docs)
    "gopher_deu": ("datatrove.pipeline.filters.GopherQualityFilter", {"language": "deu", "stop_words": DE_STOP}, ("de",), "text", 1.0),
    "fineweb_fra": ("datatrove.pipeline.filters.FineWebQualityFilter", {"language": "fra"}, ("fr",), "text", 1.0),
    "pii": ("datatrove.pipeline.formatters.PIIFormatter", {}, ("de", "fr", "zh"), "text", 1.0),
    "trafilatura": ("datatrove.pipeline.extractors.Trafilatura", {"favour_precision": True, "timeout": 30}, ("de", "fr", "zh"), "html", 0.2),
}  # fmt: skip


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def build_inputs(folder: Path, docs: int, shards: int) -> dict[str, Path]:
    """One folder of shards per (languages, text or html) combination the steps need."""
    from data_pipes.web.extract import extract

    pages = pl.read_parquet(CORPUS).with_columns(pl.col("lang_hint").str.slice(0, 2).alias("lang"))
    pages = pages.filter(pl.col("lang").is_in(["de", "fr", "zh"])).sort("id")
    texts = [
        extract(h or "", engine="resiliparse", url=u or "").text
        for h, u in zip(pages["html"], pages["url"], strict=True)
    ]
    pages = pages.with_columns(pl.Series("text", texts)).filter(pl.col("text").str.len_chars() > 0)
    out: dict[str, Path] = {}
    for name, (_, _, langs, column, share) in STEPS.items():
        key = f"{'-'.join(langs)}_{column}_{share}"
        target = folder / key
        out[name] = target
        if target.exists():
            continue
        chosen = pages.filter(pl.col("lang").is_in(list(langs)))
        n = max(1, int(docs * share))
        rows = [chosen.row(i % chosen.height, named=True) for i in range(n)]
        frame = pl.DataFrame(
            {
                "id": [f"{r['id']}-{i}" for i, r in enumerate(rows)],
                "text": [r[column] for r in rows],
                "source": [r["source"] for r in rows],
                "url": [r["url"] for r in rows],
                "lang": [r["lang"] for r in rows],
                "meta": [json.dumps({"lang_hint": r["lang_hint"], "license": r["license"]}) for r in rows],
            }
        )
        target.mkdir(parents=True)
        per = -(-frame.height // shards)
        for s in range(shards):
            frame.slice(s * per, per).write_parquet(target / f"part-{s:05d}.parquet", compression="zstd")
    return out


def measure(mode: str, step: str, inputs: Path, scratch: Path) -> dict:
    """In a fresh process: CPU seconds of one run of ``mode`` (arcflow, datatrove, bare)."""
    path, args, *_ = STEPS[step]
    shards = sorted(inputs.glob("part-*.parquet"))
    n = sum(pl.read_parquet(s, columns=["id"]).height for s in shards)
    kept = 0
    if mode == "arcflow":
        from data_pipes.datatrove_bridge import StepRunner
        from tasks.base import ShardTask
        from tasks.datatrove_step import DatatroveParams, DatatroveStep

        kind, params = DatatroveStep(), DatatroveParams(step=path, args=args)
        StepRunner(path, args)  # imports the step's module, as the other modes do before their clock starts
        start, wall = _cpu(), time.perf_counter()
        for i, shard in enumerate(shards):
            kept += kind.run_shard(params, ShardTask(i, {"path": str(shard)}), str(scratch), 0).kept
    elif mode == "datatrove":
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.readers import ParquetReader
        from datatrove.pipeline.writers import ParquetWriter

        from data_pipes.datatrove_resolve import resolve_step

        step_obj = resolve_step(path)(**args)
        executor = LocalPipelineExecutor(
            pipeline=[
                ParquetReader(str(inputs)),
                step_obj,
                ParquetWriter(str(scratch / "out"), compression="zstd"),
            ],
            tasks=len(shards),
            workers=1,
            logging_dir=str(scratch / "logs"),
        )
        start, wall = _cpu(), time.perf_counter()
        stats = executor.run()
        kept = int(_forwarded(stats, step_obj))
    else:
        from datatrove.data import Document

        from data_pipes.datatrove_resolve import resolve_step

        frame = pl.concat([pl.read_parquet(s) for s in shards])
        docs = [Document(text=t, id=i, metadata={}) for i, t in zip(frame["id"], frame["text"], strict=True)]
        step_obj = resolve_step(path)(**args)
        start, wall = _cpu(), time.perf_counter()
        kept = sum(1 for _ in step_obj.run(iter(docs)))
    return {"docs": n, "kept": kept, "cpu_s": _cpu() - start, "wall_s": time.perf_counter() - wall}


def _forwarded(stats: object, step_obj: object) -> int:
    """Documents the step let through, from the executor's merged stats."""
    for entry in getattr(stats, "stats", []):
        if getattr(entry, "name", "") == str(step_obj):
            counters = entry.stats
            if "forwarded" in counters:
                return int(counters["forwarded"].total)
            if "extracted" in counters:
                return int(counters["extracted"].total)
            return int(counters["total"].total)
    return -1


def _child(mode: str, step: str, inputs: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"dtk-{mode}-") as scratch:
        cmd = [sys.executable, __file__, "--child", mode, step, str(inputs), scratch]
        done = subprocess.run(
            cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
        )
        if done.returncode != 0:
            raise RuntimeError(f"{mode} {step} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000, help="documents per step (Trafilatura: a fifth)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each measurement; the best is kept")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    parser.add_argument("--work", default="/tmp/datatrove_kind_bench", help="folder for the input shards")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, step, inputs, scratch = args.child
        print(json.dumps(measure(mode, step, Path(inputs), Path(scratch))))
        return
    if not CORPUS.exists():
        sys.exit(f"{CORPUS} not found: this benchmark reads the shared Debian handbook corpus")
    inputs = build_inputs(Path(args.work) / f"docs{args.docs}-shards{args.shards}", args.docs, args.shards)
    print(f"{'step':<12} {'docs':>5} {'kept':>11}  {'arcflow':>9} {'datatrove':>9} {'bare':>9}  docs/CPU-s  "
          f"{'arcflow/datatrove':>17}")  # fmt: skip
    for step in args.steps.split(","):
        best = {}
        for mode in ("arcflow", "datatrove", "bare"):
            runs = [_child(mode, step, inputs[step]) for _ in range(args.repeat)]
            best[mode] = min(runs, key=lambda r: r["cpu_s"])
        a, d, b = best["arcflow"], best["datatrove"], best["bare"]
        rate = "/".join(f"{r['docs'] / r['cpu_s']:.0f}" for r in (a, d, b))
        print(
            f"{step:<12} {a['docs']:>5} {a['kept']:>5}/{d['kept']:<5}  {a['cpu_s']:>8.2f}s {d['cpu_s']:>8.2f}s "
            f"{b['cpu_s']:>8.2f}s  {rate:<10}  {a['cpu_s'] / d['cpu_s']:>16.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
