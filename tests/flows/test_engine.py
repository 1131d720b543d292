"""Engine behaviour on tiny real data: caching, invalidation, early cut-off, selections, locking, gc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from _pipeline_util import load, output_hashes, run_all, write_corpus, write_pipeline

from flows.engine import Engine, select
from flows.errors import MissingInputError, StoreLockedError
from flows.store import Store

NODES = {
    "raw": {"uses": "files", "params": {"paths": ["data"], "shard_mb": 0.00001}},
    "long": {
        "uses": "filter",
        "inputs": ["raw"],
        "params": {"expr": "length(text) > 300", "reason": "too_short"},
    },
    "few": {"uses": "sample", "inputs": ["long"], "params": {"fraction": 0.6}},
    "both": {"uses": "union", "inputs": ["few", "raw"]},
}


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    write_corpus(tmp_path, n_files=14)
    (tmp_path / "data" / "broken.jsonl").write_text('{"text": "a fine line of text"}\n{"text": nope\n')
    write_pipeline(tmp_path, NODES)
    return tmp_path


def statuses(path: Path, overrides: list[str] | None = None) -> dict[str, str]:
    p = load(path, overrides)
    return {x.node: x.status for x in Engine(p).plan()}


def test_run_then_everything_reused(project: Path) -> None:
    p = load(project / "pipeline.yaml")
    assert run_all(p) == dict.fromkeys(NODES, False)
    assert run_all(load(project / "pipeline.yaml")) == dict.fromkeys(NODES, True)
    store = Store(str(project / ".arcflow"))
    for node in NODES:
        ref = store.read_refs("t")[node]
        m = store.manifest(ref["fingerprint"])
        c = m["counts"]
        assert c["in"] == c["kept"] + c["dropped"] + c["quarantined"], node
    raw = store.manifest(store.read_refs("t")["raw"]["fingerprint"])
    assert raw["counts"]["quarantined"] == 1 and raw["quarantine_errors"] == {"jsonl_decode_error": 1}
    assert raw["counts"]["kept"] == 15  # 14 files + the good JSONL line
    long = store.manifest(store.read_refs("t")["long"]["fingerprint"])
    assert set(long["drop_reasons"]) <= {"too_short"}
    assert long["counts"]["dropped"] == long["drop_reasons"].get("too_short", 0)
    excluded = list((project / ".arcflow" / "outputs" / long["fingerprint"] / "excluded").glob("*.parquet"))
    dropped = pl.concat([pl.read_parquet(f) for f in excluded])
    assert dropped.height == long["counts"]["dropped"] and set(dropped["reason"]) == {"too_short"}


def test_param_change_recomputes_node_and_downstream_only(project: Path) -> None:
    run_all(load(project / "pipeline.yaml"))
    override = ["nodes.few.params.fraction=0.3"]
    assert statuses(project / "pipeline.yaml", override) == {
        "raw": "up_to_date",
        "long": "up_to_date",
        "few": "stale",
        "both": "pending",
    }
    plan = {x.node: x for x in Engine(load(project / "pipeline.yaml", override)).plan()}
    assert plan["few"].reasons == ["param fraction: 0.6 -> 0.3"]
    assert run_all(load(project / "pipeline.yaml", override)) == {
        "raw": True,
        "long": True,
        "few": False,
        "both": False,
    }


def test_early_cutoff_keeps_downstream_cached(project: Path) -> None:
    run_all(load(project / "pipeline.yaml"))
    # A different expression that selects the same rows: `long` recomputes, its bytes do not change.
    override = ["nodes.long.params.expr=length(text) > 301"]
    assert statuses(project / "pipeline.yaml", override)["few"] == "pending"
    assert run_all(load(project / "pipeline.yaml", override)) == {
        "raw": True,
        "long": False,
        "few": True,
        "both": True,
    }


def test_input_file_change_invalidates_source(project: Path) -> None:
    run_all(load(project / "pipeline.yaml"))
    target = next((project / "data").glob("*.txt"))
    target.write_text(target.read_text() + "\nmore text")
    plan = {x.node: x for x in Engine(load(project / "pipeline.yaml")).plan()}
    assert plan["raw"].status == "stale" and plan["raw"].reasons == ["its input files changed"]


def test_helper_module_edit_invalidates_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind in a package of its own imports a helper; editing the helper invalidates the kind only."""
    pkg = tmp_path / "plugin_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("SUFFIX = '!'\n")
    (pkg / "unrelated.py").write_text("X = 1\n")
    (pkg / "shout.py").write_text(
        "import polars as pl\n"
        "from plugin_pkg.helper import SUFFIX\n"
        "from tasks.doc_map import DocumentMapKind\n"
        "from tasks.registry import register\n\n"
        "@register\n"
        "class Shout(DocumentMapKind):\n"
        "    name = 'shout_test'\n"
        "    def process(self, frame, params, seed, task):\n"
        "        out = frame.with_columns(pl.col('text').str.to_uppercase() + SUFFIX)\n"
        "        return out, frame.clear().with_columns(pl.lit(None, dtype=pl.String).alias('reason'))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import flows.fingerprint as fpmod

    monkeypatch.setattr(fpmod, "PROJECT_PACKAGES", (*fpmod.PROJECT_PACKAGES, "plugin_pkg"))
    import plugin_pkg.shout  # noqa: F401  (registers the kind)

    write_corpus(tmp_path, n_files=3)
    write_pipeline(
        tmp_path,
        {
            "raw": {"uses": "files", "params": {"paths": ["data"]}},
            "loud": {"uses": "shout_test", "inputs": ["raw"]},
        },
    )
    run_all(load(tmp_path / "pipeline.yaml"))
    (pkg / "unrelated.py").write_text("X = 2\n")
    assert statuses(tmp_path / "pipeline.yaml") == {"raw": "up_to_date", "loud": "up_to_date"}
    time.sleep(0.01)
    (pkg / "helper.py").write_text("SUFFIX = '?'\n")
    os.utime(pkg / "helper.py", ns=(time.time_ns(), time.time_ns()))
    plan = {x.node: x for x in Engine(load(tmp_path / "pipeline.yaml")).plan()}
    assert plan["raw"].status == "up_to_date"
    assert plan["loud"].status == "stale" and plan["loud"].reasons == ["code changed: plugin_pkg.helper"]
    sys.modules.pop("plugin_pkg.shout", None)


def test_node_from_to_selections(project: Path) -> None:
    p = load(project / "pipeline.yaml")
    with pytest.raises(MissingInputError, match="run `arcflow run --to few`"):
        run_all(p, node="few")
    assert run_all(load(project / "pipeline.yaml"), to_node="long") == {"raw": False, "long": False}
    assert run_all(load(project / "pipeline.yaml"), node="few") == {"few": False}
    assert run_all(load(project / "pipeline.yaml"), node="few") == {"few": False}  # --node reruns it
    assert run_all(load(project / "pipeline.yaml"), from_node="long") == {
        "long": False,
        "few": True,
        "both": False,
    }
    sel = select(load(project / "pipeline.yaml"), force=True)
    assert sel.forced == set(NODES)


def test_second_run_on_same_store_fails_clearly(project: Path) -> None:
    """A second run is a second process (the lock is re-entrant within one process: the CLI takes it before
    Prefect starts and the flow takes it again); it fails at once, naming the holder and --wait."""
    root = str(project / ".arcflow")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from flows.store import Store\n"
            "with Store(sys.argv[1]).lock():\n"
            "    print('held', flush=True); sys.stdin.read()",
            root,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match=f"in use by arcflow pid {holder.pid} .*--wait"):
            with Store(root).lock():
                pass
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    with Store(root).lock():  # free again once the holder exits
        pass


