"""Packing benchmark: BFD against concat-and-chunk, packing throughput, and tokenization inside the node.

Corpora: the demo corpus (built in-process from this Python installation; HTML parts turned into text
with ``data_pipes.web.extract``) and ../shared/corpora (the five web corpora's HTML through the same
extractor, plus every text file of the source trees in repos/*.tar.gz). A byte-level BPE is trained on a
seeded sample of both.

Figures:

* fill ratio and padding at 4K and 32K for best-fit decreasing and for concat-and-chunk on the same documents
  (each + end-of-text), how many documents each splits, and how many of those are no longer than seq_len
  (measured from where each packing put the items; BFD's should be 0). Target: BFD fill >= 99.5%.
* packing throughput, tokenization excluded (cutting long documents, BFD, row shuffle: ``split_items`` +
  ``pack_plan``), in documents per CPU-minute on one core. The real corpora hold ~12k documents, too few to
  time a million-document packing, so the item-length list is *synthesised* by resampling the real documents'
  token lengths (with replacement, seeded) to ``--synth`` documents; the real corpora are timed too. Target:
  >= 1M.
* tokenization inside the node (``tokenize_shard`` on a Parquet shard of the same texts: reading, encoding,
  end-of-text, repeat draws, writing the work files) against a bare call of the *same* tokenizer method the
  node uses, ``Tokenizer.encode_batch_fast`` (no offsets), on the texts already in memory, ids taken out as
  lists: like for like, so the ratio is the node's own overhead. A bare ``encode_batch`` (which also tracks
  character offsets) is timed too, for reference only. Seeded sample of ``--tok-docs`` documents per corpus,
  runs interleaved, best of 5; wall time and process CPU time (all threads; robust when other jobs share the
  cores). Target: >= 0.8x.
* the rest of the node on the demo corpus: the plan (BFD over the node) and the row writing (tokens/s).

Run: python benchmarks/pack.py [--synth 2000000] [--vocab 16384] [--cache DIR]
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_pipes.io.demo_corpus import DEMO_PARTS, list_demo_items, render_demo_item  # noqa: E402
from data_pipes.tokens.baseline import bfd_stats, concat_chunk_stats  # noqa: E402
from data_pipes.tokens.bfd import pack_plan, split_items  # noqa: E402
from data_pipes.tokens.bpe_train import save_hf_folder, train_bpe  # noqa: E402
from data_pipes.tokens.pack_rows import build_rows  # noqa: E402
from data_pipes.tokens.plan import build_plan, plan_path  # noqa: E402
from data_pipes.tokens.work import TokenizeJob, tokenize_shard, work_paths  # noqa: E402
from data_pipes.web.extract import ExtractionError, extract  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora"
WEB = (
    "web_python_docs",
    "web_postgresql_docs",
    "web_debian_handbook",
    "web_libreoffice_help_en_us",
    "web_javadoc_boilerplate",
)
CODE_EXT = (".rs", ".go", ".md", ".toml", ".txt", ".yml", ".yaml", ".json", ".sh", ".c", ".h", ".py")
SEQ_LENS = (4096, 32768)


def _html_text(html: str) -> str:
    try:
        return extract(html).text
    except ExtractionError:
        return ""


def demo_docs() -> pl.DataFrame:
    rows = []
    for item in list_demo_items(DEMO_PARTS):
        rec = render_demo_item(item)
        if "error" in rec:
            continue
        text = _html_text(rec["text"]) if '"format": "html"' in rec["meta"] else rec["text"]
        rows.append({"id": rec["id"], "text": text, "source": rec["source"]})
    return pl.DataFrame(rows)


def shared_docs() -> pl.DataFrame:
    rows = []
    for name in WEB:
        frame = pl.read_parquet(CORPORA / f"{name}.parquet", columns=["id", "html"])
        for doc_id, html in frame.iter_rows():
            rows.append({"id": f"{name}/{doc_id}", "text": _html_text(html), "source": name})
    for path in sorted(glob.glob(str(CORPORA / "repos" / "*.tar.gz"))):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if not member.isfile() or not member.name.endswith(CODE_EXT):
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    continue
                rows.append(
                    {"id": f"{os.path.basename(path)}/{member.name}", "text": text, "source": "repos"}
                )
    return pl.DataFrame(rows)


def train(frames: list[pl.DataFrame], vocab: int, folder: str) -> str:
    both = pl.concat(frames).filter(pl.col("text").str.len_chars() > 0)
    sample = both.sample(n=min(4000, both.height), seed=0)["text"].str.slice(0, 20_000).to_list()
    started = time.perf_counter()
    tok = train_bpe(sample, vocab)
    print(
        f"tokenizer: vocab {tok.get_vocab_size()}, trained on {len(sample)} docs in "
        f"{time.perf_counter() - started:.1f}s"
    )
    return save_hf_folder(tok, folder)


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds, all threads) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def tokenize_in_node(docs: pl.DataFrame, tok_path: str, work: str, sample: int, repeats: int = 5) -> dict:
    """Best-of-``repeats`` wall and CPU seconds of the node's ``tokenize_shard``, of a bare
    ``encode_batch_fast`` (the call the node makes) and of a bare ``encode_batch``, on a seeded sample of
    ``docs`` (runs interleaved, so all see the same machine load)."""
    from tokenizers import Tokenizer

    os.makedirs(work, exist_ok=True)
    docs = docs.sample(n=min(sample, docs.height), seed=0) if sample else docs
    shard = os.path.join(work, "sample.parquet")
    docs.write_parquet(shard)
    texts = docs["text"].to_list()
    bare_tok = Tokenizer.from_file(tok_path)
    bare, plain, node = [], [], []
    for r in range(repeats):
        bare.append(
            _timed(lambda: [e.ids for e in bare_tok.encode_batch_fast(texts, add_special_tokens=False)])
        )
        plain.append(_timed(lambda: [e.ids for e in bare_tok.encode_batch(texts, add_special_tokens=False)]))
        job = TokenizeJob(0, shard, "bench", 1.0, tok_path, os.path.join(work, f"sample{r}"), seed=0)
        node.append(_timed(lambda job=job: tokenize_shard(job)))
    n_tokens = sum(len(e.ids) for e in bare_tok.encode_batch_fast(texts, add_special_tokens=False))
    return {
        "docs": docs.height,
        "tokens": n_tokens,
        "bare_wall": min(w for w, _ in bare),
        "node_wall": min(w for w, _ in node),
        "bare_cpu": min(c for _, c in bare),
        "node_cpu": min(c for _, c in node),
        "plain_wall": min(w for w, _ in plain),
        "plain_cpu": min(c for _, c in plain),
    }


def node_lengths(docs: pl.DataFrame, tok_path: str, work: str) -> np.ndarray:
    """Token lengths (with end-of-text) of every document, through the node's phase 1 (keeps its files)."""
    os.makedirs(work, exist_ok=True)
    shard = os.path.join(work, "docs.parquet")
    docs.write_parquet(shard)
    tokenize_shard(TokenizeJob(0, shard, "bench", 1.0, tok_path, os.path.join(work, "node0"), seed=0))
    return lengths_of(os.path.join(work, "node0"))


