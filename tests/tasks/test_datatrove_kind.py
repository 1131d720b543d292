"""The `datatrove` kind: datatrove's own multilingual filters and user-written steps as nodes.

Decisions are checked against datatrove running the same step itself (its ``run``, whose stats count each drop
reason), so the bridge is held to datatrove's behaviour, not to a copy of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import yaml

pytest.importorskip("datatrove")

from data_pipes.datatrove_bridge import StepRunner  # noqa: E402
from data_pipes.datatrove_local import FASTTEXT_MAGIC  # noqa: E402
from data_pipes.datatrove_resolve import AssetNotCached, step_signature  # noqa: E402
from flows.engine import Engine  # noqa: E402
from flows.errors import SpecError  # noqa: E402
from flows.store import Store  # noqa: E402
from flows.validate import load_pipeline  # noqa: E402
from tests._prefect_home import seed_prefect_home  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
USER = "tests.tasks._datatrove_user_steps"

DE_STOP = [
    "der",
    "die",
    "und",
    "in",
    "den",
    "von",
    "zu",
    "das",
    "mit",
    "sich",
    "des",
    "auf",
    "für",
    "ist",
    "im",
]
PARAGRAPHS = {  # small real paragraphs; a few are kept by each filter, the others dropped for different reasons
    "de_good": "Die Stadt liegt am Ufer des Flusses und ist seit dem Mittelalter ein wichtiger Handelsplatz.\n"
    "Im Frühjahr steigt das Wasser mit der Schneeschmelze, und die Kinder des Dorfes kommen zum Ufer.\n"
    "Die meisten Häuser wurden aus dem Stein der Hügel gebaut, was den Straßen eine warme Farbe gibt.\n"
    "Das Museum bewahrt die Berichte über die Hochwasser, die Ernten und die Familien, die hier lebten.",
    "de_menu": "Startseite\nÜber uns\nKontakt\nImpressum\nDatenschutz\nNewsletter abonnieren\nSuche\nAnmelden",
    "de_short": "Willkommen auf unserer Seite.",
    "fr_good": "La ville se trouve au bord du fleuve et reste depuis le Moyen Âge une place de commerce.\n"
    "Au printemps, l'eau monte avec la fonte des neiges, et les enfants du village viennent la regarder.\n"
    "La plupart des maisons ont été construites avec la pierre des collines, ce qui donne aux rues une "
    "couleur chaude.\nLe musée conserve les récits des crues, des récoltes et des familles qui ont vécu ici.",
    "fr_menu": "Accueil\nQui sommes-nous\nContact\nMentions légales\nPlan du site\nRechercher\nConnexion",
    "zh_good": "这座城市位于河岸，自中世纪以来一直是重要的贸易中心。\n春天，河水随着积雪融化而上涨，村里的孩子们会到岸边观看。"
    "\n大多数房屋是用山上的石头建造的，这让街道呈现出温暖的颜色。\n博物馆保存着洪水、收成和在这里生活过的家庭的记录。",
    "zh_short": "欢迎访问我们的网站。",
}


def _frame(texts: dict[str, str | None], lang: str = "") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(texts),
            "text": list(texts.values()),
            "source": ["test"] * len(texts),
            "url": [f"https://example.org/{k}" for k in texts],
            "lang": [lang or k.split("_")[0] for k in texts],
            "meta": [json.dumps({"lang_hint": k.split("_")[0], "path": f"{k}.txt"}) for k in texts],
            "quality_score": [float(i) / 10 for i in range(len(texts))],
        },
        schema_overrides={"text": pl.String},
    )


def _datatrove_itself(path: str, args: dict, frame: pl.DataFrame) -> tuple[set[str], Counter[str]]:
    """Kept ids and drop-reason counts when datatrove runs the step on the same documents."""
    from datatrove.data import Document

    from data_pipes.datatrove_resolve import resolve_step

    step = resolve_step(path)(**args)
    docs = [Document(text=t, id=i, metadata={}) for i, t in zip(frame["id"], frame["text"], strict=True)]
    kept = {d.id for d in step.run(iter(docs))}
    stats = step.stats.to_dict()["stats"]  # {"total": 3, "dropped": 2, "dropped_gopher_short_doc": 2, ...}
    reasons = Counter(
        {
            k.removeprefix("dropped_"): int(v if isinstance(v, int | float) else v["total"])
            for k, v in stats.items()
            if k.startswith("dropped_")
        }
    )
    return kept, reasons


@pytest.mark.parametrize(
    ("path", "args", "langs"),
    [
        ("datatrove.pipeline.filters.GopherQualityFilter", {"language": "deu", "min_doc_words": 20, "stop_words": DE_STOP}, ("de",)),
        ("datatrove.pipeline.filters.FineWebQualityFilter", {"language": "fra"}, ("fr",)),
        ("datatrove.pipeline.filters.GopherQualityFilter", {"language": "zho_Hani", "min_doc_words": 20, "min_avg_word_length": 1, "min_stop_words": None}, ("zh",)),
    ],
)  # fmt: skip
def test_multilingual_filters_decide_as_datatrove(path: str, args: dict, langs: tuple[str, ...]) -> None:
    frame = _frame({k: v for k, v in PARAGRAPHS.items() if k.split("_")[0] in langs})
    kept, dropped, quarantined = StepRunner(path, args).run(frame)
    want_kept, want_reasons = _datatrove_itself(path, args, frame)
    assert set(kept["id"]) == want_kept and kept.height >= 1 and dropped.height >= 1
    assert Counter(dropped["reason"]) == want_reasons
    assert quarantined.height == 0 and kept.height + dropped.height == frame.height
    assert kept.columns == frame.columns and kept.schema == frame.schema  # every column comes back as it was
    assert kept.equals(frame.filter(pl.col("id").is_in(list(want_kept))))  # filters change nothing else


def test_user_filter_formatter_and_step_keep_metadata() -> None:
    texts = {
        "de_good": PARAGRAPHS["de_good"].replace(" ", "   "),
        "de_short": "zu  kurz",
        "zh_good": PARAGRAPHS["zh_good"],
    }
    frame = _frame(texts)
    kept, dropped, _ = StepRunner(f"{USER}:MinWordsFilter", {"min_words": 3}).run(frame)
    assert list(kept["id"]) == ["de_good", "zh_good"] and list(dropped["reason"]) == ["too_few_words"]
    meta = json.loads(kept["meta"][0])
    n_words = len(texts["de_good"].split())
    assert meta == {
        "lang_hint": "de",
        "path": "de_good.txt",
        "n_words": n_words,
    }  # the meta, plus what it added
    assert json.loads(dropped["meta"][0])["n_words"] == 2 and dropped["text"][0] == "zu  kurz"
    assert kept.drop("meta").equals(frame.drop("meta").filter(pl.col("id") != "de_short"))

    formatted, _, _ = StepRunner(f"{USER}.CollapseSpaces", {}).run(kept)
    assert formatted["text"][0] == PARAGRAPHS["de_good"] and formatted["meta"].equals(kept["meta"])

    tagged, untagged, _ = StepRunner(f"{USER}:TagLang", {}).run(
        _frame({"zh_good": PARAGRAPHS["zh_good"], "x_n": "1 2"})
    )
    assert json.loads(tagged["meta"][0])["script"] == "Hani" and list(untagged["reason"]) == [
        "tag_lang_dropped"
    ]

    pii, _, _ = StepRunner(
        "datatrove.pipeline.formatters.PIIFormatter", {"email_replacement": "<email>"}
    ).run(_frame({"en_mail": "Write to anna.schmidt@example.de about the flood records."}))
    assert pii["text"][0] == "Write to <email> about the flood records."

    page = f"<html><body><nav>Startseite | Kontakt</nav><article><p>{PARAGRAPHS['de_good']}</p></article></body></html>"
    extracted, empty, _ = StepRunner(
        "datatrove.pipeline.extractors.Trafilatura", {"favour_precision": True}
    ).run(_frame({"de_page": page, "de_empty": "<html><body></body></html>"}))
    assert (
        extracted["text"][0].startswith("Die Stadt liegt am Ufer")
        and "Startseite" not in extracted["text"][0]
    )
    assert list(empty["reason"]) == ["trafilatura_empty"] and empty["text"][0] == "<html><body></body></html>"


def test_raising_step_quarantines_only_its_rows() -> None:
    texts = {f"de_{i}": f"Absatz {i} über den Fluss." for i in range(5)}
    texts["de_2"] += " BOOM"
    texts["de_4"] = None
    frame = _frame(texts).with_columns(
        pl.when(pl.col("id") == "de_3").then(pl.lit("[1, 2]")).otherwise(pl.col("meta")).alias("meta")
    )
    kept, dropped, bad = StepRunner(f"{USER}:FussyFilter", {"batch_size": 2}).run(frame)
    assert list(kept["id"]) == ["de_0", "de_1"] and dropped.height == 0
    errors = dict(zip(bad["id"], bad["error"], strict=True))
    assert errors["de_2"].startswith(
        "value_error: cannot judge a document containing 'BOOM' (in tests.tasks."
    )
    assert errors["de_3"].startswith("meta_not_json") and errors["de_4"].startswith("missing_text")
    assert bad.drop("error").equals(
        frame.filter(pl.col("id").is_in(["de_2", "de_3", "de_4"]))
    )  # the input, whole


BAD_NODES = {
    "typo": ({"step": "datatrove.pipeline.filters.GopherQualityFiltr"}, "did you mean 'GopherQualityFilter'"),
    "nomod": ({"step": "mypkg.steps:MyFilter"}, "add its folder to PYTHONPATH"),
    "notstep": ({"step": "json:dumps"}, "not a datatrove step"),
    "reader": ({"step": "datatrove.pipeline.readers.JsonlReader", "args": {"data_folder": "x"}}, "is a reader"),
    "badarg": ({"step": "datatrove.pipeline.filters.GopherQualityFilter", "args": {"min_words": 3}}, "did you mean 'min_doc_words'"),
    "rejected": ({"step": "datatrove.pipeline.filters.RegexFilter", "args": {"regex_exp": "(unclosed"}}, "RegexFilter(**args) raised error"),
    "userarg": ({"step": f"{USER}:MinWordsFilter", "args": {"min_words": 0}}, "min_words must be at least 1"),
}  # fmt: skip


def test_bad_steps_fail_validation_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(PARAGRAPHS["de_good"])
    nodes = {"docs": {"uses": "files", "params": {"paths": ["docs"]}}}
    for name, (params, _) in BAD_NODES.items():
        nodes[name] = {"uses": "datatrove", "inputs": ["docs"], "params": params}
    file = tmp_path / "pipeline.yaml"
    file.write_text(yaml.safe_dump({"name": "bad", "nodes": nodes}, sort_keys=False))
    lines = file.read_text().splitlines()
    with pytest.raises(SpecError) as info:
        load_pipeline(str(file))
    problems = {p.path.split(".")[1]: p for p in info.value.problems}
    assert set(problems) == set(BAD_NODES)
    for name, (_, expected) in BAD_NODES.items():
        problem = problems[name]
        assert expected in problem.message, (name, problem.message)
        key = "args:" if name in ("rejected", "userarg") else ("min_words:" if name == "badarg" else "step:")
        assert key in lines[problem.line - 1], (name, problem.line, lines[problem.line - 1])


def test_user_step_source_enters_the_fingerprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mysteps"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("LIMIT = 3\n")
    (pkg / "steps.py").write_text(
        "from datatrove.pipeline.filters.base_filter import BaseFilter\nfrom mysteps.helpers import LIMIT\n\n\n"
        "class Short(BaseFilter):\n    def filter(self, doc):\n        return len(doc.text) > LIMIT\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    first = step_signature("mysteps.steps:Short")
    assert first["class"] == "mysteps.steps:Short" and set(first["source"]) == {
        "mysteps",
        "mysteps.helpers",
        "mysteps.steps",
    }
    (pkg / "helpers.py").write_text("LIMIT = 4\n")  # an edit to a helper the step imports recomputes the node
    assert step_signature("mysteps.steps:Short")["source"] != first["source"]
    own = step_signature("datatrove.pipeline.filters.GopherQualityFilter")
    assert (
        own["versions"]["datatrove"] and "source" not in own
    )  # datatrove's own steps: its version covers them


def test_a_user_step_code_edit_is_the_reason_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a user step's code is fixed, plan (and status, which shows plan's reasons) says the step's code
    changed, naming its module, not that the node's input files did."""
    (tmp_path / "usersteps").mkdir()
    (tmp_path / "usersteps" / "__init__.py").write_text("")
    step_file = tmp_path / "usersteps" / "badstep.py"
    step_file.write_text(
        "from datatrove.pipeline.filters.base_filter import BaseFilter\n\n\n"
        "class Long(BaseFilter):\n    def filter(self, doc):\n        return len(doc.text) > 20\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.jsonl").write_text(
        "".join(
            json.dumps({"id": f"r{i}", "text": PARAGRAPHS["de_good"][: 10 + 20 * i]}) + "\n" for i in range(3)
        )
    )
    spec = {
        "name": "userstep",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False, "inline_s": 3},
        "nodes": {
            "docs": {"uses": "files", "params": {"paths": ["docs"], "id_field": "id"}},
            "long": {"uses": "datatrove", "inputs": ["docs"], "params": {"step": "usersteps.badstep:Long"}},
        },
    }
    file = tmp_path / "pipeline.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))
    engine = Engine(load_pipeline(str(file)))
    try:
        engine.run_node("docs")
        assert engine.run_node("long")[1]["counts"]["kept"] == 2
    finally:
        engine.close()
    step_file.write_text(step_file.read_text().replace("> 20", "> 40"))
    engine = Engine(load_pipeline(str(file)))
    try:
        plans = {x.node: x for x in engine.plan()}
    finally:
        engine.close()
    assert plans["docs"].status == "up_to_date"
    assert plans["long"].status == "stale" and plans["long"].reasons == [
        "step code changed: usersteps.badstep"
    ]


