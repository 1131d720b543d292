"""The dedup kinds through the engine on tiny real texts: stdlib module docstrings, exact and edited copies.

files -> dedup_exact, dedup_minhash -> dedup_report; both dedup kinds are global over several input shards. Then
rehydration: files -> dedup_exact -> dedup_minhash -> quality_score -> quality_buckets with `rehydrate`, on a set
whose clusters are known (cluster sizes summed across the two dedup nodes, FineWeb-2's weights, repeats).
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
from tasks import _groups

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
    docs = rows(out_dir(root, 1, run["docs"]))
    assert set(kept.columns) == set(docs.columns) | {"dup_cluster_size"}  # kept rows unchanged, plus the size
    assert kept.drop("dup_cluster_size").equals(docs.filter(~pl.col("id").is_in(list(expected))))
    sizes = dict(zip(kept["id"], kept["dup_cluster_size"], strict=True))
    assert {i: n for i, n in sizes.items() if n != 1} == {ids["a_json.txt"]: 2, ids["a_csv.txt"]: 2}
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
    assert titles == ["dedup_minhash summary", "dedup_minhash cluster sizes"]
    hist = json.loads((out_dir(root, 1, run["minhash"]) / run["minhash"]["reports"][0]["table"]).read_text())
    assert hist == [{"cluster_size": "2", "clusters": 4, "documents": 8, "removed": 4}]
    kept = rows(out_dir(root, 1, run["minhash"]))
    originals = {ids[o] for o in copies.values()}
    assert dict(zip(kept["id"], kept["dup_cluster_size"], strict=True)) == {
        i: 2 if i in originals else 1 for i in kept["id"]
    }
    sizes = json.loads((out_dir(root, 1, run["minhash"]) / run["minhash"]["reports"][1]["table"]).read_text())
    assert sizes == [
        {"dup_cluster_size": "1", "kept": kept.height - 4, "represented": kept.height - 4},
        {"dup_cluster_size": "2", "kept": 4, "represented": 8},
    ]


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


def test_phase_timings_in_the_manifest_only(setup: tuple[Path, dict[str, str]], run: dict[str, dict]) -> None:
    """Each global kind's phases are timed into the manifest's timings (where the wall goes), never its outputs:
    the one- and two-worker runs above have the same content hashes."""
    shared = {"root_ids_s", "assemble_s", "write_s", "report_s"}
    expected = {
        "exact": {"hash_s", "partitions_s"} | shared,
        "minhash": {"signatures_s", "buckets_s", "merge_s"} | shared,
    }
    for node, names in expected.items():
        phases = run[node]["timings"]["phases"]
        assert set(phases) == names, node
        assert all(v >= 0 for v in phases.values()), node
        assert sum(phases.values()) <= run[node]["timings"]["wall_s"] + 0.01, node
        written = [p.read_text() for p in out_dir(setup[0], 1, run[node]).glob("reports/*")]
        assert not any("signatures_s" in t or "hash_s" in t for t in written), node


def _buckets_run(root: Path, tag: str) -> dict[str, dict]:
    """docs -> quality_score -> quality_buckets (exact percentiles) in its own workdir."""
    spec = {
        "name": "buckets",
        "workdir": str(root / f".arcflow-{tag}"),
        "executor": {"n_workers": 1, "processes": False},
        "nodes": {
            "docs": {"uses": "files", "params": {"paths": ["texts"], "shard_mb": 0.004}},
            "scored": {"uses": "quality_score", "inputs": ["docs"], "params": {"scorer": "math_density"}},
            "buckets": {
                "uses": "quality_buckets",
                "inputs": ["scored"],
                "params": {
                    "buckets": [
                        {"name": "top", "min_percentile": 70, "epochs": 2.0},
                        {"name": "mid", "min_percentile": 30},
                        {"name": "low", "drop": True},
                    ]
                },
            },
        },
    }
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(root / "pipeline.yaml"))
    engine = Engine(pipeline)
    try:
        return {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()


def test_grouped_phases_give_the_same_bytes(
    setup: tuple[Path, dict[str, str]], run: dict[str, dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consecutive shards grouped per task (``tasks._groups``; here about 2 tasks a phase, several shards each)
    give the same outputs as one task per shard (the default at this size): the dedup kinds' root-id lookups
    (one ids file per group), the buckets' score and cut-off passes."""
    root, _ = setup
    shards = run["docs"]["shards"]
    assert _groups.group_size(shards) == 1
    single = _buckets_run(root, "buckets-single")
    monkeypatch.setattr(_groups, "target_tasks", lambda: 2)
    assert _groups.group_size(shards) >= 2
    grouped = run_pipeline(root, workers=3)
    for node in ("exact", "minhash", "report"):
        assert grouped[node]["content_hash"] == run[node]["content_hash"], node
    assert grouped["minhash"]["counts"]["dropped"] > 0 and grouped["exact"]["counts"]["dropped"] > 0
    buckets = _buckets_run(root, "buckets-grouped")
    assert buckets["buckets"]["content_hash"] == single["buckets"]["content_hash"]
    assert buckets["buckets"]["counts"] == single["buckets"]["counts"]
    assert buckets["buckets"]["counts"]["dropped"] > 0