def test_gc_removes_only_unreferenced(project: Path) -> None:
    run_all(load(project / "pipeline.yaml"))
    store = Store(str(project / ".arcflow"))
    first = {n: e["fingerprint"] for n, e in store.read_refs("t").items()}
    run_all(load(project / "pipeline.yaml", ["nodes.few.params.fraction=0.3"]))
    second = {n: e["fingerprint"] for n, e in store.read_refs("t").items()}
    # the override changes `few` and so `both`; `raw` and `long` are shared by the two runs
    assert {n for n in NODES if first[n] != second[n]} == {"few", "both"}
    outputs = project / ".arcflow" / "outputs"
    assert {p.name for p in outputs.iterdir()} == set(first.values()) | set(second.values())
    old = {first["few"], first["both"]}
    live = {fp: _tree_bytes(outputs / fp) for fp in second.values()}
    assert {fp for fp, _ in store.garbage()} == old
    removed = store.collect()
    assert {fp for fp, _ in removed} == old and all(size > 0 for _, size in removed)
    # the unreferenced outputs are gone from disk; the referenced ones are all there, byte for byte
    assert {p.name for p in outputs.iterdir()} == set(second.values())
    assert {fp: _tree_bytes(outputs / fp) for fp in second.values()} == live
    assert store.garbage() == []
    assert statuses(project / "pipeline.yaml", ["nodes.few.params.fraction=0.3"]) == dict.fromkeys(
        NODES, "up_to_date"
    )


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_run_record_and_shard_cap(project: Path) -> None:
    """Each run writes its resolved config; `max_parallel_shards` caps shards in flight without changing output."""
    from flows.prefect_flow import run_with_engine  # noqa: F401  (imports cleanly)

    p = load(project / "pipeline.yaml", ["nodes.long.resources.max_parallel_shards=1"])
    engine = Engine(p)
    sel = select(p)
    run_dir = engine.record_run_start("abcdef0123", sel)
    for node in sel.nodes:
        engine.run_node(node)
    engine.record_run_end(run_dir, dict.fromkeys(sel.nodes, "Completed"))
    engine.close()
    import json

    import yaml

    resolved = yaml.safe_load(Path(run_dir, "pipeline.yaml").read_text())
    assert resolved["nodes"]["few"]["params"] == {"fraction": 0.6, "limit": None, "seed": 0}
    assert resolved["nodes"]["long"]["resources"]["max_parallel_shards"] == 1
    run = json.loads(Path(run_dir, "run.json").read_text())
    assert set(run["nodes"]) == set(NODES) and all(v["fingerprint"] for v in run["nodes"].values())
    capped = output_hashes(project / ".arcflow")
    assert capped  # and the uncapped run gives the same bytes
    run_all(load(project / "pipeline.yaml"), force=True)
    assert output_hashes(project / ".arcflow") == capped


def test_core_modules_are_not_kind_code() -> None:
    """Editing the orchestrator (flows.*, the registry) must not invalidate every node; the kind's data code does."""
    from flows.fingerprint import code_hashes

    code = code_hashes("tasks.files")
    assert "tasks.files" in code and "data_pipes.io.readers" in code and "data_pipes.io.shards" in code
    assert not any(m.startswith("flows") or m == "tasks.registry" for m in code)
