"""Per-language section of benchmarks/web_heuristics.py (`--per-language`): keep rates before/after, agreement
with datatrove's per-language filters, and the word segmenters' speed and agreement. Issue 13's benchmark,
benchmarks/multilingual.py, reuses these pieces and measures both threshold tables (docs/MULTILINGUAL.md).

Corpus: the Debian Administrator's Handbook in 26 languages (../shared/corpora/web_debian_handbook.parquet),
extracted as the pipeline does (`data_pipes.web.extract.extract`: resiliparse, with its fallbacks) and labelled
with lid.176 (`data_pipes.web.langid`), cached under $ARCFLOW_BENCH_CACHE. Documents are grouped by their
detected language, as `heuristic_filters` sees them after `langid` (many translations leave pages in English).

1. Keep rate per language with datatrove's English rules for every document (before) and with each language's
   rules (after, `heuristic_chain_by_language`), the top drop reason, and the gap to English.
2. Agreement with datatrove: each tuned language's documents through datatrove's GopherQuality,
   GopherRepetition and FineWebQuality filters built with the same thresholds and `language=<FineWeb-2 code>`
   (so datatrove picks its own word tokenizer), against ours. C4 is left out: datatrove's C4 counts words with
   `str.split` and English end punctuation in every language, which ours does not do on purpose.
3. Segmenters: docs/s (CPU) and token-boundary F1 against datatrove's word tokenizer for the language (the one
   FineWeb-2 tuned its figures on), for the chosen segmenter and the candidates that install as wheels and run
   offline: Chinese rjieba (chosen) and jieba (datatrove's; sdist only); Japanese Sudachi mode A called directly
   (chosen) and mode C; spaCy's blank tokenizers are the reference for the spaced languages. fugashi needs
   unidic-lite or ipadic, which are sdists; spacy-pkuseg downloads its model at run time; Kiwi's model
   (Korean) is an sdist: all three left out. Thai: no Thai page in the corpora, so Thai is measured on the
   tests' paragraph only (pythainlp newmm is also datatrove's Thai tokenizer).

Measured with the `fineweb2` thresholds (3,302 pages; 24 detected languages; keep rates before -> after,
English 58.6% both):
- Chinese 7.9% -> 70.8%, Japanese 17.3% -> 71.4%, German 41.4% -> 74.8%, French 57.1% -> 67.3%, Russian
  40.2% -> 86.2%, Norwegian 24.2% -> 66.7%, Arabic 48.5% -> 76.8%; within 15 points of English: no, ca, pt, es,
  id, it, fr, ja, zh, sv, nl, cs (and el, ro with <= 5 pages); above English by more: de +16.2, ar +18.2, fa
  +17.7, vi +17.1, ru +27.6, tr +27.6, pl +30.3 (FineWeb-2's alphabetic-word minimum for them, 0.71-0.78, is
  below datatrove's English 0.8, the top drop reason on these symbol-heavy pages); ko (7 pages) 100%.
- Agreement with datatrove's per-language filters: keep/drop 100% for ar, cs, es, fa, ja, nl, pt, ru, sv, tr;
  97-99% for fr, id, it, zh (97.8%), ca 96.4%, de 95.5%, pl 94.4%; vi not measured (datatrove's Vietnamese
  tokenizer needs pyvi). Our chain is 3x (ja) to 35x (id) less CPU than datatrove's per language.
- Segmenters (docs/s per CPU second, boundary F1 against datatrove's tokenizer): spaced languages 320-670 docs/s
  (datatrove's spaCy tokenizers 30-78), F1 0.96-1.00; Chinese rjieba 631 docs/s, F1 0.981 (jieba 114 docs/s,
  F1 1.0 by definition but no wheel); Japanese Sudachi A 79 docs/s, F1 1.000 (mode C 0.836; spaCy-ja 21).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import polars as pl

from benchmarks.web_heuristics import CACHE_DIR, CORPORA_DIR

# Thai: no Thai page in the shared corpora; a real paragraph (the one of tests/data_pipes/web/test_heuristics_lang.py)
THAI = "\n".join(
    [
        "เดเบียนเป็นระบบปฏิบัติการเสรีที่พัฒนาโดยชุมชนอาสาสมัครจากทั่วโลก",
        "ผู้ดูแลระบบสามารถติดตั้งและปรับปรุงซอฟต์แวร์ได้อย่างง่ายดายด้วยระบบจัดการแพ็กเกจ",
        "รุ่นเสถียรแต่ละรุ่นจะได้รับการทดสอบเป็นเวลานานก่อนที่จะเผยแพร่สู่สาธารณะ",
        "ด้วยเหตุนี้ระบบนี้จึงเป็นที่นิยมมากในการใช้งานบนเครื่องแม่ข่ายขององค์กร",
        "สมาชิกของชุมชนพูดคุยเรื่องปัญหาต่าง ๆ ในรายการส่งจดหมายและช่วยกันดูแลแพ็กเกจหลายพันชุด",
        "ผู้ใช้ใหม่สามารถอ่านคู่มือเพื่อเรียนรู้วิธีตั้งค่าเครือข่ายและสำรองข้อมูลที่สำคัญ",
        "เมื่อพบข้อผิดพลาด ผู้ใช้สามารถส่งรายงานไปยังระบบติดตามข้อผิดพลาดและนักพัฒนาจะตอบกลับโดยเร็ว",
    ]
)


def handbook() -> pl.DataFrame:
    """(id, lang_hint, lang, text) of the handbook, extracted and labelled once, cached."""
    cache = CACHE_DIR / "handbook_langid_v1.parquet"
    if cache.exists():
        return pl.read_parquet(cache)
    from data_pipes.web.extract import ExtractionError, extract
    from data_pipes.web.langid import LanguageIdentifier

    df = pl.read_parquet(CORPORA_DIR / "web_debian_handbook.parquet", columns=["id", "lang_hint", "html"])
    texts = []
    for html in df["html"].to_list():
        try:
            texts.append(extract(html).text)
        except ExtractionError:
            texts.append("")
    langs, _ = LanguageIdentifier().predict(texts)
    out = df.select("id", "lang_hint").with_columns(
        lang=pl.Series(langs, dtype=pl.String), text=pl.Series(texts)
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    out.write_parquet(cache.with_suffix(".tmp"))
    cache.with_suffix(".tmp").rename(cache)
    return out


def _base():
    from data_pipes.web.c4 import C4Params
    from data_pipes.web.fineweb import FineWebParams
    from data_pipes.web.gopher_quality import GopherQualityParams
    from data_pipes.web.gopher_repetition import GopherRepetitionParams
    from data_pipes.web.lang.rules import Sections

    return Sections(GopherQualityParams(), GopherRepetitionParams(), C4Params(), FineWebParams())


def keep_rates(df: pl.DataFrame, thresholds: str = "fineweb2") -> pl.DataFrame:
    from data_pipes.web.heuristic_chain import heuristic_chain, heuristic_chain_by_language

    b = _base()
    cpu = time.process_time()
    _, before = heuristic_chain(df["text"], b.gopher_quality, b.gopher_repetition, b.c4, b.fineweb)
    cpu_before = time.process_time() - cpu
    cpu = time.process_time()
    _, after, _ = heuristic_chain_by_language(df["text"], df["lang"], b, thresholds=thresholds)  # type: ignore[arg-type]
    cpu_after = time.process_time() - cpu
    print(
        f"CPU: English rules for all {cpu_before:.1f} s, per-language rules {cpu_after:.1f} s ({df.height} docs)"
    )
    res = df.select("lang").with_columns(before=before, after=after)

    def top(col: str) -> pl.Expr:
        return pl.col(col).drop_nulls().value_counts(sort=True).first().struct.field(col).fill_null("")

    out = (
        res.group_by("lang")
        .agg(
            docs=pl.len(),
            keep_before=pl.col("before").is_null().mean(),
            keep_after=pl.col("after").is_null().mean(),
            top_reason_before=top("before"),
            top_reason_after=top("after"),
        )
        .sort("docs", "lang", descending=[True, False])
    )
    en = out.filter(pl.col("lang") == "en")["keep_after"].first()
    return out.with_columns(gap_to_en_pp=((pl.col("keep_after") - en) * 100).round(1))


def datatrove_agreement(df: pl.DataFrame, min_docs: int = 20, thresholds: str = "fineweb2") -> pl.DataFrame:
    """Keep/drop and reason agreement with datatrove's per-language filters (C4 off), per tuned language, with
    the `thresholds` table's figures given to both."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter

    from data_pipes.web import fineweb, gopher_quality, gopher_repetition
    from data_pipes.web.heuristic_chain import heuristic_chain
    from data_pipes.web.lang.rules import resolve
    from data_pipes.web.lang.table import LANGS

    names: dict[str, str] = {}
    for module in (gopher_quality, gopher_repetition, fineweb):
        names |= {ours: theirs for ours, theirs in module.DATATROVE_REASONS.items()}
    rows = []
    counts = df["lang"].value_counts()
    for lang in sorted(c for c, n in counts.iter_rows() if c in LANGS and n >= min_docs):
        rules = resolve(lang, _base(), {}, thresholds)  # type: ignore[arg-type]
        assert rules is not None  # internal: a tuned language always has rules
        s, code = rules.sections, LANGS[lang].source.split()[-1]
        texts = df.filter(pl.col("lang") == lang)["text"]
        cpu = time.process_time()
        _, ours = heuristic_chain(
            texts, s.gopher_quality, s.gopher_repetition, None, s.fineweb, rules.segmenter
        )
        cpu_ours = time.process_time() - cpu
        q, r, f = s.gopher_quality, s.gopher_repetition, s.fineweb
        filters = [
            GopherQualityFilter(
                min_doc_words=q.min_doc_words, max_doc_words=q.max_doc_words,
                min_avg_word_length=q.min_avg_word_length, max_avg_word_length=q.max_avg_word_length,
                max_symbol_word_ratio=q.max_symbol_word_ratio, max_bullet_lines_ratio=q.max_bullet_lines_ratio,
                max_ellipsis_lines_ratio=q.max_ellipsis_lines_ratio, max_non_alpha_words_ratio=q.min_alpha_words_ratio,
                min_stop_words=q.min_stop_words, stop_words=list(q.stop_words), language=code,
            ),
            GopherRepetitionFilter(
                dup_line_frac=r.dup_line_frac, dup_para_frac=r.dup_para_frac, dup_line_char_frac=r.dup_line_char_frac,
                dup_para_char_frac=r.dup_para_char_frac, top_n_grams=r.top_n_grams, dup_n_grams=r.dup_n_grams,
                language=code,
            ),
            FineWebQualityFilter(
                line_punct_thr=f.line_punct_thr, short_line_thr=f.short_line_thr,
                short_line_length=f.short_line_length, char_duplicates_ratio=f.char_duplicates_ratio,
                new_line_ratio=f.new_line_ratio, language=code,
            ),
        ]  # fmt: skip
        theirs: list[str | None] = []
        cpu = time.process_time()
        try:
            for i, text in enumerate(texts.to_list()):
                doc, verdict = Document(text=text, id=str(i)), None
                for flt in filters:
                    res = flt.filter(doc)
                    if res is not True:
                        verdict = res[1] if isinstance(res, tuple) else "dropped"
                        break
                theirs.append(verdict)
        except (
            ImportError
        ) as exc:  # datatrove's tokenizer for the language needs a package not installed here
            print(f"  {lang}: datatrove's tokenizer is not available here: {exc}")
            continue
        cpu_theirs = time.process_time() - cpu
        mine = [None if x is None else names.get(x, x) for x in ours.to_list()]
        keep = sum((a is None) == (b is None) for a, b in zip(mine, theirs, strict=True))
        same = sum(a == b for a, b in zip(mine, theirs, strict=True))
        rows.append(
            {
                "lang": lang, "datatrove_language": code, "docs": len(mine),
                "kept_ours": sum(x is None for x in mine), "kept_datatrove": sum(x is None for x in theirs),
                "keep_drop_agreement": keep / len(mine), "same_reason": same / len(mine),
                "speed_ratio_cpu": cpu_theirs / max(cpu_ours, 1e-9),
            }
        )  # fmt: skip
    return pl.DataFrame(rows)


