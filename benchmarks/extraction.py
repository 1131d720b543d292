"""HTML extraction (resiliparse vs trafilatura), its fallback, charset detection and fastText language ID on the
shared web corpora.

Quality has no hand-labelled gold here, so each corpus gets a *structural reference*: the text of the element
its generator puts the page body in (Sphinx's ``div[role=main]``, javadoc's ``<main>``, LibreOffice's
``#DisplayArea``, DocBook pages' body minus ``navheader`` / ``navfooter`` / ``docnav`` / ``#banner``), scripts
and styles removed. Per engine and corpus the table reports, over word tokens (CJK characters count one each),
multiset precision (how much of the output is reference text: low means boilerplate leaked in), recall (how
much of the reference survived), F1, the output / reference length ratio, the failure rate (exception or empty
output) and pages per second on one core (HTML already decoded, hints and code mode excluded). Code retention:
the share of multi-line ``<pre>`` blocks found verbatim in the output, per engine, in ``text`` and ``code``
mode.

Fallback (``extract`` as the node runs it, hints included): per corpus, the main-content pass alone
(``fallback="none"``), the full-text fallback (the default) and trafilatura-then-full-text: pages that come out
empty, pages that fell back, how many of the pages empty without the fallback it recovers, F1 against the
reference and pages per second (the fallback's cost).

Charsets: the Debian Handbook's extracted pages, in 25 languages, re-encoded (no declaration) in each
language's legacy code pages; the share decoded exactly by uchardet alone, charset_normalizer alone (both on
the detection sample) and the readers' decoding order (``decode_bytes``).

Language ID: documents per second of lid.176 on the extracted Debian Handbook pages, with and without the
paragraph pass that finds a second language, and agreement of the top language with the folder's language hint
(a lower bound: many translations leave pages in English). Mixtures: an English handbook page and a page of
another language cut to a given share of characters and joined; the share of mixtures whose ``lang`` and
``lang2`` are those two languages, and of the English pages given a ``lang2`` at all.

Run: python benchmarks/extraction.py [--limit N] [--only engines,code,fallback,charsets,langid]
(N pages per corpus; default 300)
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

from data_pipes.io.decoding import decode_bytes  # noqa: E402
from data_pipes.web.encoding import detection_sample, python_codec_as_browser  # noqa: E402
from data_pipes.web.extract import extract, run_engine  # noqa: E402
from data_pipes.web.extract_code import _PRE, pre_text  # noqa: E402
from data_pipes.web.langid import LanguageIdentifier, hint_language  # noqa: E402

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


def bench_fallback(frames: dict[str, pl.DataFrame]) -> list[dict]:
    rows = []
    variants = (
        ("none", {"fallback": "none"}),
        ("full_text", {}),
        ("trafilatura", {"fallback": "trafilatura"}),
    )
    for corpus, df in frames.items():
        refs = [tokens(reference_text(h, corpus)) for h in df["html"]]
        empty_before: set[int] = set()
        for variant, kwargs in variants:
            started = time.perf_counter()
            outs = [extract(h, url=u or "", **kwargs) for h, u in zip(df["html"], df["url"], strict=True)]  # type: ignore[arg-type]
            seconds = time.perf_counter() - started
            empty = {i for i, o in enumerate(outs) if not o.text.strip()}
            if variant == "none":
                empty_before = empty
            p_sum = r_sum = 0.0
            for out, ref in zip(outs, refs, strict=True):
                p, r = score(tokens(out.text), ref)
                p_sum, r_sum = p_sum + p, r_sum + r
            n = len(outs)
            prec, rec = p_sum / n, r_sum / n
            rows.append(
                {
                    "corpus": corpus.removeprefix("web_"),
                    "fallback": variant,
                    "pages": n,
                    "empty": len(empty),
                    "fell_back": sum(o.extractor != "resiliparse" for o in outs),
                    "by_trafilatura": sum(o.extractor == "trafilatura" for o in outs),
                    "recovered": f"{len(empty_before - empty)}/{len(empty_before)}",
                    "f1": round(2 * prec * rec / max(1e-9, prec + rec), 3),
                    "recall": round(rec, 3),
                    "pages/s": round(n / seconds, 1),
                }
            )
    return rows


# each handbook language's legacy code pages
LEGACY = {
    "ar": ("cp1256",), "ca": ("cp1252",), "cs": ("cp1250", "iso8859-2"), "da": ("cp1252",), "de": ("cp1252",),
    "el": ("cp1253",), "es": ("cp1252",), "fa": ("cp1256",), "fr": ("cp1252",), "hr": ("cp1250",),
    "id": ("cp1252",), "it": ("cp1252",), "ja": ("shift_jis", "euc_jp"), "ko": ("euc_kr",), "no": ("cp1252",),
    "nl": ("cp1252",), "pl": ("cp1250", "iso8859-2"), "pt": ("cp1252",), "ro": ("cp1250",),
    "ru": ("cp1251", "koi8-r"), "sv": ("cp1252",), "tr": ("cp1254",), "vi": ("cp1258",),
    "zh": ("gb18030", "big5"),
}  # fmt: skip


def bench_charsets(df: pl.DataFrame, per_language: int = 12) -> list[dict]:
    import charset_normalizer
    from resiliparse.parse.encoding import detect_encoding

    ident = LanguageIdentifier()
    seen: Counter[str] = Counter()
    results: dict[int, Counter[str]] = {300: Counter(), 3000: Counter()}
    for hint, html in zip(df["lang_hint"], df["html"], strict=True):
        lang = hint_language(hint)
        if lang not in LEGACY or seen[lang] >= per_language:
            continue
        text = extract(html).text
        if len(text) < 300 or ident.predict([text])[0][0] != lang:
            continue  # only pages really in their language
        seen[lang] += 1
        for size, counts in results.items():
            page = f"<html><body><p>{text[:size]}</p></body></html>"
            for codec in LEGACY[lang]:
                try:
                    data = page.encode(codec)
                except UnicodeEncodeError:
                    continue

                def exact(name: str | None, data: bytes = data, page: str = page) -> bool:
                    try:
                        return name is not None and data.decode(name) == page
                    except (UnicodeDecodeError, LookupError):
                        return False

                best = charset_normalizer.from_bytes(detection_sample(data)).best()
                counts["pages"] += 1
                counts["uchardet"] += exact(detect_encoding(detection_sample(data), max_len=0))
                counts["charset_normalizer"] += exact(
                    python_codec_as_browser(best.encoding) if best else None
                )
                counts["readers"] += decode_bytes(data).text == page
    return [
        {
            "chars": size,
            "pages": c["pages"],
            **{
                k: f"{100 * c[k] / max(1, c['pages']):.1f}%"
                for k in ("uchardet", "charset_normalizer", "readers")
            },
        }
        for size, c in results.items()
    ]


def bench_langid(df: pl.DataFrame) -> list[dict]:
    texts = [extract(h).text for h in df["html"]]
    ident = LanguageIdentifier()
    started = time.perf_counter()
    labels, _scores = ident.predict(texts)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    seconds2, _shares = ident.second_languages(texts, labels)
    paragraph_seconds = time.perf_counter() - started
    hints = [hint_language(h) for h in df["lang_hint"]]
    agree = sum(a == b for a, b in zip(labels, hints, strict=True))
    in_top2 = sum(b in (a, c) for a, b, c in zip(labels, hints, seconds2, strict=True))
    return [
        {
            "docs": len(texts),
            "docs/s": round(len(texts) / seconds, 1),
            "docs/s_with_lang2": round(len(texts) / (seconds + paragraph_seconds), 1),
            "agree_with_hint%": round(100 * agree / len(texts), 1),
            "hint_is_lang_or_lang2%": round(100 * in_top2 / len(texts), 1),
            "with_lang2%": round(100 * sum(map(bool, seconds2)) / len(texts), 1),
        }
    ]


def bench_mixtures(df: pl.DataFrame, per_language: int = 6) -> list[dict]:
    import random

    ident = LanguageIdentifier()
    texts = [extract(h).text for h in df["html"]]
    labels, scores = ident.predict(texts)
    pure: dict[str, list[str]] = {}
    for hint, text, lang, p in zip(df["lang_hint"], texts, labels, scores, strict=True):
        if hint_language(hint) == lang and p > 0.9 and len(text) > 3000:
            pure.setdefault(lang, []).append(text[:4000])
    english = pure.pop("en", [])
    english_all = [t for t, h in zip(texts, df["lang_hint"], strict=True) if hint_language(h) == "en"]
    rng = random.Random(0)
    rows = []
    for share in (0.1, 0.2, 0.3, 0.5):
        hits = total = 0
        for lang, pages in sorted(pure.items()):
            for other in pages[:per_language]:
                base = rng.choice(english)
                mixed = base[: int(len(base) * (1 - share))] + "\n" + other[: int(len(other) * share)]
                [top], _ = ident.predict([mixed])
                [second], _ = ident.second_languages([mixed], [top])
                hits += {top, second} == {"en", lang}
                total += 1
        rows.append({"minority_share": share, "mixtures": total, "both_named%": round(100 * hits / total, 1)})
    en_labels, _ = ident.predict(english_all)
    en_seconds, _ = ident.second_languages(english_all, en_labels)
    rows.append(
        {
            "minority_share": 0.0,
            "mixtures": len(english_all),
            "both_named%": round(100 * sum(map(bool, en_seconds)) / max(1, len(english_all)), 1),
        }
    )
    return rows


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=300, help="pages per corpus")
    parser.add_argument(
        "--only", default="engines,code,fallback,charsets,langid", help="comma-separated sections to run"
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    frames = {}
    for corpus in REFERENCE:
        df = pl.read_parquet(CORPORA / f"{corpus}.parquet")
        frames[corpus] = df.sample(n=min(args.limit, df.height), seed=0) if df.height > args.limit else df
    if "engines" in only:
        engine_rows = bench_engines(frames)
        print("## Main-text extraction vs structural reference (one core)\n" + table(engine_rows))
        for engine in ENGINES:
            mine = [r for r in engine_rows if r["engine"] == engine]
            pages = sum(r["pages"] for r in mine)
            secs = sum(r["pages"] / r["pages/s"] for r in mine)
            f1 = sum(r["f1"] for r in mine) / len(mine)
            print(f"{engine}: {pages / secs:.1f} pages/s overall, mean F1 {f1:.3f}")
    if "code" in only:
        print("\n## Code blocks kept verbatim (python + postgresql docs)\n" + table(bench_code(frames)))
    if "fallback" in only:
        rows = bench_fallback(frames)
        print("\n## Fallback when the main-content pass keeps < 10% of the visible text\n" + table(rows))
        for variant in ("none", "full_text", "trafilatura"):
            mine = [r for r in rows if r["fallback"] == variant]
            pages = sum(r["pages"] for r in mine)
            secs = sum(r["pages"] / r["pages/s"] for r in mine)
            print(
                f"{variant}: {sum(r['empty'] for r in mine)} empty, {sum(r['fell_back'] for r in mine)} fell back, "
                f"{pages / secs:.1f} pages/s overall, mean F1 {sum(r['f1'] for r in mine) / len(mine):.3f}"
            )
    handbook = frames["web_debian_handbook"]
    if "charsets" in only:
        print(
            "\n## Undeclared legacy charsets decoded exactly (debian handbook)\n"
            + table(bench_charsets(handbook))
        )
    if "langid" in only:
        print("\n## Language ID (lid.176, debian handbook)\n" + table(bench_langid(handbook)))
        print("\n## Second language of English + X mixtures (0.0: English pages given a lang2)")
        print(table(bench_mixtures(handbook)))


if __name__ == "__main__":
    main()
