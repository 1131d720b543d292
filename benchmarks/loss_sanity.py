"""Loss sanity of the `tiny` pretrain stage on the shared corpora, and best-fit-decreasing packing against
concat-and-chunk at equal tokens (issue 10, "Loss sanity").

Everything runs through the real kinds, as one pipeline run by ``arcflow run`` (written into ``--workdir``):

    web (files: the shared corpora's HTML pages) -> extract_html (resiliparse)
      -> train (sample: a seeded share of the pages by id hash; the rest is held out)
      -> tokenizer (tokenizer_train, 8192 tokens: the tiny flavour's vocabulary)
      -> pack_bfd    (pack, method bfd,          seq_len L)  -> pretrain_bfd (pretrain, tiny, S steps x B rows)
      -> pack_concat (pack, method concat_chunk, seq_len L)  -> pretrain_concat (the same params)
      -> eval (loss and bits per byte of both checkpoints on the same held-out pages: web minus train, each page
               scored alone from its start, i.e. document-masked)

Both stages see the same number of rows of the same length (S x B x L token positions; the init, the optimizer
and the row order's seed are the same), from the same documents and tokenizer; only the packing differs. BFD
rows carry a little padding (no loss), concat-and-chunk rows none but the last, so the non-padding tokens each
stage trained on are reported too (the trainer's own ``tokens`` count). Training rows are document-masked in both
(positions reset at each segment): what concat-and-chunk changes is that the pieces after a cut start
mid-document, without their beginning.

Printed: per stage, the training loss over ``--windows`` equal windows of steps (mean of each; "falls steadily"
means each window below the one before), and both eval losses (nats per token, bits per byte). Figures:
docs/PACKED_TOKENS.md ("Loss sanity").

Run (on CPU, a few minutes per stage on 2 cores):
    nice -n 5 .venv/bin/python benchmarks/loss_sanity.py [--steps 60] [--seq-len 512] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
CORPORA = ROOT.parent / "shared" / "corpora"
DEFAULT_FILES = ("web_python_docs", "web_postgresql_docs")
STAGES = ("bfd", "concat")


def pipeline(args: argparse.Namespace) -> dict:
    """The benchmark's pipeline.yaml as a dict."""
    paths = [str(Path(args.corpora) / f"{name}.parquet") for name in args.files]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise SystemExit(
            f"missing corpora {missing}; pass --corpora DIR (see /work/shared/corpora/README.md)"
        )
    stage = {
        "flavour": args.flavour,
        "steps": args.steps,
        "batch": {"global_batch": args.batch, "micro_batch": args.micro_batch},
        "optim": {"name": "muon", "lr": args.lr},
        "schedule": {"warmup_steps": max(1, args.steps // 20)},
    }
    nodes: dict[str, dict] = {
        "web": {
            "uses": "files",
            "params": {
                "paths": paths,
                "format": "parquet",
                "text_field": "html",
                "id_field": "id",
                "url_field": "url",
            },
        },  # fmt: skip
        "web_text": {"uses": "extract_html", "inputs": ["web"], "params": {"min_chars": 200}},
        "train": {"uses": "sample", "inputs": ["web_text"], "params": {"fraction": 1 - args.heldout_share}},
        "tokenizer": {
            "uses": "tokenizer_train",
            "inputs": ["train"],
            "params": {"vocab_size": args.vocab, "sample_docs": 2000},
        },
    }
    for name, method in (("bfd", "bfd"), ("concat", "concat_chunk")):
        nodes[f"pack_{name}"] = {
            "uses": "pack",
            "inputs": ["tokenizer", "train"],
            "params": {"seq_len": args.seq_len, "method": method},
        }
        nodes[f"pretrain_{name}"] = {"uses": "pretrain", "inputs": [f"pack_{name}"], "params": stage}
    nodes["eval"] = {
        "uses": "eval",
        "inputs": ["pretrain_bfd", "pretrain_concat", "web_text", "train"],
        "params": {
            "loss": {
                "inputs": ["web_text"],
                "exclude": ["train"],
                "docs_per_source": args.heldout_docs,
                "max_tokens": args.seq_len,
            },
            "fim": None,
            "problems": None,
        },  # fmt: skip
    }
    return {
        "name": "loss-sanity",
        "workdir": str(Path(args.workdir) / ".arcflow"),
        "seed": args.seed,
        "nodes": nodes,
        "executor": {"n_workers": 1, "threads_per_worker": 1},
    }


def run(args: argparse.Namespace) -> float:
    """Write the pipeline and run it with the CLI (embedded Prefect API); returns the wall seconds."""
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    (work / "pipeline.yaml").write_text(yaml.safe_dump(pipeline(args), sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(work / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env.setdefault(
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "900"
    )  # a busy machine starts it slowly
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "-f", str(work / "pipeline.yaml")],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    (work / "run.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(
            f"the run failed ({proc.returncode}); log: {work / 'run.log'}\n{proc.stdout[-3000:]}"
        )
    return time.perf_counter() - started


def windows(values: list[float], n: int) -> list[float]:
    """Means of ``n`` consecutive, (nearly) equal windows of ``values``."""
    n = max(1, min(n, len(values)))
    bounds = [round(i * len(values) / n) for i in range(n + 1)]
    return [sum(values[a:b]) / (b - a) for a, b in zip(bounds, bounds[1:], strict=False)]


def report(args: argparse.Namespace, wall_s: float) -> dict:
    store = Path(args.workdir) / ".arcflow"
    refs = json.loads((store / "refs" / "loss-sanity.json").read_text())

    def out(node: str) -> Path:
        return store / "outputs" / refs[node]["fingerprint"]

    def manifest(node: str) -> dict:
        return json.loads((out(node) / "manifest.json").read_text())

    result: dict = {
        "wall_s": round(wall_s, 1),
        "load_1min": round(os.getloadavg()[0], 1),
        "steps": args.steps,
        "seq_len": args.seq_len,
        "batch": args.batch,
    }
    for name in STAGES:
        rows = pq.read_table(out(f"pretrain_{name}") / "metrics.parquet").to_pylist()
        losses = [float(r["loss"]) for r in rows]
        means = windows(losses, args.windows)
        packing = json.loads((out(f"pack_{name}") / "reports" / "packing.json").read_text())[0]
        timings = manifest(f"pretrain_{name}").get("timings", {})
        result[name] = {
            "packed_rows": packing["rows"],
            "fill": round(packing["fill"], 5),
            "docs_split": packing["docs_split"],
            "short_docs_split": packing["short_docs_split"],
            "trained_tokens": int(rows[-1]["tokens"]) if rows else 0,
            "positions": args.steps * args.batch * args.seq_len,
            "loss_first": round(losses[0], 4),
            "loss_last": round(losses[-1], 4),
            "loss_windows": [round(m, 4) for m in means],
            "falls_steadily": all(b < a for a, b in zip(means, means[1:], strict=False)),
            "stage_wall_s": round(float(timings.get("wall_s") or 0.0), 1),
        }
    rows = pq.read_table(out("eval") / "part-00000.parquet").to_pylist()
    for r in rows:
        if r["task"] == "loss" and r["source"] == "all":
            name = r["checkpoint"].removeprefix("pretrain_")
            result[name]["eval_docs"] = r["items"]
            result[name]["eval_tokens"] = r["tokens"]
            result[name]["eval_loss"] = round(float(r["loss"]), 4)
            result[name]["eval_bpb"] = round(float(r["bpb"]), 4)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(CORPORA))
    ap.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), help="corpora (Parquet stems) to use")
    ap.add_argument("--workdir", default="/tmp/loss_sanity")
    ap.add_argument("--flavour", default="tiny")
    ap.add_argument("--vocab", type=int, default=8192, help="tokenizer size (the tiny flavour's vocabulary)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=8, help="rows per step")
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.01, help="Muon's learning rate (the default pipeline's)")
    ap.add_argument(
        "--heldout-share", type=float, default=0.1, help="pages held out of training (by id hash)"
    )
    ap.add_argument("--heldout-docs", type=int, default=40, help="held-out pages scored per source")
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--report-only", action="store_true", help="read the figures of a finished run")
    args = ap.parse_args()
    wall = 0.0 if args.report_only else run(args)
    result = report(args, wall)
    print(json.dumps(result, indent=1))
    for name in STAGES:
        r = result[name]
        print(
            f"{name:>7}: fill {r['fill']:.2%}, {r['short_docs_split']} short docs split; trained "
            f"{r['trained_tokens']:,} tokens ({r['positions']:,} positions); loss {r['loss_first']:.3f} -> "
            f"{r['loss_last']:.3f}, windows {r['loss_windows']} ({'falls steadily' if r['falls_steadily'] else 'NOT steadily'}); "
            f"eval loss {r.get('eval_loss')} nats/token, {r.get('eval_bpb')} bpb on {r.get('eval_docs')} held-out pages"
        )


if __name__ == "__main__":
    main()
