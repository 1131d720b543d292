"""Which documents ran on fallback rules rather than tuned ones, and how a report says so.

A document gets tuned rules when its language is English (datatrove's defaults) or one of the table's languages
(`table.py`). Any other language, or none, falls back as the node's `unknown_lang` says (`rules.py`): `script` (the
segmenter and word-length bounds of the text's dominant script, no stop-word rule), `english`, or `drop`. A
language known only through its `languages:` override starts from the script-less fallback. `fallback_used`
names the fallback of one document; `fallback_rows` and `fallback_markdown` are the node's "fallback thresholds"
report: each language that fell back, with its documents, how many were kept, and which fallback it got.
"""

from __future__ import annotations

from collections import Counter

from data_pipes.web.lang.scripts import fallback_for
from data_pipes.web.lang.table import LANGS

NO_LANG = "(none)"  # how the reports name documents without a language


def fallback_used(code: str, key: str) -> str:
    """The fallback a document of (normalised) language ``code`` ran on, given its rule group ``key``
    (``heuristic_chain_by_language``'s third column): ``script:<Script>`` (``script:none`` for a text without
    letters), ``english``, ``drop`` or ``override`` (known only through ``languages:``); "" for tuned rules."""
    if key.startswith("script:") or key == "drop":
        return key
    if key == "en":
        return "" if code == "en" else "english"
    return "" if key in LANGS else "override"


def describe(fallback: str) -> str:
    """What a fallback's rules are, in words (its segmenter and word-length bounds for a script fallback)."""
    if fallback.startswith("script:") or fallback == "override":
        script = fallback.removeprefix("script:") if fallback != "override" else ""
        fb = fallback_for("" if script == "none" else script)
        if fb.unsegmented:
            words = "whitespace-cut phrases (written without spaces, no segmenter): no word-count rule"
        else:
            words = (
                f"{fb.segmenter} words, average word length {fb.min_avg_word_length:g} to "
                f"{fb.max_avg_word_length:g}"
            )
        rules = f"{words}, no stop-word rule, English's other thresholds"
        if fallback == "override":
            return f"the `languages:` override over the script-less fallback ({rules})"
        return f"{script if script != 'none' else 'no'} script: {rules}"
    if fallback == "english":
        return "English's rules (`unknown_lang: english`)"
    if fallback == "drop":
        return "dropped as heuristic_unknown_language (`unknown_lang: drop`)"
    return fallback


def fallback_rows(parts: list[dict[str, dict]]) -> list[dict]:
    """One row per (language, fallback) over the shards' per-language counts (``by_language`` entries with a
    ``fallback`` map of fallback -> {docs, kept}): most documents first, ties by language and fallback."""
    docs: Counter[tuple[str, str]] = Counter()
    kept: Counter[tuple[str, str]] = Counter()
    for part in parts:
        for lang, entry in part.items():
            for fb, counts in entry.get("fallback", {}).items():
                docs[(lang, fb)] += counts["docs"]
                kept[(lang, fb)] += counts["kept"]
    return [
        {
            "lang": lang,
            "docs": docs[(lang, fb)],
            "kept": kept[(lang, fb)],
            "fallback": fb,
            "rules": describe(fb),
        }
        for lang, fb in sorted(docs, key=lambda k: (-docs[k], k))
    ]


def fallback_markdown(rows: list[dict], total_docs: int) -> str:
    """One paragraph: how many documents and which languages ran on fallback rules, or that none did."""
    if not rows:
        return (
            f"All {total_docs:,} documents ran on tuned rules (English's, or their language's figures); none used "
            "a fallback."
        )
    n = sum(r["docs"] for r in rows)
    langs = sorted({r["lang"] for r in rows})
    listed = "; ".join(f"{r['lang']}: {r['docs']:,} doc(s), {r['fallback']}" for r in rows)
    return (
        f"**{n:,} of {total_docs:,} documents ran on fallback thresholds** ({len(langs)} language(s) without tuned "
        f"figures: `unknown_lang` decides, docs/MULTILINGUAL.md): {listed}."
    )
