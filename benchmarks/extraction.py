"""HTML extraction (resiliparse vs trafilatura) and fastText language ID on the shared web corpora.

Quality has no hand-labelled gold here, so each corpus gets a *structural reference*: the text of the element
its generator puts the page body in (Sphinx's ``div[role=main]``, javadoc's ``<main>``, LibreOffice's
``#DisplayArea``, DocBook pages' body minus ``navheader`` / ``navfooter`` / ``docnav`` / ``#banner``), scripts
and styles removed. Per engine and corpus the table reports, over word tokens (CJK characters count one each),
multiset precision (how much of the output is reference text: low means boilerplate leaked in), recall (how
much of the reference survived), F1, the output / reference length ratio, the failure rate (exception or empty
output) and pages per second on one core (HTML already decoded, hints and code mode excluded). Code retention:
the share of multi-line ``<pre>`` blocks found verbatim in the output, per engine, in ``text`` and ``code``
mode. Language ID: documents per second of lid.176 on the extracted Debian Handbook pages and agreement of the
top language with the folder's language hint (a lower bound: many translations leave pages in English).

Run: python benchmarks/extraction.py [--limit N]   (N pages per corpus; default 300)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

import lxml.html
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data_pipes.web.extract import extract, run_engine  # noqa: E402
from data_pipes.web.extract_code import _PRE, pre_text  # noqa: E402
from data_pipes.web.langid import LanguageIdentifier  # noqa: E402

CORPORA = ROOT.parent / "shared" / "corpora"
# corpus -> (xpath of the main element, xpaths removed inside it)
REFERENCE: dict[str, tuple[str, tuple[str, ...]]] = {
    "web_python_docs": ("//div[@role='main']", ()),
    "web_postgresql_docs": ("//body", ("//div[@class='navheader']", "//div[@class='navfooter']")),
    "web_debian_handbook": ("//body", ("//div[@id='banner']", "//ul[@class='docnav']")),
    "web_libreoffice_help_en_us": ("//div[@id='DisplayArea']", ()),
    "web_javadoc_boilerplate": ("//main", ()),
}
ENGINES = ("resiliparse", "trafilatura")
_PARSER = lxml.html.HTMLParser(encoding="utf-8")
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]|\w+")


def tokens(text: str) -> Counter[str]:
    return Counter(t.lower() for t in _TOKEN.findall(text))


def reference_text(html: str, corpus: str) -> str:
    root_xpath, removed = REFERENCE[corpus]
    tree = lxml.html.document_fromstring(html.encode("utf-8", "replace"), parser=_PARSER)
    for xp in (*removed, "//script", "//style"):
        for el in tree.xpath(xp):
            el.drop_tree()
    found = tree.xpath(root_xpath)
    return found[0].text_content() if found else ""


def score(out: Counter[str], ref: Counter[str]) -> tuple[float, float]:
    overlap = sum((out & ref).values())
    return overlap / max(1, sum(out.values())), overlap / max(1, sum(ref.values()))


def bench_engines(frames: dict[str, pl.DataFrame]) -> list[dict]:
    rows = []
    for corpus, df in frames.items():
        refs = [tokens(reference_text(h, corpus)) for h in df["html"]]
        for engine in ENGINES:
            outs, fails = [], 0
            started = time.perf_counter()
            for html in df["html"]:
                try:
                    outs.append(run_engine(html, engine))  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - counted as a failure
                    outs.append("")
            seconds = time.perf_counter() - started
            p_sum = r_sum = out_len = ref_len = 0.0
            for out, ref in zip(outs, refs, strict=True):
                fails += not out.strip()
                toks = tokens(out)
                p, r = score(toks, ref)
                p_sum, r_sum = p_sum + p, r_sum + r
                out_len, ref_len = out_len + sum(toks.values()), ref_len + sum(ref.values())
            n = len(outs)
            prec, rec = p_sum / n, r_sum / n
            rows.append(
                {
                    "corpus": corpus.removeprefix("web_"),
                    "engine": engine,
                    "pages": n,
                    "pages/s": round(n / seconds, 1),
                    "precision": round(prec, 3),
                    "recall": round(rec, 3),
                    "f1": round(2 * prec * rec / max(1e-9, prec + rec), 3),
                    "len_ratio": round(out_len / max(1.0, ref_len), 3),
                    "fail%": round(100 * fails / n, 1),
                }
            )
    return rows


def bench_code(frames: dict[str, pl.DataFrame]) -> list[dict]:
    rows = []
    pages = [h for c in ("web_python_docs", "web_postgresql_docs") if c in frames for h in frames[c]["html"]]
    for engine in ENGINES:
        for mode in ("text", "code"):
            total = hit = 0
            for html in pages:
                blocks = [b for b in (pre_text(m) for m in _PRE.findall(html)) if b.count("\n") >= 2]
                if blocks:
                    text = extract(html, engine=engine, mode=mode).text  # type: ignore[arg-type]
                    total += len(blocks)
                    hit += sum(b in text for b in blocks)
            rows.append(
                {
                    "engine": engine,
                    "mode": mode,
                    "pre_blocks": total,
                    "verbatim%": round(100 * hit / max(1, total), 1),
                }
            )
    return rows


def bench_langid(df: pl.DataFrame) -> dict:
    texts = [extract(h).text for h in df["html"]]
    ident = LanguageIdentifier()
    started = time.perf_counter()
    labels, _scores = ident.predict(texts)
    seconds = time.perf_counter() - started
    hints = [h.split("-")[0].lower() for h in df["lang_hint"]]
    agree = sum(a == b for a, b in zip(labels, hints, strict=True))
    return {
        "docs": len(texts),
        "docs/s": round(len(texts) / seconds, 1),
        "chars/s": round(sum(map(len, texts)) / seconds),
        "agree_with_hint%": round(100 * agree / len(texts), 1),
    }


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=300, help="pages per corpus")
    args = parser.parse_args()
    frames = {}
    for corpus in REFERENCE:
        df = pl.read_parquet(CORPORA / f"{corpus}.parquet")
        frames[corpus] = df.sample(n=min(args.limit, df.height), seed=0) if df.height > args.limit else df
    engine_rows = bench_engines(frames)
    print("## Main-text extraction vs structural reference (one core)\n" + table(engine_rows))
    for engine in ENGINES:
        mine = [r for r in engine_rows if r["engine"] == engine]
        pages = sum(r["pages"] for r in mine)
        secs = sum(r["pages"] / r["pages/s"] for r in mine)
        f1 = sum(r["f1"] for r in mine) / len(mine)
        print(f"{engine}: {pages / secs:.1f} pages/s overall, mean F1 {f1:.3f}")
    print("\n## Code blocks kept verbatim (python + postgresql docs)\n" + table(bench_code(frames)))
    print(
        "\n## Language ID (lid.176, debian handbook)\n" + table([bench_langid(frames["web_debian_handbook"])])
    )


if __name__ == "__main__":
    main()
