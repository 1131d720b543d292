"""`heuristic_filters`' reports through the engine on a few real documents: each drop reason with datatrove's name
for the same check ("drop reasons"); the languages that ran on fallback thresholds, with their documents and the
fallback each got ("fallback thresholds")."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml

from data_pipes.web.heuristic_chain import heuristic_chain_by_language
from data_pipes.web.lang.fallbacks import fallback_markdown, fallback_used
from data_pipes.web.lang.rules import Sections
from flows.engine import Engine
from flows.store import Store
from flows.validate import load_pipeline
from tasks.web_heuristics import HeuristicParams

PROSE = (
    "The river runs past the old mill and through the valley, where farmers grow wheat and barley. In spring the "
    "water rises with the melting snow, and the village children gather to watch it. Most of the houses were "
    "built with stone from the hills, which gives the streets a warm colour. Visitors often stay at the inn "
    "near the bridge, a building that has been open to travellers since 1820. The museum keeps records of the "
    "floods, the harvests and the families that have lived here."
)


def _run(tmp_path: Path, rows: list[dict], params: dict | None = None) -> tuple[dict, Path]:
    """A `files` node over ``rows`` (JSONL) and a `heuristic_filters` node; (its manifest, its output folder)."""
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    spec = {
        "name": "hr",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "docs": {"uses": "files", "params": {"paths": ["docs.jsonl"]}},
            "clean": {"uses": "heuristic_filters", "inputs": ["docs"], "params": params or {}},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    p = load_pipeline(str(path))
    engine = Engine(p)
    try:
        for node in p.order:
            engine.run_node(node)
    finally:
        engine.close()
    store = Store(str(tmp_path / "store"))
    fp = store.read_refs("hr")["clean"]["fingerprint"]
    manifest = store.manifest(fp)
    assert manifest is not None
    return manifest, Path(store.output_dir(fp))


def _report(manifest: dict, out: Path, title: str) -> list[dict]:
    (report,) = [r for r in manifest["reports"] if r["title"] == title]
    return json.loads((out / report["table"]).read_text())


def test_drop_reasons_report_names_datatrove_s_reason_for_each_check(tmp_path: Path) -> None:
    rows = [
        {"id": "kept", "text": PROSE, "lang": "en"},
        # none of Gopher's English stop words (the, be, to, of, and, that, have, with): datatrove's
        # `gopher_enough_stop_words`
        {"id": "nostop1", "text": " ".join(["bread cheese honey market river stone"] * 12), "lang": "en"},
        {"id": "nostop2", "text": " ".join(["apple pear plum grape melon lemon"] * 12), "lang": "en"},
        {"id": "short", "text": "only a few words here", "lang": "en"},
    ]
    manifest, out = _run(tmp_path, rows)
    assert manifest["drop_reasons"] == {"gopher_quality_stop_words": 2, "gopher_quality_min_words": 1}
    assert _report(manifest, out, "drop reasons") == [
        {"reason": "gopher_quality_stop_words", "rows": 2, "datatrove": "GopherQualityFilter: gopher_enough_stop_words"},
        {"reason": "gopher_quality_min_words", "rows": 1, "datatrove": "GopherQualityFilter: gopher_short_doc"},
    ]  # fmt: skip


SWAHILI = (
    "Mto unapita karibu na kinu cha zamani na kupitia bondeni, ambapo wakulima hulima ngano na mtama. Wakati wa "
    "masika maji hupanda, na watoto wa kijiji hukusanyika kuyatazama. Nyumba nyingi zilijengwa kwa mawe kutoka "
    "milimani, jambo linalozipa barabara rangi ya joto. Wageni mara nyingi hukaa katika nyumba ya wageni karibu "
    "na daraja, jengo ambalo limekuwa wazi kwa wasafiri tangu mwaka elfu moja mia nane na ishirini. Jumba la "
    "makumbusho linahifadhi kumbukumbu za mafuriko, mavuno na familia ambazo zimeishi hapa kwa miaka mingi."
)
CHINESE = (
    "Debian 是一个由志愿者组成的社区开发的自由操作系统。它使用 Linux 内核以及许多来自 GNU 项目的基本工具。"
    "管理员可以通过 APT 软件包管理系统安装和升级软件，而不必手动处理依赖关系。"
    "每个稳定版本在发布之前都会经过长时间的测试，因此它在服务器上非常受欢迎。\n"
    "社区的成员来自世界各地，他们在邮件列表上讨论问题，并且共同维护成千上万个软件包。"
    "新用户可以阅读手册，了解如何配置网络、备份数据和保护系统的安全。"
    "如果遇到错误，用户可以在错误跟踪系统中提交报告，开发者会尽快回复。"
)


def test_fallback_report_lists_the_languages_without_tuned_figures(tmp_path: Path) -> None:
    rows = [
        {"id": "en", "text": PROSE, "lang": "en"},  # tuned: English's rules
        {"id": "zh", "text": CHINESE, "lang": "zh-Hans"},  # tuned: Chinese's figures
        {"id": "sw1", "text": SWAHILI, "lang": "sw"},  # no figures: Latin script fallback
        {"id": "sw2", "text": SWAHILI.split(". ")[0], "lang": "sw"},  # too short on any rules
        {"id": "none", "text": CHINESE, "lang": ""},  # no language: Han script fallback
        {"id": "xx", "text": SWAHILI, "lang": "xx"},  # known only through its override
    ]
    params = {"languages": {"xx": {"gopher_quality": {"min_doc_words": 10}}}}
    manifest, out = _run(tmp_path, rows, params)
    assert manifest["counts"]["in"] == 6
    latin = "plain words, average word length 2 to 15, no stop-word rule, English's other thresholds"
    assert _report(manifest, out, "fallback thresholds") == [
        {"lang": "sw", "docs": 2, "kept": 1, "fallback": "script:Latn", "rules": f"Latn script: {latin}"},
        {"lang": "(none)", "docs": 1, "kept": 1, "fallback": "script:Hani",
         "rules": "Hani script: zh words, average word length 1 to 5, no stop-word rule, English's other thresholds"},
        {"lang": "xx", "docs": 1, "kept": 1, "fallback": "override",
         "rules": f"the `languages:` override over the script-less fallback ({latin})"},
    ]  # fmt: skip
    (report,) = [r for r in manifest["reports"] if r["title"] == "fallback thresholds"]
    assert (out / report["markdown"]).read_text() == (
        "**4 of 6 documents ran on fallback thresholds** (3 language(s) without tuned figures: `unknown_lang` "
        "decides, docs/MULTILINGUAL.md): sw: 2 doc(s), script:Latn; (none): 1 doc(s), script:Hani; xx: 1 doc(s), "
        "override."
    )


def test_fallback_names_for_english_and_drop_and_tuned_languages() -> None:
    p = HeuristicParams()
    base = Sections(p.gopher_quality, p.gopher_repetition, p.c4, p.fineweb)
    texts, langs = pl.Series([PROSE, SWAHILI, PROSE]), pl.Series(["en", "sw", "de"])
    codes = ["en", "sw", "de"]
    for unknown, want in (("english", "english"), ("drop", "drop"), ("script", "script:Latn")):
        _, _, keys = heuristic_chain_by_language(texts, langs, base, unknown)  # type: ignore[arg-type]
        assert [fallback_used(c, k) for c, k in zip(codes, keys.to_list(), strict=True)] == ["", want, ""]
    assert fallback_markdown([], 3) == (
        "All 3 documents ran on tuned rules (English's, or their language's figures); none used a fallback."
    )
