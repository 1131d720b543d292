"""quality_train, quality_score, quality_buckets and distill_labels through the engine, on stdlib docstrings.

"Good" documents are standard-library docstrings; "bad" ones are other modules' docstrings with their words
shuffled, plus navigation boilerplate. The math/science student is distilled from the math_density teacher
over docstrings of the math modules (statistics, fractions, decimal, math, cmath) and of others. The
multilingual classifier adds a few German paragraphs, routed by langid. The educational-value student is
distilled from the edu_rubric teacher over those, and evaluated on held-out inputs (other modules, fresh German).
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import random
from pathlib import Path

import polars as pl
import pytest
import yaml

from data_pipes.web.quality_math import score_texts
from flows.engine import Engine
from flows.errors import SpecError
from flows.validate import load_pipeline

MATH_MODULES = ("statistics", "fractions", "decimal", "math", "cmath")
OTHER_MODULES = (
    "json",
    "csv",
    "argparse",
    "logging",
    "pathlib",
    "subprocess",
    "shutil",
    "textwrap",
    "zipfile",
)
EVAL_MODULES = ("collections", "functools", "datetime", "calendar")
SALAD_MODULES = ("email.message", "http.client", "urllib.parse", "tarfile", "configparser", "heapq", "string")
NAV = "Home Products Pricing About Contact Login Register Cart Blog Careers Support Sitemap Terms".split()
GERMAN = [
    "Die Bibliothek liest Dateien ein und schreibt die Ergebnisse in übersichtliche Tabellen.",
    "Jede Zeile wird geprüft, bevor sie dauerhaft in der Datenbank gespeichert wird.",
    "Fehlerhafte Einträge werden getrennt aufbewahrt, damit man sie später untersuchen kann.",
    "Das Programm unterstützt mehrere Formate und erkennt die Kodierung einer Datei selbstständig.",
    "Wer eine neue Version installiert, sollte vorher die Hinweise zur Aktualisierung lesen.",
    "Die Funktion gibt eine Liste zurück, deren Elemente nach ihrem Namen sortiert sind.",
    "Ein Verzeichnis enthält Dateien und weitere Verzeichnisse, die wiederum Dateien enthalten können.",
    "Mit diesem Befehl lässt sich der Dienst starten, anhalten oder neu laden.",
    "Die Einstellungen werden beim Start gelesen und gelten für alle folgenden Aufrufe.",
    "Bei einem Fehler schreibt das Werkzeug eine verständliche Meldung in das Protokoll.",
    "Große Dateien werden in Blöcken verarbeitet, damit der Arbeitsspeicher nicht überläuft.",
    "Die Dokumentation beschreibt jede Option ausführlich und nennt passende Beispiele.",
]


def docstrings(modules: tuple[str, ...], min_len: int = 120) -> list[tuple[str, str]]:
    """(qualified name, docstring) of each module and its public members with a long enough docstring."""
    out = []
    for name in modules:
        module = importlib.import_module(name)
        members = [(name, module)] + [
            (f"{name}.{attr}", obj)
            for attr, obj in sorted(vars(module).items())
            if not attr.startswith("_") and getattr(obj, "__module__", None) == module.__name__
        ]
        for qual, obj in members:
            doc = inspect.getdoc(obj)
            if doc and len(doc) >= min_len:
                out.append((qual, doc))
    return out


def salad(text: str, rnd: random.Random) -> str:
    words = text.split()
    rnd.shuffle(words)
    return " ".join(words)


def boilerplate(rnd: random.Random) -> str:
    return " | ".join(rnd.choice(NAV) for _ in range(rnd.randint(12, 40))) + " © 2024 All rights reserved."


def write_jsonl(path: Path, docs: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in docs), encoding="utf-8")


def german_docs(rnd: random.Random, n: int) -> list[str]:
    return [" ".join(rnd.sample(GERMAN, rnd.randint(4, 7))) for _ in range(n)]


def build_data(root: Path) -> None:
    rnd = random.Random(7)
    good = docstrings(OTHER_MODULES + MATH_MODULES)
    bad = [(f"salad:{q}", salad(t, rnd)) for q, t in docstrings(SALAD_MODULES)]
    bad += [(f"nav:{i}", boilerplate(rnd)) for i in range(60)]
    half = len(good) // 2
    write_jsonl(root / "good" / "a.jsonl", good[:half])
    write_jsonl(root / "good" / "b.jsonl", good[half:])
    write_jsonl(root / "bad.jsonl", bad)
    write_jsonl(root / "stdlib.jsonl", docstrings(MATH_MODULES + OTHER_MODULES, min_len=100))
    de_good = german_docs(rnd, 40)
    de_bad = [salad(t, rnd) for t in german_docs(rnd, 40)]
    write_jsonl(root / "ml_good.jsonl", good[:80] + [(f"de:{i}", t) for i, t in enumerate(de_good)])
    write_jsonl(root / "ml_bad.jsonl", bad[:80] + [(f"debad:{i}", t) for i, t in enumerate(de_bad)])
    ev_rnd = random.Random(11)  # eval inputs: modules and German paragraphs that no training input holds
    ev_en = docstrings(EVAL_MODULES)[:30]
    ev_good = ev_en + [(f"evde:{i}", t) for i, t in enumerate(german_docs(ev_rnd, 20))]
    ev_bad = [(f"evsalad:{q}", salad(t, ev_rnd)) for q, t in ev_en[:20]]
    ev_bad += [(f"evnav:{i}", boilerplate(ev_rnd)) for i in range(10)]
    ev_bad += [(f"evdebad:{i}", salad(t, ev_rnd)) for i, t in enumerate(german_docs(ev_rnd, 20))]
    write_jsonl(root / "ev_good.jsonl", ev_good)
    write_jsonl(root / "ev_bad.jsonl", ev_bad)


SMALL = {"epoch": 25, "lr": 0.5, "dim": 16, "bucket": 20000, "seed": 3, "heldout_fraction": 0.25}
BUCKETS = [
    {"name": "top", "min_percentile": 90, "epochs": 3.2},
    {"name": "high", "min_percentile": 60, "epochs": 1.0},
    {"name": "low", "drop": True},
]


def nodes() -> dict[str, dict]:
    files = {"format": "jsonl", "id_field": "id"}
    clf = {"labels": {"good": "hq", "bad": "lq"}, **SMALL}
    return {
        "good": {"uses": "files", "params": {"paths": ["good/*.jsonl"], **files}},
        "bad": {"uses": "files", "params": {"paths": ["bad.jsonl"], **files}},
        "clf": {"uses": "quality_train", "inputs": ["good", "bad"], "params": clf},
        "clf_twin": {"uses": "quality_train", "inputs": ["good", "bad"], "params": clf},
        "scored": {"uses": "quality_score", "inputs": ["good", "bad", "clf"], "params": {"batch_size": 50}},
        "bucketed": {
            "uses": "quality_buckets",
            "inputs": ["scored"],
            "params": {"buckets": BUCKETS, "token_estimate": "words"},
        },
        "sketched": {
            "uses": "quality_buckets",
            "inputs": ["scored"],
            "params": {"buckets": BUCKETS, "percentiles": "sketch"},
        },
        "thresholds": {
            "uses": "quality_buckets",
            "inputs": ["scored"],
            "params": {
                "method": "threshold",
                "buckets": [{"name": "keep", "min_score": 0.5, "epochs": 2}, {"name": "rest", "drop": True}],
            },
        },
        "stdlib": {"uses": "files", "params": {"paths": ["stdlib.jsonl"], **files}},
        "distill": {
            "uses": "distill_labels",
            "inputs": ["stdlib"],
            "params": {"positive_label": "math", "negative_label": "other"},
        },
        "student": {
            "uses": "quality_train",
            "inputs": ["distill"],
            "params": {"label_column": "label", "positive_label": "math", **SMALL, "heldout_fraction": 0.2},
        },
        "math_scored": {
            "uses": "quality_score",
            "inputs": ["stdlib", "student"],
            "params": {"score_column": "math_score"},
        },
        "custom": {
            "uses": "quality_score",
            "inputs": ["stdlib"],
            "params": {
                "scorer": "data_pipes.web.quality_math:score_texts",
                "scorer_options": {"scale": 4.0},
                "score_column": "density",
            },
        },
        "ml_good": {"uses": "files", "params": {"paths": ["ml_good.jsonl"], **files}},
        "ml_bad": {"uses": "files", "params": {"paths": ["ml_bad.jsonl"], **files}},
        "ml_good_lang": {"uses": "langid", "inputs": ["ml_good"], "params": {"mode": "route"}},
        "ml_bad_lang": {"uses": "langid", "inputs": ["ml_bad"], "params": {"mode": "route"}},
        "ml_clf": {
            "uses": "quality_train",
            "inputs": ["ml_good_lang", "ml_bad_lang"],
            "params": {
                "labels": {"ml_good_lang": "hq", "ml_bad_lang": "lq"},
                "per_language": True,
                "min_docs_per_language": 15,
                **SMALL,
            },
        },
        "ml_scored": {
            "uses": "quality_score",
            "inputs": ["ml_good_lang", "ml_bad_lang", "ml_clf"],
            "params": {"per_language": True},
        },
        "ml_buckets": {
            "uses": "quality_buckets",
            "inputs": ["ml_scored"],
            "params": {"buckets": BUCKETS, "group_by": "lang"},
        },
        # educational value: rubric teacher -> labels -> per-language student, judged on eval inputs
        "ev_good": {"uses": "files", "params": {"paths": ["ev_good.jsonl"], **files}},
        "ev_bad": {"uses": "files", "params": {"paths": ["ev_bad.jsonl"], **files}},
        "ev_good_lang": {"uses": "langid", "inputs": ["ev_good"], "params": {"mode": "route"}},
        "ev_bad_lang": {"uses": "langid", "inputs": ["ev_bad"], "params": {"mode": "route"}},
        "edu_labels": {
            "uses": "distill_labels",
            "inputs": ["ml_good_lang", "ml_bad_lang"],
            "params": {"teacher": "edu_rubric", "positive_fraction": 0.4, "negative_fraction": 0.4},
        },
        "edu_clf": {
            "uses": "quality_train",
            "inputs": ["edu_labels", "ev_good_lang", "ev_bad_lang"],
            "params": {
                "label_column": "label",
                "labels": {"ev_good_lang": "hq", "ev_bad_lang": "lq"},
                "eval_inputs": ["ev_good_lang", "ev_bad_lang"],
                "per_language": True,
                "min_docs_per_language": 10,
                **SMALL,
            },
        },
        "edu_scored": {
            "uses": "quality_score",
            "inputs": ["ml_good_lang", "ml_bad_lang", "edu_clf"],
            "params": {"per_language": True, "score_column": "edu_score"},
        },
        "edu_buckets": {
            "uses": "quality_buckets",
            "inputs": ["edu_scored"],
            "params": {"buckets": BUCKETS, "group_by": "lang", "score_column": "edu_score"},
        },
    }


def write_pipeline(root: Path, node_specs: dict[str, dict], workdir: str = ".arcflow") -> Path:
    spec = {
        "name": "quality",
        "workdir": str(root / workdir),
        "nodes": node_specs,
        "executor": {"n_workers": 1, "processes": False},
    }
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_all(path: Path) -> dict[str, dict]:
    pipeline = load_pipeline(str(path))
    engine = Engine(pipeline)
    try:
        return {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], Path]:
    root = tmp_path_factory.mktemp("quality")
    build_data(root)
    manifests = run_all(write_pipeline(root, nodes()))
    return manifests, root / ".arcflow" / "outputs"


def out_dir(run, node: str) -> Path:
    return run[1] / run[0][node]["fingerprint"]


def rows(run, node: str, part: str = "") -> pl.DataFrame:
    files = sorted((out_dir(run, node) / part).glob("part-*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal") if files else pl.DataFrame()


def test_accounting_balances(run) -> None:
    for manifest in run[0].values():
        c = manifest["counts"]
        assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"], manifest["node"]


def test_training_output_and_determinism(run) -> None:
    manifest = run[0]["clf"]
    assert manifest["output_type"] == "model" and manifest["counts"]["kept"] == 1
    table = rows(run, "clf").row(0, named=True)
    assert (
        table["model"] == "fallback" and table["labels"] == ["hq", "lq"] and table["positive_label"] == "hq"
    )
    assert table["heldout_docs"] > 20 and table["accuracy"] >= 0.85 and table["precision"] >= 0.8
    model = out_dir(run, "clf") / table["model_path"]
    twin = out_dir(run, "clf_twin") / rows(run, "clf_twin")["model_path"][0]
    assert model.read_bytes() == twin.read_bytes()  # thread=1 + fixed seed: same bytes
    assert rows(run, "clf_twin")["model_sha256"][0] == table["model_sha256"]
    assert not (out_dir(run, "clf") / "_samples").exists()
    reports = out_dir(run, "clf") / "reports"
    assert (reports / "held-out-metrics.json").exists() and (reports / "held-out-metrics.md").exists()


def test_scores_separate_good_from_bad(run) -> None:
    scored = rows(run, "scored")
    assert run[0]["scored"]["counts"]["dropped"] == 0
    assert scored["quality_score"].is_between(0, 1).all()
    good = scored.filter(pl.col("source") == "good")["quality_score"].mean()
    bad = scored.filter(pl.col("source") == "bad")["quality_score"].mean()
    assert good > 0.7 and bad < 0.3
    reports = out_dir(run, "scored") / "reports"
    assert (reports / "score-distribution.png").read_bytes()[:4] == b"\x89PNG"


def test_percentile_buckets_split_exactly(run) -> None:
    n = run[0]["scored"]["counts"]["kept"]
    kept, dropped = rows(run, "bucketed"), rows(run, "bucketed", "excluded")
    counts = dict(kept.group_by("bucket").len().iter_rows())
    assert counts == {"top": n - math.ceil(0.9 * n), "high": math.ceil(0.9 * n) - math.ceil(0.6 * n)}
    assert run[0]["bucketed"]["drop_reasons"] == {"quality_bucket_low": math.ceil(0.6 * n)}
    assert set(dropped["bucket"]) == {"low"}
    epochs = dict(kept.select("bucket", "epochs").unique().iter_rows())
    assert epochs == {"top": 3.2, "high": 1.0}
    top = kept.filter(pl.col("bucket") == "top")["quality_score"]
    assert top.min() >= kept.filter(pl.col("bucket") == "high")["quality_score"].max()
    assert kept.filter(pl.col("bucket") == "high")["quality_score"].min() >= dropped["quality_score"].max()
    folder = out_dir(run, "bucketed") / "reports"
    mixture = json.loads((folder / "mixture.json").read_text())
    assert [r["bucket"] for r in mixture] == ["top", "high", "low"]
    assert sum(r["documents"] for r in mixture) == n and mixture[2]["effective_tokens"] == 0
    assert abs(sum(r["mixture_share"] for r in mixture) - 1) < 1e-3
    assert "whitespace-separated words" in (folder / "mixture.md").read_text()
    assert (folder / "score-histogram.png").exists()
    # exact cut-offs: each phase's wall goes to the manifest's timings (never the reports), with the bracket passes
    phases = run[0]["bucketed"]["timings"]["phases"]
    assert set(phases) == {"scores_s", "digests_s", "cutoffs_s", "cutoff_passes", "write_s", "report_s"}
    assert phases["cutoff_passes"] >= 1 and min(phases.values()) >= 0


def test_sketch_percentiles_are_close_and_say_so(run) -> None:
    """`percentiles: sketch` cuts at the merged digest's quantiles: every document is bucketed, a higher bucket
    never holds a lower score, and the shares are within the stated rank error plus tie blocks of exact."""
    from data_pipes.web.quantiles import SKETCH_RANK_ERROR

    n = run[0]["scored"]["counts"]["kept"]
    kept, dropped = rows(run, "sketched"), rows(run, "sketched", "excluded")
    assert kept.height + dropped.height == n
    scores = rows(run, "scored")["quality_score"].sort()
    ties = int(scores.value_counts()["count"].max())
    top = kept.filter(pl.col("bucket") == "top")
    assert abs(top.height - (n - math.ceil(0.9 * n))) <= SKETCH_RANK_ERROR * n + ties
    assert top["quality_score"].min() > dropped["quality_score"].max()
    note = (out_dir(run, "sketched") / "reports" / "mixture.md").read_text()
    assert "t-digest" in note and "rank error" in note
    exact_note = (out_dir(run, "bucketed") / "reports" / "mixture.md").read_text()
    assert "cut-offs are exact" in exact_note


def test_threshold_buckets(run) -> None:
    kept = rows(run, "thresholds")
    assert (kept["quality_score"] >= 0.5).all() and set(kept["epochs"]) == {2.0}
    assert set(run[0]["thresholds"]["drop_reasons"]) == {"quality_bucket_rest"}
    assert "UTF-8 bytes / 4" in (out_dir(run, "thresholds") / "reports" / "mixture.md").read_text()


def test_distilled_math_student(run) -> None:
    n = run[0]["stdlib"]["counts"]["kept"]
    labelled = rows(run, "distill")
    counts = dict(labelled.group_by("label").len().iter_rows())
    assert counts == {"math": n - math.ceil(0.8 * n), "other": math.ceil(0.5 * n)}
    assert run[0]["distill"]["drop_reasons"] == {"distill_labels_unlabelled": n - sum(counts.values())}
    teacher = labelled.filter(pl.col("label") == "math")["teacher_score"]
    assert teacher.min() >= labelled.filter(pl.col("label") == "other")["teacher_score"].max()
    math_share = labelled.filter(pl.col("label") == "math")["id"].str.contains("|".join(MATH_MODULES)).mean()
    assert math_share >= 0.8  # the teacher finds the math modules
    student = rows(run, "student").row(0, named=True)
    assert student["positive_label"] == "math" and student["heldout_docs"] > 0
    scored = rows(run, "math_scored")
    is_math = scored["id"].str.contains("|".join(f"^stdlib:{m}" for m in MATH_MODULES))
    assert scored.filter(is_math)["math_score"].mean() > scored.filter(~is_math)["math_score"].mean() + 0.2


def test_dotted_path_scorer(run) -> None:
    scored = rows(run, "custom")
    assert scored["density"].to_list() == score_texts(scored["text"].to_list(), scale=4.0)


def test_per_language_models(run) -> None:
    models = rows(run, "ml_clf")
    assert sorted(models["model"].to_list()) == ["de", "en", "fallback"]
    for path in models["model_path"]:
        assert (out_dir(run, "ml_clf") / path).exists()
    scored = pl.concat([rows(run, "ml_scored")])
    german = scored.filter(pl.col("lang") == "de")
    good = german.filter(pl.col("source") == "ml_good")["quality_score"].mean()
    bad = german.filter(pl.col("source") == "ml_bad")["quality_score"].mean()
    assert good > bad + 0.3


def test_buckets_per_language(run) -> None:
    """`group_by: lang`: every language gets its own exact cut-offs, so each holds its own top 10%."""
    scored = rows(run, "ml_scored")
    kept, dropped = rows(run, "ml_buckets"), rows(run, "ml_buckets", "excluded")
    both = pl.concat([kept, dropped.drop("reason")], how="diagonal")
    assert both.height == scored.height
    langs = scored["lang"].unique().to_list()
    assert len(langs) > 1
    for lang in langs:
        n = scored.filter(pl.col("lang") == lang).height
        got = dict(both.filter(pl.col("lang") == lang).group_by("bucket").len().iter_rows())
        assert got.get("top", 0) == n - math.ceil(0.9 * n), lang
        assert got.get("high", 0) == math.ceil(0.9 * n) - math.ceil(0.6 * n), lang
    table = json.loads((out_dir(run, "ml_buckets") / "reports" / "buckets-per-lang.json").read_text())
    assert sorted(r["lang"] for r in table) == sorted(langs)
    assert sum(r["documents"] for r in table) == scored.height


def test_bucket_spec_errors(tmp_path: Path) -> None:
    bad = {
        "docs": {"uses": "files", "params": {"paths": ["x.jsonl"]}},
        "b": {
            "uses": "quality_buckets",
            "inputs": ["docs"],
            "params": {
                "buckets": [
                    {"name": "top", "min_percentile": 50, "epochs": 2},
                    {"name": "top", "min_percentile": 70, "epochs": -1},
                    {"name": "low", "min_percentile": 10, "drop": True, "epochs": 1},
                ]
            },
        },
    }
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(write_pipeline(tmp_path, bad)))
    text = str(caught.value)
    assert "used twice" in text and "must be >= 0" in text and "must be below" in text
    assert "its epochs must be 0" in text and "cover the rest" in text
    assert "nodes.b.params.buckets[1].min_percentile" in text


def test_edu_rubric_student_with_eval_inputs(run) -> None:
    """edu_rubric labels -> per-language student; eval inputs are never trained on and are reported per
    language; the default split is named as in-distribution."""
    labelled = rows(run, "edu_labels")
    hq = labelled.filter(pl.col("label") == "hq")
    assert hq["source"].eq("ml_good").mean() >= 0.8  # the rubric puts real prose on top
    models = rows(run, "edu_clf")
    assert "fallback" in models["model"].to_list() and "de" in models["model"].to_list()
    n_eval = run[0]["ev_good"]["counts"]["kept"] + run[0]["ev_bad"]["counts"]["kept"]
    fallback = models.filter(pl.col("model") == "fallback").row(0, named=True)
    assert fallback["train_docs"] + fallback["heldout_docs"] == run[0]["edu_labels"]["counts"]["kept"]
    assert models["eval_docs"].sum() == n_eval
    folder = out_dir(run, "edu_clf") / "reports"
    table = json.loads((folder / "evaluation-on-eval-inputs.json").read_text())
    by_lang = {r["lang"]: r for r in table}
    assert {"de", "en", "all"} <= set(by_lang) and by_lang["all"]["docs"] == n_eval
    assert by_lang["de"]["model"] == "de" and 0 <= by_lang["de"]["auc"] <= 1
    assert by_lang["all"]["auc"] > 0.7 and by_lang["all"]["accuracy"] > 0.6
    assert models["eval_auc_all"][0] == by_lang["all"]["auc"]
    assert "in-distribution" in (folder / "held-out-metrics.md").read_text()
    assert (
        "same text as a sampled training document: 0."
        in (folder / "evaluation-on-eval-inputs.md").read_text()
    )
    assert "in-distribution" in (out_dir(run, "clf") / "reports" / "held-out-metrics.md").read_text()
    scored, kept = rows(run, "edu_scored"), rows(run, "edu_buckets")
    assert kept.height + rows(run, "edu_buckets", "excluded").height == scored.height


def test_roc_auc_ties_and_one_class() -> None:
    from data_pipes.web.quality_training import roc_auc

    assert roc_auc(["hq", "lq", "hq", "lq"], [0.9, 0.1, 0.8, 0.2], "hq") == 1.0
    assert roc_auc(["hq", "lq"], [0.5, 0.5], "hq") == 0.5
    assert roc_auc(["hq", "lq", "lq"], [0.2, 0.9, 0.1], "hq") == 0.5
    assert roc_auc(["hq", "hq"], [0.2, 0.9], "hq") is None


def test_edu_rubric_any_script() -> None:
    from data_pipes.web.edu_rubric import score_texts

    prose = "这是一个测试。我们正在检查这个句子是否正确。中文文本没有空格，但是句子有结尾。" * 6
    good, nav = score_texts([prose, "首页 | 产品 | 关于 | 联系 | 登录 | 注册 | 首页 | 产品 | 关于"])
    assert good > 3.5 and nav < 2 and 0 <= nav <= good <= 5


def test_eval_inputs_must_be_inputs(tmp_path: Path) -> None:
    bad = {
        "docs": {"uses": "files", "params": {"paths": ["x.jsonl"]}},
        "clf": {
            "uses": "quality_train",
            "inputs": ["docs"],
            "params": {"labels": {"docs": "hq"}, "eval_inputs": ["docs", "other"]},
        },
    }
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(write_pipeline(tmp_path, bad)))
    text = str(caught.value)
    assert "'other' is not an input" in text and "leave at least one to train on" in text
