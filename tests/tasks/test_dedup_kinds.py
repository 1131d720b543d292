"""The dedup kinds through the engine on tiny real texts: stdlib module docstrings, exact and edited copies.

files -> dedup_exact, dedup_minhash -> dedup_report; both dedup kinds are global over several input shards.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from data_pipes.dedup.normalise import normalise_text
from data_pipes.dedup.shingles import hash_shingles
from flows.engine import Engine
from flows.validate import load_pipeline

MODULES = ["argparse", "json", "subprocess", "csv", "heapq", "difflib", "ftplib", "statistics"]


def _doc(module: str) -> str:
    return importlib.import_module(module).__doc__ or ""


def write_texts(folder: Path) -> dict[str, str]:
    """Originals (a_*), exact copies after normalisation (b_exact_*), edited near copies (b_edit_*).

    Returns {copy file: original file}; files are read in name order, so originals come first.
    """
    folder.mkdir()
    for m in MODULES:
        (folder / f"a_{m}.txt").write_text(_doc(m))
    copies = {
        "b_exact_json.txt": _doc("json").upper().replace(" ", "  "),
        "b_exact_csv.txt": _doc("csv"),
        "b_edit_argparse.txt": _doc("argparse").replace("the", "a", 3),
        "b_edit_statistics.txt": _doc("statistics") + "\nThis copy adds one sentence at the end of the page.",
    }
    for name, text in copies.items():
        (folder / name).write_text(text)
    (folder / "c_short.txt").write_text("Too short to shingle.")
    return {name: f"a_{name.split('_', 2)[2]}" for name in copies}


def run_pipeline(root: Path, workers: int, extra: dict | None = None) -> dict[str, dict]:
    nodes = {
        "docs": {"uses": "files", "params": {"paths": ["texts"], "shard_mb": 0.004}},
        "exact": {"uses": "dedup_exact", "inputs": ["docs"], "params": {"partitions": 3}},
        "minhash": {"uses": "dedup_minhash", "inputs": ["docs"], "params": extra or {}},
        "report": {"uses": "dedup_report", "inputs": ["exact", "minhash"]},
    }
    spec = {
        "name": "dedup",
        "workdir": str(root / f".arcflow-{workers}"),
        "nodes": nodes,
        "executor": {"n_workers": workers, "processes": False},
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))
    engine = Engine(pipeline)
    try:
        return {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("dedup")
    return root, write_texts(root / "texts")


@pytest.fixture(scope="module")
def run(setup: tuple[Path, dict[str, str]]) -> dict[str, dict]:
    return run_pipeline(setup[0], workers=1)


def out_dir(root: Path, workers: int, manifest: dict) -> Path:
    return root / f".arcflow-{workers}" / "outputs" / manifest["fingerprint"]


def rows(folder: Path, part: str = "") -> pl.DataFrame:
    files = sorted((folder / part).glob("part-*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal") if files else pl.DataFrame()


def ids_by_file(root: Path, run: dict[str, dict]) -> dict[str, str]:
    docs = rows(out_dir(root, 1, run["docs"]))
    return {Path(u).name: i for u, i in zip(docs["url"], docs["id"], strict=True)}


def test_accounting_and_global_over_shards(run: dict[str, dict]) -> None:
    assert run["docs"]["shards"] >= 4  # several input shards: dedup must be global, not per shard
    for node in ("exact", "minhash", "report"):
        c = run[node]["counts"]
        assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"], node
    assert run["exact"]["counts"]["in"] == run["docs"]["counts"]["kept"]
    assert run["exact"]["shards"] == run["minhash"]["shards"] == run["docs"]["shards"]


def test_exact_drops_normalised_copies(setup: tuple[Path, dict[str, str]], run: dict[str, dict]) -> None:
    root, copies = setup
    ids = ids_by_file(root, run)
    assert run["exact"]["drop_reasons"] == {"exact_duplicate": 2}
    dropped = rows(out_dir(root, 1, run["exact"]), "excluded")
    expected = {ids[c]: ids[o] for c, o in copies.items() if "_exact_" in c}
    assert dict(zip(dropped["id"], dropped["duplicate_of"], strict=True)) == expected
    assert set(dropped["reason"]) == {"exact_duplicate"}
    kept = rows(out_dir(root, 1, run["exact"]))
    assert set(kept.columns) == set(rows(out_dir(root, 1, run["docs"])).columns)  # kept rows unchanged
    assert not (root / ".arcflow-1" / "outputs" / run["exact"]["fingerprint"] / "_work").exists()


def test_minhash_drops_exact_and_edited_copies(
    setup: tuple[Path, dict[str, str]], run: dict[str, dict]
) -> None:
    root, copies = setup
    ids = ids_by_file(root, run)
    assert run["minhash"]["drop_reasons"] == {"minhash_duplicate": 4}
    dropped = rows(out_dir(root, 1, run["minhash"]), "excluded")
    assert dict(zip(dropped["id"], dropped["duplicate_of"], strict=True)) == {
        ids[c]: ids[o] for c, o in copies.items()
    }
    assert dropped["cluster_id"].n_unique() == 4 and dropped["cluster_id"].min() >= 0
    assert ids["c_short.txt"] in set(rows(out_dir(root, 1, run["minhash"]))["id"])
    titles = [r["title"] for r in run["minhash"]["reports"]]
    assert titles == ["dedup_minhash summary"]
    hist = json.loads((out_dir(root, 1, run["minhash"]) / run["minhash"]["reports"][0]["table"]).read_text())
    assert hist == [{"cluster_size": "2", "clusters": 4, "documents": 8, "removed": 4}]


def test_report_overlap(setup: tuple[Path, dict[str, str]], run: dict[str, dict]) -> None:
    root, _ = setup
    m = run["report"]
    assert m["output_type"] == "report"
    counts = {k: m["counts"][k] for k in ("in", "kept", "dropped", "quarantined")}
    assert counts == {"in": 6, "kept": 6, "dropped": 0, "quarantined": 0}  # 2 exact + 4 minhash rows
    folder = out_dir(root, 1, m)
    removed = rows(folder)
    assert removed.columns == ["id", "method", "reason"] and removed.height == 6
    reports = {r["title"]: r for r in m["reports"]}
    venn = json.loads((folder / reports["Overlap between methods"]["table"]).read_text())
    assert {r["removed_by"]: r["documents"] for r in venn} == {
        "exact and minhash": 2,
        "only exact": 0,
        "only minhash": 2,
    }
    assert (folder / reports["Overlap between methods"]["png"]).read_bytes()[:4] == b"\x89PNG"
    summary = (folder / reports["Dedup summary"]["markdown"]).read_text()
    assert "| only minhash |  | x | 2 |" in summary and "4 distinct documents removed" in summary.replace(
        "**", ""
    )


def test_same_output_for_one_and_two_workers(
    setup: tuple[Path, dict[str, str]], run: dict[str, dict]
) -> None:
    root, _ = setup
    two = run_pipeline(root, workers=2)
    for node in ("exact", "minhash", "report"):
        assert two[node]["content_hash"] == run[node]["content_hash"], node
        assert rows(out_dir(root, 2, two[node]), "excluded").equals(
            rows(out_dir(root, 1, run[node]), "excluded")
        )


def test_minhash_resumes_from_phase_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: tuple[Path, dict[str, str]], run: dict[str, dict]
) -> None:
    """A crash in the output step leaves the phase files; the rerun reuses them and matches a clean run."""
    import tasks._dedup
    import tasks.dedup_minhash

    write_texts(tmp_path / "texts")
    real = tasks._dedup.DedupKind.process
    last = run["docs"]["shards"] - 1

    def crash(self, frame, params, seed, task):  # noqa: ANN001, ANN202
        if self.name == "dedup_minhash" and task.index == last:
            raise RuntimeError("killed")
        return real(self, frame, params, seed, task)

    monkeypatch.setattr(tasks._dedup.DedupKind, "process", crash)
    with pytest.raises(RuntimeError, match="killed"):
        run_pipeline(tmp_path, workers=1)
    monkeypatch.setattr(tasks._dedup.DedupKind, "process", real)
    calls = []
    monkeypatch.setattr(tasks.dedup_minhash, "signature_phase", lambda *a, **k: calls.append(a))
    resumed = run_pipeline(tmp_path, workers=1)
    assert calls == []  # the assignments were there: no phase ran again
    cols = ["id", "duplicate_of", "cluster_id"]
    again = rows(out_dir(tmp_path, 1, resumed["minhash"]), "excluded").select(cols)
    assert again.equals(rows(out_dir(setup[0], 1, run["minhash"]), "excluded").select(cols))
    assert resumed["minhash"]["counts"] == run["minhash"]["counts"]
    assert resumed["minhash"]["timings"]["shards_reused_after_crash"] >= 1


def test_shingles_ignore_whitespace_runs() -> None:
    """The recall fix: a shingle hashes its words joined by one space, whatever separated them."""
    a = normalise_text("alpha beta, gamma delta epsilon zeta", collapse=False)
    b = normalise_text("alpha  beta -- gamma\n\ndelta epsilon\u00a0 zeta", collapse=False)
    hashes, doc = hash_shingles([a, "", b], 5)
    assert doc.tolist() == [0, 0, 2, 2] and np.array_equal(hashes[:2], hashes[2:])