def _spans(text: str, tokens: list[str]) -> set[tuple[int, int]]:
    """Character spans of tokens found in order in the text (tokens the text does not hold are skipped)."""
    out, pos = set(), 0
    for tok in tokens:
        i = text.find(tok, pos)
        if tok and i >= 0:
            out.add((i, i + len(tok)))
            pos = i + len(tok)
    return out


def _f1(a: set, b: set) -> float:
    return 2 * len(a & b) / (len(a) + len(b)) if a or b else 1.0


def _time(fn: Callable[[str], list[str]], texts: list[str]) -> tuple[list[list[str]], float]:
    cpu = time.process_time()
    out = [fn(t) for t in texts]
    return out, time.process_time() - cpu


def segmenters(df: pl.DataFrame, thai: str, min_docs: int = 20) -> pl.DataFrame:
    """docs/s (CPU) and token-boundary F1 against datatrove's tokenizer of the language."""
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    from data_pipes.web.lang.segmenters import _byte_chunks, segment
    from data_pipes.web.lang.table import LANGS

    def ours(kind: str) -> Callable[[str], list[str]]:
        return lambda t: segment(pl.Series([t]), kind)["tok"].to_list()

    candidates: dict[str, list[tuple[str, Callable[[str], list[str]]]]] = {}
    for lang, fig in LANGS.items():
        candidates[lang] = [(f"arcflow {fig.segmenter} (chosen)", ours(fig.segmenter))]
    import jieba
    from sudachipy import Dictionary, SplitMode

    jieba.setLogLevel(60)
    candidates["zh"].append(
        ("jieba (datatrove's, sdist)", lambda t: [w.strip() for w in jieba.cut(t) if w.strip()])
    )
    sudachi_c = Dictionary(dict="core").tokenizer(mode=SplitMode.C)
    candidates["ja"].append(
        (
            "sudachi mode C",
            lambda t: [m.surface() for p in _byte_chunks(t, 40_000) for m in sudachi_c.tokenize(p)],
        )
    )
    rows = []
    counts = dict(df["lang"].value_counts().iter_rows())
    langs = sorted(c for c in LANGS if counts.get(c, 0) >= min_docs) + ["th"]
    for lang in langs:
        texts = [thai] if lang == "th" else df.filter(pl.col("lang") == lang)["text"].to_list()
        try:
            ref_tok = load_word_tokenizer(LANGS[lang].source.split()[-1])
            ref, ref_cpu = _time(ref_tok.word_tokenize, texts)
        except ImportError as exc:
            print(f"  {lang}: datatrove's tokenizer is not available here: {exc}")
            continue
        ref_spans = [_spans(t, toks) for t, toks in zip(texts, ref, strict=True)]
        for name, fn in candidates[lang]:
            fn(texts[0])  # load dictionaries outside the timing
            got, cpu = _time(fn, texts)
            f1 = [_f1(_spans(t, g), r) for t, g, r in zip(texts, got, ref_spans, strict=True)]
            rows.append(
                {
                    "lang": lang, "segmenter": name, "docs": len(texts),
                    "docs_per_s_cpu": len(texts) / max(cpu, 1e-9), "datatrove_docs_per_s_cpu": len(texts) / max(ref_cpu, 1e-9),
                    "boundary_f1_vs_datatrove": sum(f1) / len(f1),
                }
            )  # fmt: skip
    return pl.DataFrame(rows)


def main(sections: set[int] | None = None) -> None:
    """Print the three sections (all by default)."""
    sections = sections or {1, 2, 3}
    df = handbook()
    print(f"handbook: {df.height} pages, {df['lang'].n_unique()} detected languages")
    titles = {
        1: "keep rate per detected language: datatrove's English rules for all (before) vs per language (after)",
        2: "agreement with datatrove's per-language filters (Gopher quality, repetition, FineWeb; same figures)",
        3: "word segmenters: speed and token-boundary F1 against datatrove's tokenizer of the language",
    }
    runs = {1: lambda: keep_rates(df), 2: lambda: datatrove_agreement(df), 3: lambda: segmenters(df, THAI)}
    with pl.Config(tbl_rows=60, tbl_width_chars=220, fmt_str_lengths=60, float_precision=3):
        for n in sorted(sections):
            print(f"\n{n}. {titles[n]}")
            print(runs[n]())