def test_signature_reasons_name_what_changed() -> None:
    from flows.signature_diff import signature_changes

    old = json.dumps({"class": "a:B", "versions": {"datatrove": "0.4"}, "source": {"a": "1", "a.x": "2"}})
    new = json.dumps({"class": "a:C", "versions": {"datatrove": "0.5"}, "source": {"a": "1", "a.x": "3"}})
    assert signature_changes(old, new) == [
        "step class changed: a:B -> a:C",
        "step code changed: a.x",
        "version datatrove: 0.4 -> 0.5",
    ]
    assert signature_changes("sha-of-files-1", "sha-of-files-2") == ["its input files changed"]
    assert signature_changes("same", "same") == []


def _write_pipeline(root: Path, workdir: str, workers: int) -> Path:
    docs = root / "docs"
    docs.mkdir(exist_ok=True)
    with open(docs / "pages.jsonl", "w", encoding="utf-8") as fh:
        for key, text in PARAGRAPHS.items():
            if key.startswith("de"):
                fh.write(
                    json.dumps(
                        {"id": key, "text": text.replace(", ", ",   "), "topic": "river"}, ensure_ascii=False
                    )
                    + "\n"
                )
    fh = open(docs / "pages.jsonl", "a", encoding="utf-8")  # noqa: SIM115
    fh.write(json.dumps({"id": "de_boom", "text": "Ein Absatz BOOM über den Fluss und die Stadt."}) + "\n")
    fh.close()
    spec = {
        "name": "dt",
        "workdir": workdir,
        "executor": {"n_workers": workers, "processes": False, "inline_s": 0 if workers > 1 else 3},
        "nodes": {
            "docs": {"uses": "files", "params": {"paths": ["docs"], "id_field": "id"}},
            "fussy": {"uses": "datatrove", "inputs": ["docs"], "params": {"step": f"{USER}:FussyFilter"}},
            "gopher_de": {
                "uses": "datatrove",
                "inputs": ["fussy"],
                "params": {"step": "datatrove.pipeline.filters.GopherQualityFilter",
                           "args": {"language": "deu", "min_doc_words": 20, "stop_words": DE_STOP}},
            },
            "tidy": {"uses": "datatrove", "inputs": ["gopher_de"], "params": {"step": f"{USER}:CollapseSpaces"}},
        },
    }  # fmt: skip
    file = root / "pipeline.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return file


