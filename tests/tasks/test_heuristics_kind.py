"""`heuristic_filters` through the engine on real pages: pydoc HTML extracted to text, then the four rule sets."""

from __future__ import annotations

import json
import os
import pydoc
from pathlib import Path

import polars as pl
import pytest
import yaml

from flows.engine import Engine
from flows.store import Store
from flows.validate import load_pipeline

MODULES = ("json", "csv", "textwrap", "string", "shlex", "fnmatch", "heapq", "bisect", "base64", "glob")


def _pipeline(tmp_path: Path, heuristics: dict) -> Path:
    data = tmp_path / "pages"
    data.mkdir(exist_ok=True)
    for name in MODULES:
        module = __import__(name)
        (data / f"{name}.html").write_text(pydoc.HTMLDoc().page(name, pydoc.HTMLDoc().docmodule(module)))
    prose = [  # varied prose that every rule set keeps
        "The river runs past the old mill and through the valley, where farmers grow wheat.",
        "In spring the water rises with the melting snow, and the village children gather to watch it.",
        "Most of the houses were built with stone from the hills, which gives the streets a warm colour.",
        "Visitors often stay at the inn near the bridge, a building open to travellers since 1820.",
        "The museum keeps records of the floods, the harvests and the families that have lived here.",
        "On market days the square fills with stalls selling bread, cheese, honey and vegetables.",
    ]
    (data / "prose.html").write_text(
        "<html><body>" + "".join(f"<p>{p}</p>" for p in prose) + "</body></html>"
    )
    (data / "repeated.html").write_text(
        "<html><body>" + "".join(f"<p>{prose[0]} Line {i}.</p>" for i in range(12)) + "</body></html>"
    )
    (data / "lorem.html").write_text(
        "<html><body><p>" + "Lorem ipsum dolor sit amet. " * 40 + "</p></body></html>"
    )
    spec = {
        "name": "h",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "pages": {"uses": "files", "params": {"paths": ["pages"]}},
            "text": {"uses": "extract_html", "inputs": ["pages"], "params": {"min_chars": 1}},
            # the pages carry no `lang` (no langid node): `unknown_lang: english` gives them datatrove's English
            # rules, which these tests compare against
            "clean": {
                "uses": "heuristic_filters",
                "inputs": ["text"],
                "params": {"unknown_lang": "english", **heuristics},
            },
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _run(path: Path) -> dict:
    p = load_pipeline(str(path))
    engine = Engine(p)
    for n in p.order:
        engine.run_node(n)
    engine.close()
    store = Store(str(path.parent / "store"))
    return store.manifest(store.read_refs("h")["clean"]["fingerprint"])


def _frames(tmp_path: Path, node: str, folder: str = "") -> pl.DataFrame:
    store = Store(str(tmp_path / "store"))
    out = tmp_path / "store" / "outputs" / store.read_refs("h")[node]["fingerprint"] / folder
    return pl.concat([pl.read_parquet(f) for f in sorted(out.glob("part-*.parquet"))])


def _datatrove_chain(text: str, split_paragraph: bool = True) -> tuple[str | None, str]:
    """datatrove's four English filters in the kind's order: (our reason name or None, the text after C4)."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    from data_pipes.web import c4, fineweb, gopher_quality, gopher_repetition

    doc = Document(text=text, id="x")
    for flt, module in (
        (GopherQualityFilter(), gopher_quality),
        (GopherRepetitionFilter(), gopher_repetition),
        (C4QualityFilter(split_paragraph=split_paragraph), c4),
        (FineWebQualityFilter(), fineweb),
    ):
        res = flt.filter(doc)
        if res is not True:
            ours = {theirs: name for name, theirs in module.DATATROVE_REASONS.items()}
            return ours[res[1]], doc.text
    return None, doc.text


def test_rules_drop_with_their_own_reasons(tmp_path: Path) -> None:
    m = _run(_pipeline(tmp_path, {}))
    c = m["counts"]
    assert c["in"] == 13 and c["in"] == c["kept"] + c["dropped"] + c["quarantined"]
    assert c["quarantined"] == 0
    dropped = pl.concat(
        [
            pl.read_parquet(f)
            for f in (tmp_path / "store" / "outputs" / m["fingerprint"] / "excluded").glob("*.parquet")
        ]
    )
    assert dropped.height == c["dropped"] == sum(m["drop_reasons"].values())
    # "Lorem ipsum dolor sit amet." x 40 has none of Gopher's stop words (the, be, to, of, and, that, have,
    # with): the first filter drops it, before C4's lorem-ipsum rule is reached
    lorem = dropped.filter(pl.col("text").str.contains("Lorem ipsum"))
    assert lorem["reason"].to_list() == ["gopher_quality_stop_words"]
    # every page's fate, against datatrove's filters run here on the same extracted texts
    for module in ("datatrove", "spacy"):  # scripts/setup installs both: under CI a missing one fails
        __import__(module) if os.environ.get("CI") else pytest.importorskip(module)
    texts = _frames(tmp_path, "text")
    kept = _frames(tmp_path, "clean")
    got = {**dict.fromkeys(kept["id"].to_list()), **dict(zip(dropped["id"], dropped["reason"], strict=True))}
    want = {doc_id: _datatrove_chain(text) for doc_id, text in zip(texts["id"], texts["text"], strict=True)}
    assert got == {doc_id: reason for doc_id, (reason, _) in want.items()}
    assert dict(zip(kept["id"], kept["text"], strict=True)) == {
        doc_id: text for doc_id, (reason, text) in want.items() if reason is None
    }
    assert kept.filter(pl.col("text").str.contains("farmers grow wheat")).height == 1  # the varied prose
    assert 0 < kept.height < 13 and len(m["drop_reasons"]) >= 2  # both fates, several reasons


def test_c4_sentence_mode_through_the_kind(tmp_path: Path) -> None:
    """`c4: {split_paragraph: false}` reaches the filter: every page's fate and text as datatrove's chain with
    C4QualityFilter(split_paragraph=False)."""
    for module in ("datatrove", "spacy"):
        __import__(module) if os.environ.get("CI") else pytest.importorskip(module)
    m = _run(_pipeline(tmp_path, {"c4": {"split_paragraph": False}}))
    assert m["params"]["c4"]["split_paragraph"] is False
    texts, kept = _frames(tmp_path, "text"), _frames(tmp_path, "clean")
    dropped = _frames(tmp_path, "clean", "excluded")
    got = {**dict.fromkeys(kept["id"].to_list()), **dict(zip(dropped["id"], dropped["reason"], strict=True))}
    want = {
        d: _datatrove_chain(t, split_paragraph=False) for d, t in zip(texts["id"], texts["text"], strict=True)
    }
    assert got == {d: reason for d, (reason, _) in want.items()}
    assert dict(zip(kept["id"], kept["text"], strict=True)) == {
        d: t for d, (r, t) in want.items() if r is None
    }
    # sentence mode joins kept sentences with spaces: the six-line prose page comes out as one line
    prose = kept.filter(pl.col("text").str.contains("farmers grow wheat"))["text"].to_list()
    assert len(prose) == 1 and "\n" not in prose[0]


def test_switching_a_filter_off_and_thresholds_are_params(tmp_path: Path) -> None:
    strict = _run(
        _pipeline(
            tmp_path,
            {
                "gopher_quality": {"min_doc_words": 100_000, "max_doc_words": None},
                "gopher_repetition": None,
                "c4": None,
                "fineweb": None,
            },
        )
    )
    assert strict["counts"]["kept"] == 0
    assert set(strict["drop_reasons"]) == {"gopher_quality_min_words"}
    assert json.dumps(strict["params"]["c4"]) == "null"


def test_per_language_report_and_fallback(tmp_path: Path) -> None:
    """Documents with their `lang`: the report gives each language's keep rate and top drop reason; a page
    without a language falls back to its script's rules (here: kept without a stop-word rule)."""
    zh = (
        "Debian 是一个由志愿者组成的社区开发的自由操作系统。它使用 Linux 内核以及许多来自 GNU 项目的基本工具。"
        "管理员可以通过 APT 软件包管理系统安装和升级软件，而不必手动处理依赖关系。"
        "每个稳定版本在发布之前都会经过长时间的测试，因此它在服务器上非常受欢迎。\n"
        "社区的成员来自世界各地，他们在邮件列表上讨论问题，并且共同维护成千上万个软件包。"
        "新用户可以阅读手册，了解如何配置网络、备份数据和保护系统的安全。"
        "如果遇到错误，用户可以在错误跟踪系统中提交报告，开发者会尽快回复。"
    )
    data = tmp_path / "docs.jsonl"
    rows = [
        {"id": "zh1", "text": zh, "lang": "zh"},
        {"id": "zh2", "text": zh.split("。")[0] + "。", "lang": "zh"},  # one sentence: too few words
        {"id": "none", "text": zh, "lang": ""},
        {"id": "en1", "text": "only a few words here", "lang": "en"},
    ]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    spec = {
        "name": "h",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "docs": {"uses": "files", "params": {"paths": ["docs.jsonl"]}},
            "clean": {"uses": "heuristic_filters", "inputs": ["docs"]},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True))
    m = _run(path)
    assert m["counts"]["in"] == 4 and m["counts"]["kept"] == 2
    kept = _frames(tmp_path, "clean")
    assert sorted(kept["url"].str.extract(r"(\d+)$").to_list()) == ["0", "2"]  # lines 0 and 2
    (report,) = [r for r in m["reports"] if r["title"] == "keep rate by language"]
    table = json.loads((tmp_path / "store" / "outputs" / m["fingerprint"] / report["table"]).read_text())
    assert table == [
        {"lang": "zh", "docs": 2, "kept": 1, "keep_rate": 0.5, "top_drop_reason": "gopher_quality_min_words",
         "top_reason_share": 1.0},
        {"lang": "(none)", "docs": 1, "kept": 1, "keep_rate": 1.0, "top_drop_reason": "", "top_reason_share": 0.0},
        {"lang": "en", "docs": 1, "kept": 0, "keep_rate": 0.0, "top_drop_reason": "gopher_quality_min_words",
         "top_reason_share": 1.0},
    ]  # fmt: skip
