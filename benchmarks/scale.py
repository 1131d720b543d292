"""Cost growth of the web branch through the real engine, and Dask strong scaling against an external scheduler.

Cost growth (default mode):

    nice -n 5 python benchmarks/scale.py --sizes 10000,30000,100000[,300000]

For each size it writes a pipeline.yaml (files -> extract_html -> langid -> heuristic_filters -> dedup_exact ->
dedup_minhash -> quality_score (math_density) -> quality_buckets), runs `arcflow run` on it with the embedded
Dask LocalCluster (a fresh store per size, `inline_s: 0` so every shard goes to the workers) and prints seconds
per 1k documents (wall, node walls from the manifests, and CPU seconds of all processes), with the peak RSS of
the driver and of the largest worker.

`--global-steps`: only the steps that see the whole corpus (files -> dedup_exact -> dedup_minhash ->
quality_score -> quality_buckets), on the same corpus in extracted form (the real pages' resiliparse text,
extracted once, with the same seeded edits applied to its lines of 40+ characters): about a fifth of the full
branch's CPU per document, so larger sizes fit in a session; results in scale_results_global.json.

CPU per step: the poller keeps a series of each role's CPU seconds; the nodes of this chain run one after
another, so each node's CPU is the series' difference between its start and the next node's (the manifests'
`started_at`), with `startup` (imports, the Prefect API and the cluster starting, the fingerprints) before the
first node and `finish` after the last (`step_cpu`). Results go to --cache/scale_results.json, one entry per
size (sizes run in separate invocations accumulate); `--table` prints docs/SCALE.md's table from it. `--code
DIR` runs the pipeline from a copy of the tree (`git archive HEAD | tar -x -C DIR`), so that other edits of the
checkout during a run of hours do not change what is measured.

`arcflow` and `dask` are the console scripts next to the Python running this script (its environment's), else
the clone's .venv/bin, else the first on PATH.

How memory is measured: a thread polls the process tree of `arcflow run` with psutil every 0.2 s. The driver is
the `arcflow` process itself; workers are its descendants except Prefect's ephemeral API server (recognised by
`prefect` and `server` in the command line, reported apart). Peak RSS is the largest sample seen (a spike shorter
than 0.2 s can be missed). CPU seconds are each process's last-seen user + system time, summed.

The corpus: the 10,562 pages of the five shared web corpora (web_*.parquet in --corpora DIR, by default
../shared/corpora; read only to generate the corpus files --cache does not hold yet) come first, unchanged; every
later document is generated from them with seeded edits inside the HTML's text nodes
(`variant`: sentences shuffled and 20% of the words swapped for other words of the same text node, so neither
exact nor MinHash dedup matches it to its base page), except that 5% are exact copies of an earlier document
(`exact`, a new id and url) and 10% near-duplicates of one (`near`: 3% of the words swapped; 5-gram Jaccard about
0.8, above MinHash's 0.72 threshold). Document i depends only on (seed, i), so a corpus of N is the first N
documents of a larger one. Parquet files of 1,000 documents each (one shard each) are cached under --cache.

Strong scaling (a host with 16 cores; the GPU host, not this machine):

    dask scheduler --port 8786 &              # or any external scheduler
    python benchmarks/scale.py --strong --scheduler tcp://127.0.0.1:8786 --size 300000 --workers 1,2,4,8,16

For each worker count it starts `dask worker SCHEDULER --nworkers K --nthreads 1` (one single-threaded worker
process per core), waits for the K workers, runs the same pipeline with `executor.address` on a fresh store, stops
the workers and prints wall time, speed-up and parallel efficiency (T1 / (K x TK)) with each node's wall, so the
node that stops scaling is named. `--start-scheduler` starts (and stops) a local `dask scheduler` itself. Per run
it also reports the time outside the nodes (start-up, finish), the workers' busy share (their CPU over K x wall,
per node too) and the scheduler's CPU (`--scheduler-pid` for an external one). `--baseline` compares a run on a
larger corpus with the one-worker time of a smaller one (node walls scaled by the documents entering each node),
for corpora one worker cannot finish in time; `--budget-s` skips or stops the runs that would not fit. A smaller
corpus has another composition (more of its documents are the real pages), so `--baseline-sample N` runs the
series on N shard files taken every k-th (seeded offset) from the large corpus instead, kept in
strong_results_<size>_sample<N>.json; that file named in `--baseline` gives a representative one-worker time per
document, and each run prints which baseline it used. A sample's cost per document is noisy (a few dozen files),
so each run also keeps every shard's own seconds per node, keyed by its corpus file (`shard_seconds`), and is
PAIRED with the baseline on the files both ran (`paired_estimate`): per shard node, the ratio of the two runs'
seconds on the same shards gives the one-worker time of all the run's shard-seconds; the global nodes (exact,
minhash, buckets) and the time outside the nodes stay scaled by documents. Printed as "efficiency (paired)" next
to the document-scaled efficiency, with the occupancy (shard-seconds over K x wall) per node and per run.
`benchmarks/scale_device.sh` runs the series on the lent GPU host (wheels and corpora carried, see there).
"""

from __future__ import annotations

import argparse
import bisect
import calendar
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
CORPORA_DIR = ROOT.parent / "shared" / "corpora"
CORPORA = (
    "web_python_docs",
    "web_postgresql_docs",
    "web_debian_handbook",
    "web_libreoffice_help_en_us",
    "web_javadoc_boilerplate",
)
DOCS_PER_FILE = 1000
EXACT_RATE, NEAR_RATE = 0.05, 0.10
VARIANT_SWAP, NEAR_SWAP = 0.20, 0.03
TEXT_NODE = re.compile(r"(?<=>)([^<]{40,})(?=<)")
SENTENCE = re.compile(r"(?<=[.!?])\s+")
TEXT_LINE = re.compile(r"^([^\n]{40,})$", re.MULTILINE)  # the text form's "text nodes": its long lines


