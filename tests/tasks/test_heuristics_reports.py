"""`heuristic_filters`' reports through the engine on a few real documents: each drop reason with datatrove's name
for the same check ("drop reasons")."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from flows.engine import Engine
from flows.store import Store
from flows.validate import load_pipeline

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