def test_groups_keep_order() -> None:
    tasks = 16
    assert _groups.groups(list(range(5)), tasks) == [[0], [1], [2], [3], [4]]
    n = 2 * tasks + 1
    flat = _groups.groups(list(range(n)), tasks)
    assert [x for g in flat for x in g] == list(range(n)) and len(flat[0]) == 2
    big = _groups.groups(list(range(tasks * _groups.MAX_GROUP * 3)), tasks)
    assert max(len(g) for g in big) == _groups.MAX_GROUP


def test_group_count_follows_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """About ``TASKS_PER_SLOT`` tasks per worker thread, bounded; the slots come from the running client."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=3, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster),
    ):
        assert _groups.cluster_slots() == 3
        assert _groups.target_tasks() == max(_groups.MIN_TASKS, 3 * _groups.TASKS_PER_SLOT)
    monkeypatch.setattr(_groups, "cluster_slots", lambda: 1000)
    assert _groups.target_tasks() == _groups.MAX_TASKS
    assert len(_groups.groups(list(range(1200)))) == len(_groups.groups(list(range(1200)), _groups.MAX_TASKS))


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


# ---- rehydration: cluster sizes through exact then MinHash dedup, and the up-sampling they drive ---------------


def write_cluster_texts(folder: Path) -> dict[str, int]:
    """Known clusters, and the number of input documents each kept one stands for after exact + MinHash dedup.

    json: the original, an exact copy, a near copy and an exact copy of the near copy (exact dedup leaves the
    original and the near copy, each of size 2; MinHash joins them: 4). csv: the original and an exact copy (2).
    argparse: the original and a near copy (2). The other modules and a short text are singletons (1).
    """
    folder.mkdir()
    for m in MODULES:
        (folder / f"a_{m}.txt").write_text(_doc(m))
    edited_json = _doc("json").replace("the", "a", 3)
    copies = {
        "b_exact_json.txt": _doc("json").upper().replace(" ", "  "),
        "b_edit_json.txt": edited_json,
        "b_exact_edit_json.txt": edited_json.lower(),
        "b_exact_csv.txt": _doc("csv") + "  ",
        "b_edit_argparse.txt": _doc("argparse").replace("the", "a", 3),
    }
    for name, text in copies.items():
        (folder / name).write_text(text)
    (folder / "c_short.txt").write_text("Too short to shingle.")
    sizes = {f"a_{m}.txt": 1 for m in MODULES} | {"c_short.txt": 1}
    return sizes | {"a_json.txt": 4, "a_csv.txt": 2, "a_argparse.txt": 2}


def test_rehydration_after_exact_and_minhash(tmp_path: Path) -> None:
    from data_pipes.dedup.rehydrate import FINEWEB2_WEIGHTS, weights_for
    from data_pipes.tokens.mix import repeat_counts

    expected = write_cluster_texts(tmp_path / "texts")
    nodes = {
        "docs": {"uses": "files", "params": {"paths": ["texts"], "shard_mb": 0.004}},
        "exact": {"uses": "dedup_exact", "inputs": ["docs"], "params": {"partitions": 2}},
        "minhash": {"uses": "dedup_minhash", "inputs": ["exact"]},
        "scored": {"uses": "quality_score", "inputs": ["minhash"], "params": {"scorer": "math_density"}},
        "buckets": {
            "uses": "quality_buckets",
            "inputs": ["scored"],
            "params": {
                "method": "threshold",
                "buckets": [
                    {"name": "top", "min_score": 1e9, "epochs": 2.0},
                    {"name": "rest", "epochs": 1.0},
                ],
                "rehydrate": {},
            },
        },
    }
    spec = {"name": "rehydrate", "workdir": str(tmp_path / ".arcflow"), "nodes": nodes,
            "executor": {"n_workers": 1, "processes": False}}  # fmt: skip
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    pipeline = load_pipeline(str(tmp_path / "pipeline.yaml"))
    engine = Engine(pipeline)
    try:
        run = {node: engine.run_node(node)[1] for node in pipeline.order}
    finally:
        engine.close()
    folder = tmp_path / ".arcflow" / "outputs"
    assert run["docs"]["shards"] >= 4 and run["exact"]["drop_reasons"] == {"exact_duplicate": 3}
    assert run["minhash"]["drop_reasons"] == {"minhash_duplicate": 2}

    # the size on each kept document: summed over both dedup nodes
    kept = rows(folder / run["minhash"]["fingerprint"])
    by_file = {Path(u).name: n for u, n in zip(kept["url"], kept["dup_cluster_size"], strict=True)}
    assert by_file == expected
    # every input document is accounted for by exactly one kept document
    assert kept["dup_cluster_size"].sum() == run["docs"]["counts"]["kept"]
    reports = {r["title"]: r for r in run["minhash"]["reports"]}
    hist = json.loads(
        (folder / run["minhash"]["fingerprint"] / reports["dedup_minhash cluster sizes"]["table"]).read_text()
    )
    assert hist == [
        {"dup_cluster_size": "1", "kept": 6, "represented": 6},
        {"dup_cluster_size": "2", "kept": 2, "represented": 4},
        {"dup_cluster_size": "4", "kept": 1, "represented": 4},
    ]

    # up-sampling: epochs = bucket epochs (1) x FineWeb-2's weight of the size (1 -> 1, 2 -> 2, 4 -> 3)
    out = rows(folder / run["buckets"]["fingerprint"])
    epochs = {Path(u).name: e for u, e in zip(out["url"], out["epochs"], strict=True)}
    assert epochs == {f: float(weights_for([n], FINEWEB2_WEIGHTS)[0]) for f, n in expected.items()}
    assert epochs["a_json.txt"] == 3.0 and epochs["a_csv.txt"] == 2.0 and epochs["a_heapq.txt"] == 1.0
    # the packer repeats each row exactly that often (whole epochs: no random draw), the same in any process
    repeats = repeat_counts(out["id"].to_list(), out["epochs"].to_numpy(), 1.0, "buckets", 0)
    assert repeats.tolist() == [int(e) for e in out["epochs"]]
    breport = {r["title"]: r for r in run["buckets"]["reports"]}
    table = json.loads((folder / run["buckets"]["fingerprint"] / breport["Rehydration"]["table"]).read_text())
    assert [(r["cluster_size"], r["weight"], r["documents"]) for r in table] == [
        ("1", 1.0, 6), ("2", 2.0, 2), ("3-4", 3.0, 1), ("5-99", 5.0, 0), ("100-999", 8.0, 0), (">=1000", 1.0, 0)
    ]  # fmt: skip
    mixture = json.loads((folder / run["buckets"]["fingerprint"] / breport["Mixture"]["table"]).read_text())
    phases = run["buckets"]["timings"]["phases"]  # method threshold: no cut-off pass
    assert set(phases) == {"scores_s", "digests_s", "write_s", "report_s"}
    rest = next(r for r in mixture if r["bucket"] == "rest")
    assert abs(rest["effective_tokens"] - sum(r["weighted_tokens"] for r in table)) <= len(table)  # rounding