def executable(name: str) -> Path:
    """The ``name`` console script (``arcflow``, ``dask``) to run: the one next to the interpreter running this
    benchmark (``sys.executable``: its environment's), else this clone's ``.venv/bin``, else the first on PATH."""
    here = [Path(sys.executable).parent / name] if sys.executable else []
    for candidate in (*here, ROOT / ".venv" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise SystemExit(
        f"benchmarks: no `{name}` executable next to {sys.executable or 'this Python'}, in "
        f"{ROOT / '.venv' / 'bin'} or on PATH; run the benchmark with the Python of the environment the project "
        f"is installed in (./scripts/setup makes {ROOT / '.venv'})"
    )


# ----------------------------------------------------------------------------------------------- the corpus

_BASE: list[tuple[str, str, str, str]] | None = None  # (id, url, html, lang_hint) of the real pages


def _base() -> list[tuple[str, str, str, str]]:
    global _BASE
    if _BASE is None:
        for name in CORPORA:
            if not (CORPORA_DIR / f"{name}.parquet").is_file():
                raise SystemExit(
                    f"benchmarks: the shared web corpus {CORPORA_DIR / f'{name}.parquet'} is missing; give the "
                    f"folder of the five web_*.parquet corpora ({', '.join(CORPORA)}) with --corpora DIR"
                )
        rows = []
        for name in CORPORA:
            t = pq.read_table(CORPORA_DIR / f"{name}.parquet", columns=["id", "url", "html", "lang_hint"])
            rows += list(
                zip(*(t.column(c).to_pylist() for c in ("id", "url", "html", "lang_hint")), strict=True)
            )
        _BASE = rows
    return _BASE


def _kind(seed: int, i: int, n_base: int) -> str:
    if i < n_base:
        return "original"
    r = random.Random(f"{seed}:{i}:kind").random()
    return "exact" if r < EXACT_RATE else "near" if r < EXACT_RATE + NEAR_RATE else "variant"


def _swap_words(
    html: str, rng: random.Random, rate: float, shuffle: bool, pattern: re.Pattern[str] = TEXT_NODE
) -> str:
    """Edit every text node of ``html`` (``pattern``: every line of 40+ characters of a text): optionally
    shuffle its sentences, swap ``rate`` of its words for other words of the same node (so the language and
    the word statistics stay the page's)."""

    def edit(m: re.Match[str]) -> str:
        node = m.group(1)
        if shuffle:
            sents = SENTENCE.split(node)
            if len(sents) > 1:
                rng.shuffle(sents)
                node = " ".join(sents)
        words = node.split(" ")
        if len(words) > 3:
            for k in range(len(words)):
                if rng.random() < rate:
                    words[k] = words[rng.randrange(len(words))]
        return " ".join(words)

    return pattern.sub(edit, html)


def _source_doc(seed: int, i: int, n_base: int) -> int:
    """An earlier document that is not itself a copy, for copy ``i`` to copy."""
    rng = random.Random(f"{seed}:{i}:src")
    while True:
        j = rng.randrange(i)
        if _kind(seed, j, n_base) in ("original", "variant"):
            return j


_BASE_TEXT: list[tuple[str, str, str, str]] | None = None  # (id, url, extracted text, lang_hint)


def _base_text(cache: Path) -> list[tuple[str, str, str, str]]:
    """The real pages' main text (resiliparse, as the branch's `extract_html`), extracted once into --cache."""
    global _BASE_TEXT
    if _BASE_TEXT is None:
        path = cache / "base-text.parquet"
        if not path.exists():
            from data_pipes.web.extract import ExtractionError, TooLarge, extract

            texts = []
            for _id, url, html, _hint in _base():
                try:
                    texts.append(extract(html, engine="resiliparse", url=url).text)
                except (ExtractionError, TooLarge):
                    texts.append("")
            cols = list(zip(*_base(), strict=True))
            table = pa.table({"id": cols[0], "url": cols[1], "text": texts, "lang_hint": cols[3]})
            pq.write_table(table, path.with_suffix(".tmp"), compression="zstd")
            path.with_suffix(".tmp").rename(path)
        t = pq.read_table(path)
        _BASE_TEXT = list(
            zip(*(t.column(c).to_pylist() for c in ("id", "url", "text", "lang_hint")), strict=True)
        )
    return _BASE_TEXT


def _html(seed: int, i: int, cache: Path | None = None) -> tuple[str, str, str]:
    """(html, lang_hint, kind) of document ``i``; with ``cache``, its extracted text instead (the same edits
    on the lines of the real pages' text, for --global-steps)."""
    base = _base() if cache is None else _base_text(cache)
    pattern = TEXT_NODE if cache is None else TEXT_LINE
    kind = _kind(seed, i, len(base))
    if kind == "original":
        return base[i][2], base[i][3], kind
    if kind == "variant":
        b = random.Random(f"{seed}:{i}:base").randrange(len(base))
        return (
            _swap_words(base[b][2], random.Random(f"{seed}:{i}:edit"), VARIANT_SWAP, True, pattern),
            base[b][3],
            kind,
        )
    html, hint, _ = _html(seed, _source_doc(seed, i, len(base)), cache)
    if kind == "near":
        html = _swap_words(html, random.Random(f"{seed}:{i}:near"), NEAR_SWAP, False, pattern)
    return html, hint, kind


def _write_file(args: tuple[int, int, Path, Path | None]) -> Path:
    seed, k, path, text_cache = args
    if path.exists():
        return path
    ids, urls, htmls, hints, kinds = [], [], [], [], []
    for i in range(k * DOCS_PER_FILE, (k + 1) * DOCS_PER_FILE):
        html, hint, kind = _html(seed, i, text_cache)
        ids.append(f"scale-{seed}-{i:08d}")
        urls.append(f"https://scale.example/{seed}/{i:08d}.html")
        htmls.append(html)
        hints.append(hint)
        kinds.append(kind)
    column = "html" if text_cache is None else "text"
    table = pa.table({"id": ids, "url": urls, column: htmls, "lang_hint": hints, "gen_kind": kinds})
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.rename(path)
    return path


def corpus_files(n: int, cache: Path, seed: int, procs: int, text: bool = False) -> list[Path]:
    """Parquet files holding the first ``n`` documents (a multiple of 1,000), generating the missing ones;
    ``text``: extracted text instead of HTML (--global-steps)."""
    if n % DOCS_PER_FILE:
        raise SystemExit(f"--sizes: {n} is not a multiple of {DOCS_PER_FILE}")
    folder = cache / (f"corpus-text-seed{seed}" if text else f"corpus-seed{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    if text:
        _base_text(cache)  # extracted once, before the pool's processes read it
    jobs = [
        (seed, k, folder / f"part-{k:05d}.parquet", cache if text else None)
        for k in range(n // DOCS_PER_FILE)
    ]
    missing = [j for j in jobs if not j[2].exists()]
    if missing:
        if not text:
            _base()  # read here, before the pool's processes: a missing corpus is said once, not in a worker
        t0 = time.perf_counter()
        with ProcessPoolExecutor(procs) as pool:
            list(pool.map(_write_file, missing))
        print(
            f"  generated {len(missing) * DOCS_PER_FILE:,} documents in {time.perf_counter() - t0:.0f} s",
            flush=True,
        )
    return [j[2] for j in jobs]


# ---------------------------------------------------------------------------------------------- the pipeline


def pipeline_yaml(
    files: list[Path],
    workdir: Path,
    executor: dict[str, object],
    minhash: bool = True,
    global_steps: bool = False,
) -> str:
    """The web branch over ``files``; ``executor`` is the pipeline's executor section. ``global_steps``: the
    files hold extracted text, and only the steps that see the whole corpus run on it (exact and MinHash
    dedup, the buckets' percentiles, with the shard-local quality score they need)."""
    spec = {
        "name": "scale-web",
        "workdir": str(workdir),
        "seed": 1234,
        "executor": executor,
        "nodes": {
            "pages": {
                "uses": "files",
                "params": {
                    "paths": [str(p) for p in files],
                    "format": "parquet",
                    "text_field": "html",
                    "id_field": "id",
                    "url_field": "url",
                    "shard_mb": 0.001,  # one file (1,000 documents) per shard
                },
            },
            "text": {"uses": "extract_html", "inputs": ["pages"], "params": {"engine": "resiliparse"}},
            "lang": {
                "uses": "langid",
                "inputs": ["text"],
                "params": {
                    "mode": "filter",
                    "languages": {"en": 0.5},
                    "keep_other": True,
                    "default_threshold": 0.3,
                },
            },
            "clean": {
                "uses": "heuristic_filters",
                "inputs": ["lang"],
                "params": {
                    "gopher_quality": {
                        "min_doc_words": 30,
                        "min_alpha_words_ratio": 0.5,
                        "max_avg_word_length": 14,
                    },
                    "c4": {
                        "filter_no_terminal_punct": False,
                        "min_num_sentences": 2,
                        "filter_curly_bracket": False,
                    },
                },
            },
            "exact": {"uses": "dedup_exact", "inputs": ["clean"]},
            "minhash": {"uses": "dedup_minhash", "inputs": ["exact"]},
            "scored": {"uses": "quality_score", "inputs": ["minhash"], "params": {"scorer": "math_density"}},
            "buckets": {
                "uses": "quality_buckets",
                "inputs": ["scored"],
                "params": {
                    "method": "percentile",
                    "buckets": [
                        {"name": "top", "min_percentile": 80, "epochs": 3.2},
                        {"name": "high", "min_percentile": 40, "epochs": 1.0},
                        {"name": "mid", "min_percentile": 10, "epochs": 0.5},
                        {"name": "low", "drop": True},
                    ],
                },
            },
        },
    }
    if not minhash:  # the anchor comparison has no exact dedup nor buckets
        raise ValueError("use benchmarks/web_e2e.py for the anchor comparison")
    if global_steps:
        nodes = spec["nodes"]
        assert isinstance(nodes, dict)
        for name in ("text", "lang", "clean"):
            del nodes[name]
        nodes["pages"]["params"]["text_field"] = "text"
        nodes["exact"]["inputs"] = ["pages"]
    return json.dumps(spec, indent=1)  # JSON is YAML


# --------------------------------------------------------------------------------------------- measurement


@dataclass
class Usage:
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds (user + system)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # role -> largest RSS of one process
    processes: dict[str, int] = field(default_factory=dict)  # role -> processes seen
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_mean: float = 0.0  # mean of the 1-minute load average, sampled every 10 s during the run
    stopped: bool = False  # stopped at --stop-at before it finished: only the finished nodes count
    rss_series: list = field(default_factory=list, repr=False)  # the poller's RSS samples (not saved)


def _role(proc: psutil.Process, root: int, extra_roots: set[int]) -> str:
    if proc.pid == root:
        return "driver"
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "worker"
    if "prefect" in cmd and "server" in cmd:
        return "prefect_server"
    if proc.pid in extra_roots and "dask" in cmd:
        return "worker_launcher"
    return "worker"


class Poller:
    """Samples RSS and CPU time of a process tree (plus extra trees, e.g. external dask workers)."""

    def __init__(self, root: int, extra: list[int] | None = None, every_s: float = 0.2) -> None:
        self.root, self.extra, self.every_s = root, list(extra or []), every_s
        self.cpu: dict[int, tuple[str, float]] = {}
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._procs: dict[int, psutil.Process] = {}
        self.roles: dict[int, str] = {}
        self.series: list[tuple[float, dict[str, float]]] = []  # (time.time(), role -> CPU-s so far)
        self.rss_series: list[tuple[float, dict[str, float]]] = []  # (time.time(), role -> largest RSS, MB)

    def _tree(self) -> list[psutil.Process]:
        out = []
        for pid in [self.root, *self.extra]:
            try:
                top = psutil.Process(pid)
                out += [top, *top.children(recursive=True)]
            except psutil.Error:
                continue
        return out

    def _sample(self) -> None:
        rss_now: dict[str, float] = {}
        for p in self._tree():
            proc = self._procs.setdefault(p.pid, p)  # keep one object per pid: its cmdline cached
            try:
                with proc.oneshot():
                    # classified once, while its command line is readable (not when it is exiting)
                    role = self.roles.setdefault(proc.pid, _role(proc, self.root, set(self.extra)))
                    rss = proc.memory_info().rss / 2**20
                    t = proc.cpu_times()
            except psutil.Error:
                continue
            self.cpu[proc.pid] = (role, t.user + t.system)
            self.peak[role] = max(self.peak.get(role, 0.0), rss)
            rss_now[role] = max(rss_now.get(role, 0.0), round(rss, 1))
        now = time.time()
        self.series.append((now, self.usage()[0]))
        self.rss_series.append((now, rss_now))

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._stop.is_set():
            return
        self._sample()
        self._stop.set()
        self._thread.join()

    def usage(self) -> tuple[dict[str, float], dict[str, int]]:
        cpu: dict[str, float] = {}
        count: dict[str, int] = {}
        for role, s in self.cpu.values():
            cpu[role] = cpu.get(role, 0.0) + s
            count[role] = count.get(role, 0) + 1
        return cpu, count


def run_pipeline(
    yaml_path: Path,
    log: Path,
    extra_pids: list[int] | None = None,
    nice: int = 0,
    code: Path | None = None,
    stop_at: float | None = None,
    server: ServerProcs | None = None,
) -> tuple[Usage, list[tuple[float, dict[str, float]]]]:
    """`arcflow run -f yaml_path` under the poller: its usage and the poller's CPU series. ``code``: a copy of
    the project's tree whose packages the run imports (first on PYTHONPATH, ahead of the editable install), so
    edits in the checkout during a long run do not change it. ``stop_at`` (epoch seconds): a run still going
    then is stopped (``Usage.stopped``), and the nodes it finished are still reported. Fails loudly with the
    log's tail. ``server``: a running `arcflow server` in the same Prefect home (``--server``), which the run
    is handed to (its warm runner forks the driver; its API holds the flow run), instead of the ephemeral API."""
    # Prefect's ephemeral API in a private home: no other user's server or database on the measured path
    home = yaml_path.parent / "prefect-home"
    env = dict(os.environ, PREFECT_HOME=str(home), ARCFLOW_SERVER_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(code), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [str(executable("arcflow")), "run", "-f", str(yaml_path)]
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    usage = Usage(load_before=os.getloadavg())
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=yaml_path.parent)
        if server is None:
            poller = Poller(proc.pid, extra_pids).start()  # `nice` execs the command: the same pid
        else:
            poller = ServerPoller(proc.pid, server, extra_pids).start()
        loads = []
        while True:
            try:
                rc = proc.wait(10)
                break
            except subprocess.TimeoutExpired:
                loads.append(os.getloadavg()[0])
                if stop_at is not None and time.time() > stop_at:
                    usage.stopped = True
                    poller.stop()  # the figures up to now; then the run's own process tree goes
                    _stop_tree(proc.pid)
                    if server is not None:  # the runner's fork that runs the command
                        with contextlib.suppress(psutil.Error):
                            for child in psutil.Process(server.runner).children():
                                _stop_tree(child.pid)
                    rc = proc.wait()
                    break
        poller.stop()
    usage.load_mean = sum(loads) / len(loads) if loads else os.getloadavg()[0]
    usage.wall_s = time.perf_counter() - start
    usage.load_after = os.getloadavg()
    usage.cpu_s, usage.processes = poller.usage()
    usage.peak_rss_mb = dict(poller.peak)
    if server is not None and "driver" not in usage.cpu_s and not usage.stopped:
        print(f"  warning: the run was not handed to the warm runner (see {server.home / 'runner.log'})")
    if rc != 0 and not usage.stopped:
        tail = log.read_text()[-3000:]
        raise SystemExit(f"arcflow run failed (exit {rc}); log {log}:\n{tail}")
    usage.rss_series = poller.rss_series
    return usage, poller.series


@dataclass
class ServerProcs:
    """A running `arcflow server` (``--server``): its home and the pids of its Prefect server and warm runner."""

    home: Path
    server: int
    runner: int


class ServerPoller(Poller):
    """The run's processes under a running `arcflow server`: the `arcflow run` client (``client``), the warm
    runner's fork that runs the command (``driver``), the external workers (``extra``), and the Prefect server
    (``prefect_server``) and the runner (``runner``), whose CPU counts from the run's start."""

    def __init__(self, client: int, server: ServerProcs, extra: list[int] | None = None) -> None:
        super().__init__(client, [server.server, server.runner, *(extra or [])])
        self.srv = server
        self.baseline: dict[int, float] = {}
        for pid in (server.server, server.runner):  # their CPU so far: not this run's
            with contextlib.suppress(psutil.Error):
                top = psutil.Process(pid)
                for p in [top, *top.children(recursive=True)]:
                    t = p.cpu_times()
                    self.baseline[p.pid] = t.user + t.system

    def _tree(self) -> list[psutil.Process]:
        procs = super()._tree()
        server_tree = {self.srv.server}
        with contextlib.suppress(psutil.Error):
            server_tree |= {c.pid for c in psutil.Process(self.srv.server).children(recursive=True)}
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
            elif p.pid == self.srv.runner:
                self.roles[p.pid] = "runner"
            elif parent == self.srv.runner:
                self.roles[p.pid] = "driver"
        return procs

    def usage(self) -> tuple[dict[str, float], dict[str, int]]:
        cpu: dict[str, float] = {}
        count: dict[str, int] = {}
        for pid, (role, s) in self.cpu.items():
            cpu[role] = cpu.get(role, 0.0) + s - self.baseline.get(pid, 0.0)
            count[role] = count.get(role, 0) + 1
        return cpu, count


def start_server(home: Path, timeout_s: float = 300) -> ServerProcs:
    """`arcflow server start` on a free port with its state and database in ``home``, once for a series (as a
    cluster's user keeps one running); returns when its warm runner listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    env = dict(os.environ, PREFECT_HOME=str(home), ARCFLOW_SERVER_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(executable("arcflow")), "server", "start", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"arcflow server start failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    deadline = time.monotonic() + timeout_s
    while not (home / "runner.sock").exists():  # the warm runner listens once its imports are done
        if time.monotonic() > deadline:
            stop_server(home)
            raise SystemExit(f"the warm runner did not start in {timeout_s:.0f} s; see {home / 'runner.log'}")
        time.sleep(0.5)
    state = json.loads((home / "server.json").read_text())
    print(
        f"  arcflow server (port {port}) and its warm runner up in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    time.sleep(3)  # let the server's start-up services settle
    return ServerProcs(home, int(state["pid"]), int(state["runner_pid"]))


def stop_server(home: Path) -> None:
    env = dict(os.environ, PREFECT_HOME=str(home), ARCFLOW_SERVER_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    subprocess.run([str(executable("arcflow")), "server", "stop"], env=env, capture_output=True)


def _stop_tree(pid: int, timeout_s: float = 30) -> None:
    """SIGTERM ``pid`` and its descendants (the run's Dask workers and Prefect API), SIGKILL what outlives it."""
    try:
        top = psutil.Process(pid)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


def node_report(workdir: Path) -> dict[str, dict[str, object]]:
    """Per node: wall seconds, summed shard seconds, start (epoch seconds) and counts, from the store's
    manifests."""
    out = {}
    for m in sorted((workdir / "outputs").glob("*/manifest.json")):
        data = json.loads(m.read_text())
        started = data["timings"].get("started_at")
        out[data["node"]] = {
            "wall_s": data["timings"].get("wall_s", 0.0),
            "shard_s": data["timings"].get("shard_s_total", 0.0),
            "started": calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ")) if started else None,
            "counts": data["counts"],
            "drops": data.get("drop_reasons", {}),
        }
    return out


ORDER = ("pages", "text", "lang", "clean", "exact", "minhash", "scored", "buckets")
STEP_ROWS = ("startup", *ORDER, "finish")
# one task per shard and nothing over the whole corpus: their one-worker time can be paired shard by shard
# (exact, minhash and buckets run passes over the whole corpus: theirs stays scaled by documents)
SHARD_NODES = ("pages", "text", "lang", "clean", "scored")
_DOC_ID = re.compile(r"scale-\d+-(\d+)$")


def shard_seconds(
    workdir: Path, files: list[Path], docs_per_file: int | None = None
) -> dict[str, dict[str, float]]:
    """Per node, each shard's own seconds (its wall inside its task, the store's ``shards.json``), keyed by the
    stem of the corpus file the shard came from (``part-00012``): the same key in every run on files of one
    corpus, whole or sampled, so two runs can be compared shard by shard. One file is one shard (``shard_mb``)
    and the map kinds keep their input's shard i as their shard i, so shard i is ``files[i]``; checked on the
    `pages` shards' first document id (``scale-<seed>-<doc>``, whose file is doc // docs_per_file). Returns {}
    (and says why) when that check fails, so that no run is paired on the wrong shards; a node with another
    number of shards than files is left out (and said)."""
    per = docs_per_file or DOCS_PER_FILE
    keys = [f.stem for f in files]
    out: dict[str, dict[str, float]] = {}
    for m in sorted((workdir / "outputs").glob("*/manifest.json")):
        node = json.loads(m.read_text())["node"]
        shards = json.loads((m.parent / "shards.json").read_text())
        if len(shards) != len(keys):
            print(f"  per-shard seconds: {node} has {len(shards)} shards for {len(keys)} files; left out")
            continue
        if node == "pages":
            for s in shards:
                f = pq.ParquetFile(m.parent / s["file"])
                if f.metadata.num_rows == 0:
                    continue  # nothing to check on an empty shard
                first = str(f.read_row_group(0, columns=["id"]).column(0)[0])
                found = _DOC_ID.search(first)
                want = int(keys[s["index"]].rsplit("-", 1)[1])
                if found is None or int(found.group(1)) // per != want:
                    print(
                        f"  per-shard seconds: pages shard {s['index']} starts with {first}, not a document of "
                        f"{keys[s['index']]}; not paired"
                    )
                    return {}
        out[node] = {keys[s["index"]]: round(float(s["seconds"]), 4) for s in shards}
    return out


def step_cpu(
    series: list[tuple[float, dict[str, float]]], nodes: dict[str, dict[str, object]]
) -> dict[str, dict[str, float]]:
    """CPU seconds of each role (driver, worker, Prefect API) spent during each node, from the poller's series.

    The engine runs the nodes of this chain one after another (a node starts when its input is complete), so
    node k owns the time from its start to the next node's start (its summary and manifest included); the
    last node ends at start + wall. ``startup`` is everything before the first node (imports, the Prefect API
    and the Dask cluster starting, the DAG and its fingerprints), ``finish`` everything after the last.
    The manifests' starts have one-second resolution: a node's figure can be off by about one second of
    CPU per core, which matters only for the sub-second nodes."""
    bounds = _step_bounds(series, nodes)
    if not bounds:
        return {}
    times = [t for t, _ in series]

    def at(t: float) -> dict[str, float]:
        i = bisect.bisect_right(times, t) - 1
        return series[i][1] if i >= 0 else {}

    out: dict[str, dict[str, float]] = {}
    for (name, t0), (_, t1) in zip(bounds, bounds[1:], strict=False):
        a, b = at(t0), at(max(t0, t1))
        out[name] = {role: round(b.get(role, 0.0) - a.get(role, 0.0), 2) for role in b}
    return out


def _step_bounds(
    series: list[tuple[float, dict[str, float]]], nodes: dict[str, dict[str, object]]
) -> list[tuple[str, float]]:
    """(step, start time) of startup, each node in order, finish, then ("", end): see ``step_cpu``."""
    timed = sorted(
        ((float(v["started"]), k) for k, v in nodes.items() if v.get("started") is not None),  # type: ignore[arg-type]
    )
    if not series or not timed:
        return []
    last_start, last = timed[-1]
    bounds = [("startup", series[0][0] - 1.0)] + [(name, t) for t, name in timed]
    bounds.append(("finish", last_start + float(nodes[last]["wall_s"])))  # type: ignore[arg-type]
    bounds.append(("", series[-1][0] + 1.0))
    return bounds


def step_rss(
    rss_series: list[tuple[float, dict[str, float]]], nodes: dict[str, dict[str, object]]
) -> dict[str, dict[str, float]]:
    """The largest RSS (MB) of one process of each role during each step (the steps of ``step_cpu``)."""
    bounds = _step_bounds(rss_series, nodes)
    out: dict[str, dict[str, float]] = {}
    for (name, t0), (_, t1) in zip(bounds, bounds[1:], strict=False):
        peak: dict[str, float] = {}
        for t, sample in rss_series:
            if t0 <= t < t1:
                for role, mb in sample.items():
                    peak[role] = max(peak.get(role, 0.0), mb)
        out[name] = peak
    return out


def _print_size(
    n: int, u: Usage, nodes: dict[str, dict[str, object]], steps: dict[str, dict], rss: dict[str, dict]
) -> None:
    node_wall = sum(float(v["wall_s"]) for v in nodes.values())  # type: ignore[arg-type]
    cpu_total = sum(u.cpu_s.values())
    print(
        f"  {n:,} docs: wall {u.wall_s:.0f} s ({1000 * u.wall_s / n:.2f} s/1k), node walls {node_wall:.0f} s "
        f"({1000 * node_wall / n:.2f} s/1k), CPU {cpu_total:.0f} s ({1000 * cpu_total / n:.2f} CPU-s/1k: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(u.cpu_s.items()))
        + f"); peak RSS driver {u.peak_rss_mb.get('driver', 0):.0f} MB, largest worker "
        f"{u.peak_rss_mb.get('worker', 0):.0f} MB; load {u.load_before[0]:.1f} -> {u.load_after[0]:.1f} "
        f"(mean {u.load_mean:.1f})",
        flush=True,
    )
    if u.stopped:
        print(
            "    STOPPED at --stop-at: only the finished nodes below count; 'finish' is the unfinished node"
        )
    for name in STEP_ROWS:
        if name not in steps:  # a node this mode does not run (--global-steps)
            continue
        cpu = steps[name]
        v = nodes.get(name, {})
        c = v.get("counts", {})
        counts = f"  in {c.get('in', 0):>7,} kept {c.get('kept', 0):>7,}" if c else ""  # type: ignore[union-attr]
        walls = (
            f"wall {float(v['wall_s']):7.1f} s  shards {float(v['shard_s']):7.1f} s"  # type: ignore[arg-type]
            if v
            else " " * 35
        )
        print(
            f"    {name:8s} {walls}  CPU {sum(cpu.values()):7.1f} s ({1000 * sum(cpu.values()) / n:6.2f}/1k; "
            f"worker {cpu.get('worker', 0.0):7.1f}; peak RSS worker {rss.get(name, {}).get('worker', 0):5.0f} MB, "
            f"driver {rss.get(name, {}).get('driver', 0):4.0f} MB){counts}",
            flush=True,
        )


def _load_results(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def markdown_table(results: list[dict]) -> str:
    """The cost-growth table of docs/SCALE.md from the results file: CPU-s per 1k documents per step (all
    processes), total, driver and worker peak RSS, load."""
    cols = [c for c in STEP_ROWS if any(c in r.get("steps", {}) for r in results)]  # the nodes that ran
    head = ["documents", "CPU-s/1k total", *cols, "worker / driver / API CPU-s/1k", "driver peak RSS"]
    head += ["worker peak RSS", "wall", "load (start, mean, end)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(results, key=lambda r: r["docs"]):
        n, u, steps = r["docs"], r["usage"], r.get("steps", {})
        stopped = u.get("stopped", False)  # only its finished nodes count; "finish" is the unfinished one
        per = [
            f"{1000 * sum(steps[c].values()) / n:.2f}"
            if c in steps and not (stopped and c == "finish")
            else "–"
            for c in cols
        ]
        roles = " / ".join(
            f"{1000 * u['cpu_s'].get(k, 0.0) / n:.1f}" for k in ("worker", "driver", "prefect_server")
        )
        lb, la = u["load_before"][0], u["load_after"][0]
        total = "stopped" if stopped else f"**{1000 * sum(u['cpu_s'].values()) / n:.2f}**"
        lines.append(
            f"| {n:,} | {total} | "
            + " | ".join(per)
            + f" | {roles} | {u['peak_rss_mb'].get('driver', 0):,.0f} MB | {u['peak_rss_mb'].get('worker', 0):,.0f} MB"
            f" | {u['wall_s']:,.0f} s | {lb:.1f}, {u.get('load_mean', 0.0):.1f}, {la:.1f} |"
        )
    return "\n".join(lines)


def _results_path(args: argparse.Namespace) -> Path:
    return args.cache / ("scale_results_global.json" if args.global_steps else "scale_results.json")


def cost_growth(args: argparse.Namespace) -> None:
    path = _results_path(args)
    for n in args.sizes:
        print(f"size {n:,}", flush=True)
        files = corpus_files(n, args.cache, args.seed, args.gen_procs, text=args.global_steps)
        work = args.cache / (f"run-global-{n}" if args.global_steps else f"run-{n}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        executor = {"n_workers": args.n_workers, "inline_s": 0}
        yml = work / "pipeline.yaml"
        yml.write_text(pipeline_yaml(files, work / "store", executor, global_steps=args.global_steps))
        usage, series = run_pipeline(
            yml, work / "run.log", nice=args.nice, code=args.code, stop_at=args.stop_at
        )
        nodes = node_report(work / "store")
        (work / "cpu_series.json").write_text(json.dumps(series))  # to recompute the steps' CPU later
        steps = step_cpu(series, nodes)
        steps_rss = step_rss(usage.rss_series, nodes)
        usage.rss_series = []
        _print_size(n, usage, nodes, steps, steps_rss)
        entry = {"docs": n, "usage": asdict(usage), "steps": steps, "steps_rss_mb": steps_rss, "nodes": nodes}
        entry["code"] = str(args.code) if args.code else str(ROOT)
        # one entry per size, kept across invocations (the sizes are run one at a time)
        results = [r for r in _load_results(path) if r["docs"] != n] + [entry]
        path.write_text(json.dumps(sorted(results, key=lambda r: r["docs"]), indent=1))
    results = _load_results(path)
    if len(results) > 1:
        first = results[0]
        print(f"growth against the smallest size ({path}):")
        for r in results:
            n0, n = first["docs"], r["docs"]
            u0, u = first["usage"], r["usage"]
            w0 = sum(v["wall_s"] for v in first["nodes"].values()) / n0
            w = sum(v["wall_s"] for v in r["nodes"].values()) / n
            c0, c = sum(u0["cpu_s"].values()) / n0, sum(u["cpu_s"].values()) / n
            print(
                f"  {n:>7,}: node-wall/doc x{w / w0:.2f}, CPU/doc x{c / c0:.2f}, "
                f"driver peak RSS x{u['peak_rss_mb']['driver'] / u0['peak_rss_mb']['driver']:.2f}"
            )
        print(markdown_table(results))


# ------------------------------------------------------------------------------------------- strong scaling


def _start_workers(
    scheduler: str, k: int, log: Path, memory: str = "auto", dask_settings: str = "arcflow"
) -> subprocess.Popen[bytes]:
    """``dask worker --nworkers K --nthreads 1``; with ``dask_settings="arcflow"`` under the environment
    `flows.placement.worker_commands` gives a cluster's workers (the profiler off), else Dask's defaults."""
    dask = str(executable("dask"))
    cmd = [dask, "worker", scheduler, "--nworkers", str(k), "--nthreads", "1", "--no-dashboard"]
    cmd += ["--memory-limit", memory, "--resources", "CPU=1"]  # arcflow asks each shard task for CPU=cpus
    cmd += ["--local-directory", str(log.parent / "dask-worker-space")]
    env = dict(os.environ)
    if dask_settings == "arcflow":
        from flows.placement import worker_environment

        env.update(worker_environment())
    out = open(log, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def _wait_workers(scheduler: str, k: int, timeout_s: float = 300) -> None:
    from distributed import Client

    with Client(scheduler, timeout=60) as client:
        client.wait_for_workers(k, timeout=timeout_s)
        n = len(client.scheduler_info(n_workers=-1)["workers"])
    if n != k:
        raise SystemExit(f"scheduler has {n} workers, expected {k}: stop other workers of {scheduler} first")


def _stop(proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)  # our own session: the launcher and its worker processes
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _tree_cpu(pid: int) -> float:
    """User + system CPU seconds so far of ``pid`` and its descendants (0 when it is gone)."""
    try:
        top = psutil.Process(pid)
        procs = [top, *top.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _phase_timings(workdir: Path) -> dict[str, dict[str, float]]:
    """Per node, the phase timings its kind recorded in the manifest (the global steps' passes)."""
    out = {}
    for m in sorted((workdir / "outputs").glob("*/manifest.json")):
        data = json.loads(m.read_text())
        out[data["node"]] = data["timings"].get("phases", {})
    return out


def _migrate_prefect_home(home: Path) -> None:
    """Create (migrate) Prefect's database in ``home`` once, before the timed runs, so no run pays for it: every
    run of the series then starts its ephemeral API on an existing database, as on any machine after its first
    run (docs/SCALE.md, end to end)."""
    import sys

    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PREFECT_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"migrating Prefect's database in {home} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    print(f"  Prefect database in {home} ready in {time.perf_counter() - t0:.1f} s", flush=True)


def strong(args: argparse.Namespace) -> None:
    """The series of ``args.workers`` counts on one corpus of ``args.size`` documents, each against the external
    scheduler on a fresh store; results accumulate (one entry per worker count) in
    --cache/strong_results_<size>.json (``--server``: strong_results_<size>_server.json), copied to --out after
    each run. ``--budget-s``: a run predicted (from the
    runs done or --baseline, at 75% efficiency) to end past the budget is skipped, and a run still going then is
    stopped."""
    deadline = time.time() + args.budget_s if args.budget_s else None
    files = corpus_files(args.size, args.cache, args.seed, args.gen_procs)
    sample = None
    if args.baseline_sample:  # the series on every k-th shard of the corpus: its composition, fewer documents
        files, sample = sample_files(files, args.baseline_sample, args.seed)
        print(
            f"  baseline sample: {sample['files']} of {len(sample['of_files'])} shard files (every "
            f"k={sample['every']} from offset {sample['offset']}), {sample['docs']:,} of {args.size:,} documents",
            flush=True,
        )
    sched_proc = None
    scheduler = args.scheduler
    if args.start_scheduler:
        port = 8786 if scheduler is None else int(scheduler.rsplit(":", 1)[1])
        scheduler = f"tcp://127.0.0.1:{port}"
        log = args.cache / "scheduler.log"
        sched_proc = subprocess.Popen(
            [str(executable("dask")), "scheduler", "--port", str(port), "--no-dashboard"],
            stdout=open(log, "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if scheduler is None:
        raise SystemExit("--strong needs --scheduler tcp://HOST:PORT (or --start-scheduler)")
    sched_pid = sched_proc.pid if sched_proc is not None else args.scheduler_pid
    tag = "_server" if args.server else ""  # runs under the server are kept apart from the ephemeral API's
    if sample is not None:
        tag = f"_sample{sample['files']}" + tag
    path = args.cache / f"strong_results_{args.size}{tag}.json"
    results = _load_results(path)
    home = (
        args.cache / f"prefect-home{tag}"
    )  # one Prefect database for the series, migrated before the first run
    _migrate_prefect_home(home)
    baseline = _baseline(args)
    server = start_server(home) if args.server else None
    try:
        for k in args.workers:
            done = [r for r in results if not r["usage"].get("stopped")]
            predicted = None  # at perfect scaling from the runs done, else from --baseline
            if done:
                predicted = min(float(r["usage"]["wall_s"]) * int(r["workers"]) / k for r in done)
            elif baseline is not None:
                predicted = _one_worker_wall(baseline, args.size)[0] / k
            if deadline is not None and predicted is not None:
                predicted /= 0.75  # a stopped run gives nothing: skip unless it fits at 75% efficiency
                if time.time() + predicted > deadline:
                    print(
                        f"  {k} workers: skipped, about {predicted:.0f} s would pass --budget-s", flush=True
                    )
                    continue
            work = args.cache / f"strong-{args.size}-{k}{tag}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            (work / "prefect-home").symlink_to(home, target_is_directory=True)  # run_pipeline's Prefect home
            workers = _start_workers(
                scheduler, k, work / "workers.log", args.worker_memory, args.dask_settings
            )
            try:
                _wait_workers(scheduler, k)
                yml = work / "pipeline.yaml"
                yml.write_text(_strong_yaml(files, work / "store", scheduler, args.skip_langs))
                sched_cpu0 = _tree_cpu(sched_pid) if sched_pid else 0.0
                usage, series = run_pipeline(
                    yml,
                    work / "run.log",
                    extra_pids=[workers.pid],
                    nice=args.nice,
                    code=args.code,
                    stop_at=deadline,
                    server=server,
                )
                sched_cpu = _tree_cpu(sched_pid) - sched_cpu0 if sched_pid else None
            finally:
                _stop(workers)
            nodes = node_report(work / "store")
            usage.rss_series = []
            entry = {
                "workers": k,
                "docs": sample["docs"] if sample is not None else args.size,
                "shards": len(files),
                "cpu_count": os.cpu_count(),
                "usage": asdict(usage),
                "nodes": nodes,
                "steps": step_cpu(series, nodes),  # each node's CPU by role (workers: busy time of the node)
                "phases": _phase_timings(work / "store"),
                # {node: {corpus file stem: seconds}}: pairs this run's shards with another run's (paired_estimate)
                "shard_seconds": shard_seconds(work / "store", files),
                "scheduler_cpu_s": sched_cpu,
                "prefect_api": "server" if server is not None else "ephemeral",
                "dask_settings": args.dask_settings,
            }
            if sample is not None:  # what --baseline prints when a larger run is measured against it
                entry["sample_of"] = {k2: v for k2, v in sample.items() if k2 != "of_files"}
            results = sorted([r for r in results if r["workers"] != k] + [entry], key=lambda r: r["workers"])
            path.write_text(json.dumps(results, indent=1))
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, args.out / path.name)
            _print_strong(results, baseline, only=k)  # this run; the whole series in the table at the end
    finally:
        if server is not None:
            stop_server(home)
        if sched_proc is not None:
            _stop(sched_proc)
    if results:
        print(strong_markdown(results, baseline))
        if paired := paired_markdown(results, baseline):
            print(f"\n{paired}")


def sample_files(files: list[Path], n: int, seed: int) -> tuple[list[Path], dict]:
    """Every k-th of ``files`` (k = len // n), starting at an offset in [0, k) drawn from ``seed``: ``n`` shard
    files spread uniformly over the corpus, so a one-worker baseline on them has the large run's composition (the
    real pages sit in the first files, the generated variants after). Returns the files and a record of the
    sample (files, every, offset, docs, of_docs)."""
    if not 0 < n <= len(files):
        raise SystemExit(f"--baseline-sample {n}: give 1 to {len(files)} (the corpus's shard files)")
    every = len(files) // n
    offset = random.Random(seed).randrange(every)
    picked = files[offset::every][:n]
    record = {
        "files": len(picked),
        "every": every,
        "offset": offset,
        "docs": len(picked) * DOCS_PER_FILE,
        "of_docs": len(files) * DOCS_PER_FILE,
        "of_files": files,
    }
    return picked, record


def _strong_yaml(files: list[Path], store: Path, scheduler: str, skip_langs: str) -> str:
    """The branch on the external scheduler. With --skip-langs (a host without the unspaced scripts' segmenters),
    langid keeps every lid.176 language at the same thresholds except Japanese, Chinese (with Wu and Cantonese)
    and Thai and the skipped ones, which it drops: a generated variant of another language's page can be labelled
    so (one was labelled `ja` in the first 256,000-document run on the GPU host, which then failed in `clean`)."""
    spec = json.loads(pipeline_yaml(files, store, {"address": scheduler}))
    skip = {x.strip().lower() for x in skip_langs.split(",") if x.strip()}
    if skip:
        from data_pipes.web.langid import load_model

        labels = [x.removeprefix("__label__") for x in load_model().get_labels()]
        gone = skip | {"ja", "zh", "wuu", "yue", "th"}
        params = spec["nodes"]["lang"]["params"]
        listed, floor = params["languages"], params["default_threshold"]
        params["languages"] = {x: listed.get(x, floor) for x in labels if x not in gone}
        params["keep_other"] = False
    return json.dumps(spec, indent=1)


def _baseline(args: argparse.Namespace) -> dict | None:
    """The fewest-worker run of --baseline's results (a smaller corpus), for runs whose own series has none."""
    if args.baseline is None:
        return None
    runs = [r for r in _load_results(args.baseline) if not r["usage"].get("stopped")]
    if not runs:
        print(f"  baseline: {args.baseline} holds no finished run; no efficiency", flush=True)
        return None
    base = min(runs, key=lambda r: r["workers"])
    print(f"  baseline: {baseline_words(base)} ({args.baseline})", flush=True)
    return base


def baseline_words(base: dict) -> str:
    """Which one-worker time the efficiencies use: a sample of the large corpus, or a smaller corpus scaled by
    documents (whose composition differs: its real pages weigh more)."""
    k, n = int(base["workers"]), int(base["docs"])
    s = base.get("sample_of")
    if s:
        return (
            f"{k} worker(s) on a representative sample, {s['files']} shard files (every k={s['every']}) = "
            f"{n:,} of {int(s['of_docs']):,} documents, scaled per node by documents in"
        )
    return f"{k} worker(s) on a smaller corpus of {n:,} documents, scaled per node by documents in"


def _node_walls(r: dict) -> dict[str, float]:
    return {k: float(v["wall_s"]) for k, v in r["nodes"].items()}


def _one_worker_wall(
    base: dict, docs: int, nodes: dict[str, dict] | None = None
) -> tuple[float, dict[str, float]]:
    """The single-worker wall time of a run on ``docs`` documents, from ``base`` (k0 workers on n0 documents): each
    node's wall times k0, scaled by the documents entering the node (``nodes``: the run's node report; else by
    docs / n0), and the time outside the nodes (start-up, finish) taken as fixed. With ``base`` on the same corpus
    this is k0 x its wall (the measured wall when k0 = 1)."""
    k0, n0 = int(base["workers"]), int(base["docs"])
    walls = _node_walls(base)
    outside = float(base["usage"]["wall_s"]) - sum(walls.values())
    if docs == n0:
        return k0 * float(base["usage"]["wall_s"]), {k: v * k0 for k, v in walls.items()}
    est = {}
    for name, wall in walls.items():
        n_in = int(base["nodes"][name].get("counts", {}).get("in", 0))
        run_in = int((nodes or {}).get(name, {}).get("counts", {}).get("in", 0))
        est[name] = wall * k0 * (run_in / n_in if n_in and run_in else docs / n0)
    return outside + sum(est.values()), est


def paired_estimate(run: dict, base: dict) -> dict | None:
    """The one-worker time of ``run`` paired shard by shard with ``base`` (a run with fewer workers on some of
    the same corpus files, e.g. --baseline-sample's), free of the sample's per-document noise.

    For each shard node (``SHARD_NODES``) the cost ratio r = (``run``'s seconds of the shards both runs hold) /
    (``base``'s seconds of those shards): what a shard costs at K workers against at k0, from the same
    documents. The node's one-worker wall is then ``base``'s node wall x k0 scaled by (``run``'s shard-seconds
    of the node / r) over ``base``'s shard-seconds of the node: the shard work of the whole corpus at ``base``'s
    cost per shard, with ``base``'s share of time between tasks. The global nodes (and a shard node with no
    shard in common) keep the document-scaled estimate of ``_one_worker_wall``, as does the time outside the
    nodes. Also ``t1_shards``: the same with the shard nodes' bare shard-seconds / r (no time between tasks: a
    lower bound of T1). Occupancy: shard-seconds over K x wall, per node and for the run (all nodes' shard
    seconds over the run's wall; the global nodes' passes other than their shard writes are not in it).
    None when either run lacks per-shard seconds (results of before they were kept) or ``run`` was stopped."""
    big, small = run.get("shard_seconds"), base.get("shard_seconds")
    if not big or not small or run["usage"].get("stopped"):
        return None
    k, k0 = int(run["workers"]), int(base["workers"])
    wall = float(run["usage"]["wall_s"])
    _, doc_est = _one_worker_wall(base, int(run["docs"]), run["nodes"])
    base_walls = _node_walls(base)
    outside = float(base["usage"]["wall_s"]) - sum(base_walls.values())
    t1 = t1_shards = outside
    nodes: dict[str, dict] = {}
    for name, base_wall in base_walls.items():
        node: dict = {"t1": doc_est[name], "paired": False}
        run_wall = float(run["nodes"].get(name, {}).get("wall_s", 0.0))
        mine, theirs = big.get(name, {}), small.get(name, {})
        shard_total = sum(mine.values())
        if run_wall > 0:
            node["occupancy"] = shard_total / (k * run_wall)
        common = [key for key in theirs if mine.get(key, 0.0) > 0 and theirs[key] > 0]
        node.update(matched=len(common), of=len(theirs))
        base_total = sum(theirs.values())
        if name in SHARD_NODES and common and base_total > 0:
            r = sum(mine[key] for key in common) / sum(theirs[key] for key in common)
            shards = shard_total / r  # the whole corpus's shard work at base's cost per shard
            node.update(r=r, paired=True, t1=k0 * base_wall * shards / base_total, t1_shards=shards)
        t1 += node["t1"]
        t1_shards += node.get("t1_shards", node["t1"])
        if run_wall > 0:
            node["eff"] = node["t1"] / (k * run_wall)
        nodes[name] = node
    shard_s = sum(sum(v.values()) for v in big.values())
    return {
        "t1": t1,
        "eff": t1 / (k * wall),
        "t1_shards": t1_shards,
        "eff_shards": t1_shards / (k * wall),
        "occupancy": shard_s / (k * wall),
        "nodes": nodes,
        "global": [n for n, v in nodes.items() if not v["paired"]],
    }


def _strong_rows(results: list[dict], baseline: dict | None) -> list[dict]:
    """Per run: wall, speed-up and efficiency against the one-worker wall (T1 / (K x TK)), the time outside the
    nodes, the workers' busy share (their CPU over K x wall), and per node wall, efficiency and busy share."""
    done = [r for r in results if not r["usage"].get("stopped")]
    own = min(done, key=lambda r: r["workers"]) if done else None
    rows = []
    for r in results:
        k, n, u = int(r["workers"]), int(r["docs"]), r["usage"]
        base = baseline if baseline is not None else own
        wall = float(u["wall_s"])
        row: dict = {"workers": k, "docs": n, "wall": wall, "stopped": bool(u.get("stopped"))}
        walls = _node_walls(r)
        row["outside"] = wall - sum(walls.values())
        worker_cpu = float(u["cpu_s"].get("worker", 0.0))
        row["busy"] = worker_cpu / (k * wall)
        row["cpu"] = {role: float(v) for role, v in u["cpu_s"].items()}
        row["scheduler_cpu"] = r.get("scheduler_cpu_s")
        row["estimated"] = base is not None and int(base["docs"]) != n
        if base is not None:
            t1, t1_nodes = _one_worker_wall(base, n, r["nodes"])
            row["t1"], row["speedup"], row["eff"] = t1, t1 / wall, t1 / (k * wall)
            row["nodes_eff"] = sum(t1_nodes.values()) / (k * sum(walls.values())) if walls else None
            row["paired"] = paired_estimate(r, base)
        else:
            t1_nodes = {}
        row["occupancy"] = sum(float(v.get("shard_s", 0.0)) for v in r["nodes"].values()) / (k * wall)
        row["nodes"] = {}
        for name in ORDER:
            if name not in walls or walls[name] <= 0:
                continue
            busy = sum(v for role, v in r.get("steps", {}).get(name, {}).items() if role == "worker")
            eff = t1_nodes[name] / (k * walls[name]) if name in t1_nodes else None
            row["nodes"][name] = {"wall": walls[name], "eff": eff, "busy": busy / (k * walls[name])}
            row["nodes"][name]["occupancy"] = float(r["nodes"][name].get("shard_s", 0.0)) / (k * walls[name])
        rows.append(row)
    return rows


def _print_strong(results: list[dict], baseline: dict | None = None, only: int | None = None) -> None:
    """Print each run of ``results`` (``only``: the run of that many workers) with its nodes; speed-ups and
    efficiencies are against the series' one-worker run (or --baseline)."""
    for row in _strong_rows(results, baseline):
        k = row["workers"]
        if only is not None and k != only:
            continue
        head = f"  {k:>2} workers, {row['docs']:,} docs: wall {row['wall']:.0f} s"
        if row["stopped"]:
            head += " (STOPPED at --budget-s: only its finished nodes count)"
        elif "eff" in row:
            est = " (one-worker time estimated from --baseline)" if row["estimated"] else ""
            head += f", speed-up {row['speedup']:.2f}, efficiency {row['eff']:.0%}{est}"
            head += f" (nodes only {row['nodes_eff']:.0%})" if row.get("nodes_eff") is not None else ""
            p = row.get("paired")
            head += (
                f", efficiency (paired) {p['eff']:.0%} (shard-seconds only {p['eff_shards']:.0%})"
                if p
                else ", efficiency (paired) - (a run without per-shard seconds)"
            )
        cpu = ", ".join(f"{role} {v:.0f}" for role, v in sorted(row["cpu"].items()))
        sched = row["scheduler_cpu"]
        print(
            head + f"; outside the nodes {row['outside']:.0f} s; workers busy {row['busy']:.0%} of K x wall; "
            f"occupancy {row['occupancy']:.0%}; "
            f"CPU-s {cpu}" + (f", scheduler {sched:.1f}" if sched is not None else ""),
            flush=True,
        )
        paired = (row.get("paired") or {}).get("nodes", {})
        for name, v in row["nodes"].items():
            eff = f"{v['eff']:.0%}" if v["eff"] is not None else "-"
            pn = paired.get(name)
            pair = ""
            if pn and pn["paired"]:
                pair = f"  paired {pn['eff']:.0%} (r {pn['r']:.2f} on {pn['matched']} of {pn['of']} shards)"
            elif pn:
                why = "a global node" if name not in SHARD_NODES else "no shard in common"
                pair = f"  paired {pn['eff']:.0%} (by documents: {why})"
            print(
                f"      {name:8s} wall {v['wall']:7.1f} s  efficiency {eff:>5}  workers busy {v['busy']:.0%}  "
                f"occupancy {v['occupancy']:.0%}{pair}"
            )


def strong_markdown(results: list[dict], baseline: dict | None = None) -> str:
    """docs/SCALE.md's strong-scaling table: per run, wall, speed-up, efficiency (one-worker time scaled by
    documents, and paired shard by shard: ``paired_estimate``), the time outside the nodes, the workers' busy
    share, the occupancy (shard-seconds over K x wall), and each node's wall with its efficiency."""
    rows = _strong_rows(results, baseline)
    cols = [c for c in ORDER if any(c in r["nodes"] for r in rows)]
    head = ["workers", "documents", "wall", "speed-up", "efficiency", "efficiency (paired)", "nodes only"]
    head += ["outside nodes", "workers busy", "occupancy"]
    head += [f"{c} s (eff.)" for c in cols] + ["scheduler CPU-s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        est = " (est.)" if r.get("estimated") else ""
        cells = [
            str(r["workers"]),
            f"{r['docs']:,}",
            f"{r['wall']:,.0f} s" + (" stopped" if r["stopped"] else ""),
        ]
        cells += [f"{r['speedup']:.2f}{est}", f"**{r['eff']:.0%}**{est}"] if "eff" in r else ["-", "-"]
        cells += [f"**{r['paired']['eff']:.0%}**" if r.get("paired") else "-"]
        cells += [f"{r['nodes_eff']:.0%}" if r.get("nodes_eff") is not None else "-"]
        cells += [f"{r['outside']:.0f} s", f"{r['busy']:.0%}", f"{r['occupancy']:.0%}"]
        for c in cols:
            v = r["nodes"].get(c)
            eff = f" ({v['eff']:.0%})" if v and v["eff"] is not None else ""
            cells.append(f"{v['wall']:.1f}{eff}" if v else "-")
        cells.append(f"{r['scheduler_cpu']:.1f}" if r["scheduler_cpu"] is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_markdown(results: list[dict], baseline: dict | None = None) -> str:
    """Per run with a paired estimate, per node: the shard cost ratio r against the baseline (with how many of the
    baseline's shards the run also holds), the occupancy and the paired efficiency; "" when no run has one."""
    rows = [r for r in _strong_rows(results, baseline) if r.get("paired") and not r["stopped"]]
    if not rows:
        return ""
    cols = [c for c in ORDER if any(c in r["paired"]["nodes"] for r in rows)]
    head = ["workers", "documents", "T1 (paired)", "efficiency (paired)", "shard-seconds only"]
    head += [f"{c}: r, matched, occupancy, eff." for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p = r["paired"]
        cells = [str(r["workers"]), f"{r['docs']:,}", f"{p['t1']:,.0f} s", f"**{p['eff']:.0%}**"]
        cells.append(f"{p['eff_shards']:.0%}")
        for c in cols:
            v = p["nodes"].get(c)
            if v is None:
                cells.append("-")
                continue
            occ = f"{v['occupancy']:.0%}" if "occupancy" in v else "-"
            eff = f"{v['eff']:.0%}" if "eff" in v else "-"
            ratio = f"{v['r']:.2f}, {v['matched']}/{v['of']}" if v["paired"] else "by documents"
            cells.append(f"{ratio}, {occ}, {eff}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    global CORPORA_DIR, DOCS_PER_FILE, _BASE  # --corpora, --docs-per-file, --skip-langs
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,30000,100000", help="documents per run, multiples of 1,000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "arcflow_scale")
    ap.add_argument("--n-workers", type=int, default=2, help="LocalCluster workers (cost growth)")
    ap.add_argument("--gen-procs", type=int, default=2, help="processes generating the corpus")
    ap.add_argument("--nice", type=int, default=0, help="run arcflow under nice -n N")
    ap.add_argument("--strong", action="store_true", help="strong scaling against an external scheduler")
    ap.add_argument("--scheduler", default=None, help="tcp://HOST:PORT of a running `dask scheduler`")
    ap.add_argument("--start-scheduler", action="store_true", help="start a local `dask scheduler` too")
    ap.add_argument("--size", type=int, default=300000, help="documents (strong scaling)")
    ap.add_argument("--workers", default="1,2,4,8,16", help="worker counts (strong scaling)")
    ap.add_argument("--generate-only", action="store_true", help="only write the corpus files")
    ap.add_argument(
        "--corpora", type=Path, default=CORPORA_DIR, help="folder of the shared web_*.parquet corpora"
    )
    ap.add_argument(
        "--docs-per-file",
        type=int,
        default=DOCS_PER_FILE,
        help="documents per corpus file (= per shard); another value than 1,000 uses --cache/docs-per-file-N",
    )
    ap.add_argument(
        "--skip-langs",
        default="",
        help="leave the real pages of these languages (lang_hint prefixes, e.g. ja,zh) out of the corpus, and "
        "(strong scaling) drop the documents langid labels so: for a host that lacks their word segmenters' "
        "dictionaries; another value than none uses --cache/skip-LANGS",
    )
    ap.add_argument("--worker-memory", default="auto", help="`dask worker --memory-limit` (strong scaling)")
    ap.add_argument(
        "--dask-settings",
        choices=("arcflow", "dask"),
        default="arcflow",
        help="the strong series' workers: arcflow's settings (flows.placement.worker_environment: the profiler "
        "off), as infra/cluster.yaml's worker commands run them, or Dask's defaults (the runs before 2026-12-01)",
    )
    ap.add_argument(
        "--budget-s", type=float, default=None, help="strong scaling: seconds the series may take"
    )
    ap.add_argument("--out", type=Path, default=None, help="strong scaling: copy the results file here too")
    ap.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="strong scaling: a strong_results_<size>.json of a smaller corpus whose fewest-worker run gives the "
        "per-document one-worker time (for a large corpus that one worker cannot run in time)",
    )
    ap.add_argument(
        "--baseline-sample",
        type=int,
        default=0,
        help="strong scaling: run the series on N shard files taken uniformly (every k-th, seeded offset) from "
        "--size's corpus, kept in strong_results_<size>_sample<N>.json: name that file in --baseline for the "
        "full run, whose one-worker time then comes from documents of its own composition",
    )
    ap.add_argument(
        "--scheduler-pid", type=int, default=None, help="the external scheduler's pid, for its CPU"
    )
    ap.add_argument(
        "--code",
        type=Path,
        default=None,
        help="a copy of the project's tree the runs import (e.g. `git archive HEAD | tar -x -C DIR`), so that "
        "edits in the checkout during a long run do not change it",
    )
    ap.add_argument(
        "--global-steps",
        action="store_true",
        help="only the steps that see the whole corpus (exact and MinHash dedup, buckets), on extracted text",
    )
    ap.add_argument(
        "--server",
        action="store_true",
        help="strong scaling: start one `arcflow server` (Prefect API and warm runner) for the series and hand "
        "every run to it, instead of each run starting Prefect's ephemeral API",
    )
    ap.add_argument("--table", action="store_true", help="print the markdown table of --cache's results")
    ap.add_argument(
        "--stop-at",
        default=None,
        help="HH:MM (UTC, today): stop a run still going then; the nodes it finished are reported",
    )
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.workers = [int(s) for s in args.workers.split(",")]
    if args.stop_at:
        hh, mm = (int(x) for x in args.stop_at.split(":"))
        day = time.gmtime()
        args.stop_at = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, hh, mm, 0, 0, 0, 0))
    CORPORA_DIR = args.corpora
    if args.docs_per_file != DOCS_PER_FILE:  # the same documents in other files: a corpus folder of its own
        DOCS_PER_FILE = args.docs_per_file
        args.cache = args.cache / f"docs-per-file-{DOCS_PER_FILE}"
    skip = [x.strip().lower() for x in args.skip_langs.split(",") if x.strip()]
    if skip:  # fewer real pages: every generated document differs, so a corpus folder of its own
        _BASE = [r for r in _base() if r[3].split("-")[0].lower() not in skip]
        args.cache = args.cache / f"skip-{'-'.join(sorted(skip))}"
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.table and args.strong:
        results = _load_results(
            args.cache / f"strong_results_{args.size}{'_server' if args.server else ''}.json"
        )
        baseline = _baseline(args)
        print(strong_markdown(results, baseline))
        if paired := paired_markdown(results, baseline):
            print(f"\n{paired}")
    elif args.table:
        print(markdown_table(_load_results(_results_path(args))))
    elif args.generate_only:
        corpus_files(
            args.size if args.strong else max(args.sizes),
            args.cache,
            args.seed,
            args.gen_procs,
            text=args.global_steps,
        )
    elif args.strong:
        strong(args)
    else:
        cost_growth(args)


if __name__ == "__main__":
    main()
