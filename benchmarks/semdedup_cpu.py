"""SemDedup on CPU: our end-to-end library path against a bare ``SentenceTransformer.encode`` of the same
texts.

Text comes from the shared web corpora (``../shared/corpora``: Python and PostgreSQL manuals, Debian Handbook,
LibreOffice help), extracted with resiliparse (``data_pipes.web.extract``) outside the timed part. Both runs
use fp32 on CPU, 256 tokens, batch ``--batch-size``; ours adds k-means, ranking, the pairwise step and the eps
sweep. The two are timed alternately ``--repeats`` times and the best of each is kept, and process CPU time is
reported too, because the machine may be loaded by other jobs: the same-run ratio is the figure that matters
(target >= 0.9x).

Run: python benchmarks/semdedup_cpu.py [--docs 2000] [--batch-size 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["HF_HUB_OFFLINE"] = "1"

import pyarrow.parquet as pq  # noqa: E402

from data_pipes.dedup.semdedup_model import default_model_path  # noqa: E402
from data_pipes.dedup.semdedup_run import SemDedupConfig, semdedup  # noqa: E402
from data_pipes.web.extract import run_engine  # noqa: E402

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
FILES = ("web_python_docs", "web_postgresql_docs", "web_debian_handbook", "web_libreoffice_help_en_us")


def load_texts(n: int, min_chars: int = 400) -> list[str]:
    """Up to ``n`` extracted pages, taken round-robin from the corpora so every kind of page is in."""
    pools = []
    for name in FILES:
        pools.append(pq.read_table(CORPORA / f"{name}.parquet", columns=["html"]).column("html").to_pylist())
    texts: list[str] = []
    for i in range(max(len(p) for p in pools)):
        for pool in pools:
            if i < len(pool) and len(texts) < n:
                try:
                    text = run_engine(pool[i], "resiliparse")
                except Exception:  # noqa: BLE001 - a page that fails extraction is simply skipped
                    continue
                if len(text) >= min_chars:
                    texts.append(text)
        if len(texts) >= n:
            break
    return texts


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--eps", type=float, default=0.03)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    t0 = time.perf_counter()
    texts = load_texts(args.docs)
    print(f"{len(texts)} documents extracted in {time.perf_counter() - t0:.1f}s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    st = SentenceTransformer(default_model_path(), device="cpu")
    cfg = SemDedupConfig(device="cpu", batch_size=args.batch_size, eps=args.eps)
    st.encode(texts[:32], batch_size=args.batch_size)  # warm-up
    semdedup(texts[:32], cfg)
    best_st, best_ours, result = (1e9, 0.0), (1e9, 0.0), None
    for rep in range(args.repeats):
        w, c = timed(lambda: st.encode(texts, batch_size=args.batch_size, normalize_embeddings=True))
        best_st = min(best_st, (w, c))
        holder: dict = {}
        w, c = timed(lambda h=holder: h.setdefault("r", semdedup(texts, cfg)))
        best_ours, result = min(best_ours, (w, c)), holder["r"]
        rate = len(texts) / w
        st_rate = len(texts) / best_st[0]
        print(f"  repeat {rep + 1}: ST.encode {st_rate:.1f} docs/s, ours {rate:.1f} docs/s", flush=True)
    n = len(texts)
    print(
        f"SentenceTransformer.encode:  {n / best_st[0]:8.1f} docs/s  "
        f"(wall {best_st[0]:.1f}s, cpu {best_st[1]:.1f}s)"
    )
    print(f"SemDedup end to end (ours):  {n / best_ours[0]:8.1f} docs/s  (wall {best_ours[0]:.1f}s, cpu "
          f"{best_ours[1]:.1f}s)")  # fmt: skip
    wall_ratio, cpu_ratio = best_st[0] / best_ours[0], best_st[1] / best_ours[1]
    print(f"ratio ours / ST.encode: wall {wall_ratio:.2f}x, cpu {cpu_ratio:.2f}x "
          "(target >= 0.9x)")  # fmt: skip
    t = result.timings
    print(
        f"ours: embed {t['embed_s']:.1f}s, k-means {t['kmeans_s']:.2f}s, pairwise {t['pairwise_s']:.2f}s; "
        f"{len(result.bounds) - 1} clusters, removed at eps={args.eps}: {int(result.removed.sum())}"
    )
    print("eps sweep: " + ", ".join(f"{r['eps']}: {r['retention']:.3f}" for r in result.sweep))


if __name__ == "__main__":
    main()