def lengths_of(work_out: str) -> np.ndarray:
    return pl.read_parquet(work_paths(work_out, 0)[1])["n_tokens"].to_numpy()


def fill_rows(name: str, lens: np.ndarray) -> list[dict]:
    out = []
    for seq_len in SEQ_LENS:
        items = split_items(lens, np.ones_like(lens), seq_len)
        order, offsets = pack_plan(items, seq_len, seed=0)
        for st in (
            bfd_stats(items, order, offsets, seq_len),
            concat_chunk_stats(lens, seq_len),
        ):
            out.append({"corpus": name, **st.row()})
    return out


PLAN_GROUPS = (1, 4, 16, 64)


def group_fill(lens: np.ndarray, seq_len: int, groups: int) -> float:
    """Fill when the documents are dealt round-robin into ``groups`` plan groups, each packed on its own (what
    the node does above ``plan_group_tokens``; it deals input shards, here single documents)."""
    tokens, rows = 0, 0
    for g in range(groups):
        part = lens[g::groups]
        items = split_items(part, np.ones_like(part), seq_len)
        _, offsets = pack_plan(items, seq_len, seed=g)
        tokens, rows = tokens + int(part.sum()), rows + len(offsets) - 1
    return tokens / (rows * seq_len)


def throughput(lens: np.ndarray, n: int, seq_len: int) -> tuple[float, float]:
    """(docs per CPU-minute, wall seconds) of cutting + BFD + shuffle over ``n`` resampled lengths."""
    synth = np.random.default_rng(1).choice(lens, size=n, replace=True) if n else lens
    cpu, wall = time.process_time(), time.perf_counter()
    items = split_items(synth, np.ones_like(synth), seq_len)
    pack_plan(items, seq_len, seed=0)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return len(synth) / cpu * 60, wall