def test_pipeline_through_the_cli_same_bytes_with_two_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = _write_pipeline(tmp_path, str(tmp_path / "store"), workers=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    home = seed_prefect_home(tmp_path / "prefect")  # its database already migrated (tests/_prefect_home.py)
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "-f", str(file)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    store = Store(str(tmp_path / "store"))
    refs = store.read_refs("dt")
    counts = {n: store.manifest(refs[n]["fingerprint"])["counts"] for n in ("fussy", "gopher_de", "tidy")}
    for c in counts.values():
        assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"]
    assert (counts["fussy"]["in"], counts["fussy"]["quarantined"]) == (4, 1)
    assert (counts["gopher_de"]["kept"], counts["gopher_de"]["dropped"]) == (1, 2)
    report = store.manifest(refs["gopher_de"]["fingerprint"])["reports"][0]
    fp_dir = tmp_path / "store" / "outputs" / refs["gopher_de"]["fingerprint"]
    assert "(filter), datatrove 0." in (fp_dir / report["markdown"]).read_text()
    out = tmp_path / "store" / "outputs" / refs["tidy"]["fingerprint"]
    row = pl.read_parquet(out / "part-00000.parquet").row(0, named=True)
    assert row["text"] == PARAGRAPHS["de_good"] and json.loads(row["meta"])["topic"] == "river"

    monkeypatch.syspath_prepend(str(ROOT))
    again = tmp_path / "again"
    again.mkdir()
    two = _write_pipeline(again, str(tmp_path / "store2"), workers=2)
    pipeline = load_pipeline(str(two))
    engine = Engine(pipeline)
    try:
        results = {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()
    for node in ("fussy", "gopher_de", "tidy"):
        assert results[node]["content_hash"] == store.manifest(refs[node]["fingerprint"])["content_hash"], (
            node
        )


def test_missing_text_column_is_named_before_any_shard(tmp_path: Path) -> None:
    from tasks.base import DataType, InputRef, RunContext
    from tasks.datatrove_step import DatatroveParams, DatatroveStep

    shard = tmp_path / "part-00000.parquet"
    _frame({"de_short": PARAGRAPHS["de_short"]}).rename({"text": "body"}).write_parquet(shard)
    ref = InputRef("pages", DataType.DOCUMENTS, str(tmp_path), (str(shard),), (1,), "")
    params = DatatroveParams(step=f"{USER}.CollapseSpaces")
    ctx = RunContext("tidy", params, [ref], str(tmp_path / "out"), 0, map=None, run_shards=None)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"input 'pages' has no column 'text'.*name the right one in `text_column`"
    ):
        DatatroveStep().plan_shards(ctx)
    tasks = DatatroveStep().plan_shards(
        RunContext("tidy", params.model_copy(update={"text_column": "body"}), [ref], "", 0, None, None)
    )  # type: ignore[arg-type]
    assert len(tasks) == 1


class _NoNetwork:
    """Makes every socket connection fail and records the attempt (tests must never touch the network)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import socket

        self.attempts: list[object] = []

        def refuse(address: object, *args: object, **kwargs: object) -> None:
            self.attempts.append(address)
            raise OSError(f"network used in a test: {address}")

        def refuse_connect(sock: object, address: object) -> None:
            refuse(address)

        monkeypatch.setattr(socket, "create_connection", refuse)
        monkeypatch.setattr(socket.socket, "connect", refuse_connect)
        monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: refuse(host))


def _empty_asset_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from huggingface_hub.utils import _cache_assets

    cache = tmp_path / "assets"
    monkeypatch.setattr(_cache_assets, "HF_ASSETS_CACHE", str(cache))
    return cache


class DownloadingFilter:
    """Resolved by import path in a test below: a filter that fetches its asset in its constructor."""


def _downloading_filter() -> type:
    from datatrove.io import cached_asset_path_or_download
    from datatrove.pipeline.filters.base_filter import BaseFilter

    class Fetches(BaseFilter):
        name = "fetches"

        def __init__(self) -> None:
            super().__init__()
            self.path = cached_asset_path_or_download("https://example.invalid/words.txt", namespace="test")

        def filter(self, doc: object) -> bool:
            return True

    return Fetches


def test_step_needing_a_model_fails_once_without_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datatrove.io as dt_io

    from data_pipes.datatrove_resolve import AssetNotCached

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    original = dt_io.download_file
    runner = StepRunner("datatrove.pipeline.filters.LanguageFilter", {"languages": ["de"]})
    with pytest.raises(AssetNotCached) as info:
        runner.run(_frame({k: PARAGRAPHS[k] for k in list(PARAGRAPHS)[:3]}))
    message = str(info.value)
    assert "LanguageFilter" in message and "dl.fbaipublicfiles.com/fasttext" in message
    assert str(cache / "datatrove" / "lid") in message and "never downloads" in message
    assert net.attempts == []  # refused before any connection, not by the network failing
    assert dt_io.download_file is original and "HF_HUB_OFFLINE" not in os.environ  # restored afterwards


def test_step_downloading_in_its_constructor_fails_validation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from data_pipes.datatrove_resolve import check_step

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    monkeypatch.setattr(sys.modules[__name__], "DownloadingFilter", _downloading_filter())
    problems = check_step(f"{__name__}:DownloadingFilter", {})
    assert len(problems) == 1 and problems[0][0] == ("step",)
    assert (
        "example.invalid/words.txt" in problems[0][1] and str(cache / "datatrove" / "test") in problems[0][1]
    )
    assert net.attempts == []


def _lid_pipeline(tmp_path: Path) -> Path:
    """A `files` node and a `LanguageFilter` node (which reads fastText's lid.176 on its first document)."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.jsonl").write_text(
        "".join(json.dumps({"id": f"r{i}", "text": PARAGRAPHS["de_good"]}) + "\n" for i in range(3))
    )
    spec = {
        "name": "lid",
        "workdir": str(tmp_path / "store"),
        "executor": {"n_workers": 1, "processes": False, "inline_s": 3},
        "nodes": {
            "docs": {"uses": "files", "params": {"paths": ["docs"], "id_field": "id"}},
            "lang": {"uses": "datatrove", "inputs": ["docs"],
                     "params": {"step": "datatrove.pipeline.filters.LanguageFilter", "args": {"languages": ["de"]}}},
        },
    }  # fmt: skip
    file = tmp_path / "pipeline.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return file


def _fake_cached_lid(cache: Path, header: bytes = FASTTEXT_MAGIC, marker: bool = True) -> Path:
    """lid.176's place in datatrove's asset cache, filled with a stand-in file (fastText's 4-byte header, then
    bytes that no model loader could read) and its `.completed` marker."""
    folder = cache / "datatrove" / "lid" / "ft176"
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "https:__dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin"
    model.write_bytes(header + b"not a model: validation must not load it")
    if marker:
        (folder / (model.name + ".completed")).touch()
    return model


def test_a_corrupt_or_unfinished_cached_model_fails_validate_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A garbage lid.176 with its `.completed` marker (which would quarantine every row at run time) is not a
    fastText model; one without the marker is said to be there, unfinished, not "not in the cache"."""
    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    file = _lid_pipeline(tmp_path)
    line = file.read_text().splitlines().index("      step: datatrove.pipeline.filters.LanguageFilter") + 1
    lead = (
        f"{file}:{line}: nodes.lang.params.step: step 'datatrove.pipeline.filters.LanguageFilter': LanguageFilter "
        "reads, on its first document, 'https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin', "
    )
    model = _fake_cached_lid(cache, header=b"<htm")  # e.g. an error page saved in its place
    with pytest.raises(SpecError) as info:
        load_pipeline(str(file))
    (problem,) = info.value.problems
    assert problem.render() == (
        f"{lead}whose file in datatrove's asset cache, {model}, is not a fastText model (it does not start with "
        "fastText's file header); delete it and its .completed marker and fetch it again on a machine with network"
    ), problem.render()

    (model.parent / (model.name + ".completed")).unlink()
    model.write_bytes(FASTTEXT_MAGIC + b"half a download")
    with pytest.raises(SpecError) as info:
        load_pipeline(str(file))
    (problem,) = info.value.problems
    assert problem.render().startswith(
        f"{lead}whose file in datatrove's asset cache, {model}, is present but has no .completed marker (an "
        "interrupted download?); delete it and fetch it again on a machine with network"
    ), problem.render()
    assert "not in datatrove's asset cache" not in problem.render()
    # at run time the download guard says the same
    runner = StepRunner("datatrove.pipeline.filters.LanguageFilter", {"languages": ["de"]})
    with pytest.raises(AssetNotCached, match=r"is present but has no \.completed marker"):
        runner.run(_frame({"de_good": PARAGRAPHS["de_good"]}))
    assert net.attempts == [] and model.read_bytes() == FASTTEXT_MAGIC + b"half a download"


def test_lazy_model_missing_from_the_cache_fails_validate_and_run_before_any_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    file = _lid_pipeline(tmp_path)
    line = file.read_text().splitlines().index("      step: datatrove.pipeline.filters.LanguageFilter") + 1
    want = (
        f"{file}:{line}: nodes.lang.params.step: step 'datatrove.pipeline.filters.LanguageFilter': LanguageFilter "
        "reads, on its first document, 'https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin', "
        "which is not in datatrove's asset cache; arcflow never downloads at run time: on a machine with network, "
        f"fetch it into {cache}/datatrove/lid/ft176 as "
        "https:__dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin and create "
        "https:__dl.fbaipublicfiles.com_fasttext_supervised-models_lid.176.bin.completed beside it"
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(str(file))
    (problem,) = info.value.problems
    assert problem.render().startswith(want), problem.render()
    for command in ("validate", "run"):  # `arcflow run` stops there too, before Prefect or any node starts
        result = CliRunner().invoke(app, [command, "-f", str(file)])
        assert result.exit_code == 2, result.output
        assert "nodes.lang.params.step" in result.output and "lid.176.bin.completed" in result.output
    assert not (tmp_path / "store").exists()
    assert net.attempts == [] and not list(cache.rglob("*.bin"))  # nothing fetched


def test_lazy_model_in_the_cache_passes_validate_without_being_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fasttext.FastText

    from data_pipes.datatrove_assets import may_fetch_assets
    from data_pipes.datatrove_resolve import resolve_step

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    _fake_cached_lid(cache)
    loads: list[object] = []
    monkeypatch.setattr(fasttext.FastText, "_FastText", lambda *a, **k: loads.append(a))
    pipeline = load_pipeline(str(_lid_pipeline(tmp_path)))
    assert pipeline.nodes["lang"].kind.name == "datatrove"
    assert loads == [] and net.attempts == []  # the probe stopped at the cache lookup, before the model
    # a step whose code never asks for an asset is not run at validate at all
    gopher = resolve_step("datatrove.pipeline.filters.GopherQualityFilter")()
    assert not may_fetch_assets(gopher)


def test_node_needing_a_model_fails_with_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from data_pipes.datatrove_resolve import AssetNotCached

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    file = _lid_pipeline(tmp_path)
    model = _fake_cached_lid(cache)
    pipeline = load_pipeline(str(file))  # validates with the model in the cache
    for path in model.parent.iterdir():  # then it is gone when the node runs: the run fails, once, naming it
        path.unlink()
    engine = Engine(pipeline)
    try:
        engine.run_node("docs")
        with pytest.raises(AssetNotCached, match="lid.176.bin"):
            engine.run_node("lang")
    finally:
        engine.close()
    assert net.attempts == []
    assert "lang" not in Store(str(tmp_path / "store")).read_refs("lid")  # no output, no quarantined rows


def test_every_lazy_asset_of_a_step_is_checked_and_each_missing_one_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user step needing three assets (lid.176 through datatrove's FT176LID, a local fastText quality model
    through a FastTextClassifierFilter it holds, a local word list through its own property): validate names each
    one that is missing on its own line, not only the first the probe document reaches; with all three there,
    it passes without loading a model or touching the network."""
    import fasttext.FastText

    from data_pipes.datatrove_assets import requested_assets
    from data_pipes.datatrove_resolve import build_step, resolve_step
    from data_pipes.web.quality_fasttext import TrainConfig, train

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    model, words = tmp_path / "models" / "quality.bin", tmp_path / "blocklist.txt"
    words.write_text("casino\npills\n")
    step = f"{USER}:LanguageQualityFilter"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.jsonl").write_text(json.dumps({"id": "r1", "text": PARAGRAPHS["fr_good"]}) + "\n")
    spec = {
        "name": "assets",
        "workdir": str(tmp_path / "store"),
        "nodes": {
            "docs": {"uses": "files", "params": {"paths": ["docs"], "id_field": "id"}},
            "lq": {"uses": "datatrove", "inputs": ["docs"],
                   "params": {"step": step, "args": {"model_url": str(model), "blocklist": str(words)}}},
        },
    }  # fmt: skip
    file = tmp_path / "pipeline.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))
    lines = file.read_text().splitlines()
    step_line = lines.index(f"      step: {step}") + 1
    model_line = lines.index(f"        model_url: {model}") + 1

    # lid.176 not cached and the quality model absent: both named (the probe document stops at lid.176 first);
    # the word list, which exists, is not
    with pytest.raises(SpecError) as info:
        load_pipeline(str(file))
    rendered = [p.render() for p in info.value.problems]
    assert len(rendered) == 2, rendered
    assert rendered[0].startswith(
        f"{file}:{step_line}: nodes.lq.params.step: step '{step}': LanguageQualityFilter reads, on its first "
        "document, 'https://dl.fbaipublicfiles.com/fasttext/supervised-models/lid.176.bin', which is not in "
        "datatrove's asset cache"
    ), rendered[0]
    assert rendered[1].startswith(
        f"{file}:{model_line}: nodes.lq.params.args.model_url: step '{step}': LanguageQualityFilter reads, "
        f"through self.quality.model, the local file '{model}', which does not exist"
    ), rendered[1]
    assert "blocklist" not in " ".join(rendered)

    # the word list gone too: all three named, each once (in the order of their YAML lines)
    words.unlink()
    with pytest.raises(SpecError) as info:
        load_pipeline(str(file))
    named = {p.path: p.message for p in info.value.problems}
    assert len(info.value.problems) == 3 and set(named) == {
        "nodes.lq.params.step",
        "nodes.lq.params.args.model_url",
        "nodes.lq.params.args.blocklist",
    }, named
    assert (
        f"through self.blocked, the local file '{words}', which does not exist"
        in named["nodes.lq.params.args.blocklist"]
    )

    # all three there (lid.176 as a stand-in in the cache, a real tiny fastText model, the word list): validate
    # passes, and no model was loaded to find them
    words.write_text("casino\npills\n")
    model.parent.mkdir()
    train(
        [("good", PARAGRAPHS["de_good"]), ("bad", PARAGRAPHS["de_menu"])] * 10, str(model), TrainConfig(dim=8)
    )
    _fake_cached_lid(cache)
    loads: list[object] = []
    monkeypatch.setattr(fasttext.FastText, "_FastText", lambda *a, **k: loads.append(a))
    assert load_pipeline(str(file)).nodes["lq"].kind.name == "datatrove"
    found = requested_assets(
        build_step(resolve_step(step), spec["nodes"]["lq"]["params"]["args"], step), "filter"
    )
    assert [(a.local, a.via) for a in found] == [
        (False, ""),
        (True, "self.blocked"),
        (True, "self.quality.model"),
    ]
    assert all(a.available for a in found) and loads == [] and net.attempts == []