def node_rest(work_out: str, tok_path: str, seq_len: int) -> tuple[float, float, int]:
    """Seconds of the plan and of writing every row of the demo corpus at ``seq_len``."""
    started = time.perf_counter()
    plan = build_plan(work_out, [0], seq_len, seed=0, rows_per_shard=max(1, (1 << 25) // seq_len))
    plan_s = time.perf_counter() - started
    files = {0: np.load(work_paths(work_out, 0)[0], mmap_mode="r")}
    started = time.perf_counter()
    for k in range(plan.n_shards):
        segs = pl.read_parquet(plan_path(work_out, k))
        base = k * plan.rows_per_shard
        table = build_rows(segs, files, min(plan.rows_per_shard, plan.rows - base), seq_len, 0, base, 0)
        sink = io.BytesIO()
        import pyarrow.parquet as pq

        pq.write_table(table, sink, compression="zstd")
    return plan_s, time.perf_counter() - started, plan.rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", type=int, default=2_000_000)
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--tok-docs", type=int, default=2000, help="seeded sample for the tokenization timing")
    ap.add_argument("--cache", default=None, help="folder keeping the extracted corpora between runs")
    args = ap.parse_args()
    started = time.perf_counter()
    makers = {"demo": demo_docs, **({"shared": shared_docs} if CORPORA.exists() else {})}
    corpora = {}
    for name, make in makers.items():
        cached = os.path.join(args.cache, f"{name}.parquet") if args.cache else None
        if cached and os.path.exists(cached):
            corpora[name] = pl.read_parquet(cached)
            continue
        corpora[name] = make()
        if cached:
            os.makedirs(args.cache, exist_ok=True)
            corpora[name].write_parquet(cached)
    for name, frame in corpora.items():
        print(
            f"{name}: {frame.height} documents, {frame['text'].str.len_bytes().sum() / 1e6:.1f} MB of text "
            f"(read and extracted in {time.perf_counter() - started:.0f}s)"
        )
    with tempfile.TemporaryDirectory() as work:
        tok_path = train(list(corpora.values()), args.vocab, os.path.join(work, "tok"))
        fills, tok_rows, all_lens = [], [], []
        for name, frame in corpora.items():
            tok_rows.append(
                (name, tokenize_in_node(frame, tok_path, os.path.join(work, name), args.tok_docs))
            )
            lens = node_lengths(frame, tok_path, os.path.join(work, name))
            lens = lens[lens > 1]  # empty documents (end-of-text only) are dropped by the node
            all_lens.append(lens)
            fills += fill_rows(name, lens)
        print("\n## Fill: best-fit decreasing vs concat-and-chunk (documents + end-of-text)")
        print(
            f"{'corpus':7} {'seq_len':>7} {'method':13} {'rows':>7} {'fill':>9} {'pad':>9} {'docs':>6} "
            f"{'split':>6} {'split<=L':>8}"
        )
        for r in fills:
            print(
                f"{r['corpus']:7} {r['seq_len']:>7} {r['method']:13} {r['rows']:>7} {r['fill']:>9.4%} "
                f"{r['pad']:>9} {r['docs']:>6} {r['docs_split']:>6} {r['short_docs_split']:>8}"
            )
        print(
            "\n## Tokenization: node (tokenize_shard) vs a bare encode_batch_fast (the node's call), same texts, "
            "best of 5; target >= 0.8x"
        )
        print(
            f"{'corpus':7} {'docs':>6} {'tokens':>10} {'bare wall':>9} {'node wall':>9} {'ratio':>6} "
            f"{'bare cpu':>9} {'node cpu':>9} {'ratio':>6} | {'encode_batch wall':>17} {'cpu':>6}"
        )
        for name, t in tok_rows:
            print(
                f"{name:7} {t['docs']:>6} {t['tokens']:>10} {t['bare_wall']:>9.2f} {t['node_wall']:>9.2f} "
                f"{t['bare_wall'] / t['node_wall']:>5.2f}x {t['bare_cpu']:>9.2f} {t['node_cpu']:>9.2f} "
                f"{t['bare_cpu'] / t['node_cpu']:>5.2f}x | {t['plain_wall']:>17.2f} {t['plain_cpu']:>6.2f}"
            )
        lens = np.concatenate(all_lens)
        print("\n## Packing throughput (tokenization excluded), one core; target >= 1,000,000 docs/min")
        print(
            f"{'items':28} {'seq_len':>7} {'docs':>9} {'wall s':>7} {'docs/CPU-min':>13} "
            f"{'docs/wall-min':>14}"
        )
        for seq_len in (4096, 32768, 131072):
            for label, n in (("real lengths", 0), ("resampled real lengths", args.synth)):
                rate, wall = throughput(lens, n, seq_len)
                n = n or len(lens)
                print(f"{label:28} {seq_len:>7} {n:>9} {wall:>7.2f} {rate:>13,.0f} {n / wall * 60:>14,.0f}")
        print(
            f"\n## Plan groups: fill of one global BFD vs the same items in G groups ({args.synth:,} resampled "
            "real lengths); target >= 99.5%"
        )
        synth = np.random.default_rng(2).choice(lens, size=args.synth, replace=True)
        print(f"{'seq_len':>7} " + " ".join(f"{'G=' + str(g):>9}" for g in PLAN_GROUPS))
        for seq_len in (4096, 32768):
            print(f"{seq_len:>7} " + " ".join(f"{group_fill(synth, seq_len, g):>9.4%}" for g in PLAN_GROUPS))
        print(
            "\n## Rest of the node on the demo corpus (plan over the node; rows built and encoded to Parquet)"
        )
        for seq_len in SEQ_LENS:
            plan_s, rows_s, rows = node_rest(os.path.join(work, "demo", "node0"), tok_path, seq_len)
            print(
                f"seq_len {seq_len}: plan {plan_s:.2f}s, {rows} rows written in {rows_s:.2f}s "
                f"({rows * seq_len / rows_s / 1e6:.1f}M tokens/s)"
            )


if __name__ == "__main__":
    main()
