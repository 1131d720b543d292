"""The `datatrove` kind with a LOCAL model: `FastTextClassifierFilter`'s `model_url` as a plain path or a file://
URL is read where it is (no copy into datatrove's asset cache, no network), its bytes enter the fingerprint, and a
missing one fails `arcflow validate` on its `args` line; at run time a file gone since validation fails the node
once. The model is a tiny real fastText classifier trained in the test."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import yaml

pytest.importorskip("datatrove")

from data_pipes.web.quality_fasttext import TrainConfig, train  # noqa: E402
from flows.engine import Engine  # noqa: E402
from flows.errors import SpecError  # noqa: E402
from flows.validate import load_pipeline  # noqa: E402
from tests.tasks.test_datatrove_kind import _empty_asset_cache, _NoNetwork  # noqa: E402

GOOD = "the river town keeps its old stone houses and a small museum about the floods"
BAD = "buy cheap pills now click here click here best price"
STEP = "datatrove.pipeline.filters.FastTextClassifierFilter"


def _model(path: Path, flip: bool = False) -> Path:
    """A fastText classifier of `good` against `bad` lines (``flip``: the labels swapped), about 1 kB."""
    lines = [("bad" if flip else "good", GOOD), ("good" if flip else "bad", BAD)] * 20
    train(lines, str(path), TrainConfig(dim=8, bucket=1000, word_ngrams=1, epoch=10))
    return path


def _pipeline(root: Path, model_urls: dict[str, str]) -> Path:
    """``docs`` (two good and one bad line) and one FastTextClassifierFilter node per entry of ``model_urls``."""
    (root / "docs").mkdir(exist_ok=True)
    (root / "docs" / "a.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in (("g1", GOOD), ("b1", BAD), ("g2", GOOD)))
    )
    nodes: dict = {"docs": {"uses": "files", "params": {"paths": ["docs"], "id_field": "id"}}}
    for name, url in model_urls.items():
        args = {"model_url": url, "keep_labels": ["good", 0.5]}
        nodes[name] = {"uses": "datatrove", "inputs": ["docs"], "params": {"step": STEP, "args": args}}
    spec = {
        "name": "ftlocal",
        "workdir": str(root / "store"),
        "executor": {"n_workers": 1, "processes": False, "inline_s": 3},
        "nodes": nodes,
    }
    file = root / "pipeline.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return file


def test_local_model_is_read_in_place_and_fingerprinted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from data_pipes.datatrove_resolve import LocalAssetMissing

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    model = _model(tmp_path / "model.bin")
    monkeypatch.chdir(
        tmp_path
    )  # `bare`: a bare file name, read (by datatrove too) from the working directory
    file = _pipeline(tmp_path, {"plain": str(model), "as_url": model.as_uri(), "bare": "model.bin"})
    engine = Engine(load_pipeline(str(file)))  # validates: the probe finds the local file, nothing refused
    try:
        engine.run_node("docs")
        outputs = {}
        for node in ("plain", "as_url", "bare"):
            reused, manifest = engine.run_node(node)
            assert not reused and manifest["counts"] == {
                "in": 3,
                "kept": 2,
                "dropped": 1,
                "quarantined": 0,
                "out": 2,
            }
            kept = pl.read_parquet(f"{engine.store.output_dir(manifest['fingerprint'])}/part-*.parquet")
            assert kept["id"].to_list() == ["docs:g1", "docs:g2"]
            assert all(json.loads(m)["__label__good"] > 0.5 for m in kept["meta"])  # the model's own scores
            outputs[node] = manifest["content_hash"]
        # the same model through a path, a file:// URL or a bare name: the same output; no copy, no network
        assert outputs["plain"] == outputs["as_url"] == outputs["bare"]
        assert net.attempts == [] and not [p for p in cache.rglob("*") if p.is_file()]
        old = {x.node: x.fingerprint for x in engine.plan()}
    finally:
        engine.close()

    # the model is data: retrained (labels swapped) at the same path, both nodes are to recompute
    _model(model, flip=True)
    engine = Engine(load_pipeline(str(file)))
    try:
        plans = {x.node: x for x in engine.plan()}
        for node, value in (("plain", str(model)), ("as_url", model.as_uri()), ("bare", "model.bin")):
            assert plans[node].status == "stale" and plans[node].fingerprint != old[node], plans[node]
            assert plans[node].reasons == [f"local file changed: {value}"], plans[node].reasons
        assert plans["docs"].status == "up_to_date"
        _, manifest = engine.run_node("plain")
        assert manifest["counts"]["kept"] == 1  # the retrained model is the one read: only the bad line kept
        # gone after validation: the node fails once at its first row, naming the file; no row quarantined
        model.unlink()
        with pytest.raises(LocalAssetMissing, match="which does not exist"):
            engine.run_node("as_url", forced=True)
        fingerprint = {x.node: x.fingerprint for x in engine.plan()}["as_url"]
        assert engine.store.manifest(fingerprint) is None  # no output stored, no row quarantined for it
    finally:
        engine.close()
    assert net.attempts == []


def test_missing_local_model_fails_validate_on_its_args_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    missing = tmp_path / "models" / "missing.bin"
    file = _pipeline(tmp_path, {"ft": missing.as_uri()})
    line = file.read_text().splitlines().index(f"        model_url: {missing.as_uri()}") + 1
    want = (
        f"{file}:{line}: nodes.ft.params.args.model_url: step '{STEP}': FastTextClassifierFilter reads, on its "
        f"first document, the local file '{missing.as_uri()}' ({missing}), which does not exist; give the path of "
        "a readable file"
    )
    with pytest.raises(SpecError) as info:
        load_pipeline(str(file))
    (problem,) = info.value.problems
    assert problem.render().startswith(want), problem.render()
    for command in ("validate", "run"):  # `arcflow run` stops there too, before Prefect or any node starts
        result = CliRunner().invoke(app, [command, "-f", str(file)])
        assert result.exit_code == 2, result.output
        assert "nodes.ft.params.args.model_url" in result.output and "does not exist" in result.output
    assert not (tmp_path / "store").exists()
    assert net.attempts == [] and not [p for p in cache.rglob("*") if p.is_file()]


def test_remote_model_is_still_refused_and_the_asset_function_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datatrove.io as dt_io
    import datatrove.pipeline.filters.fasttext_filter as ft_module

    from data_pipes.datatrove_bridge import StepRunner
    from data_pipes.datatrove_resolve import AssetNotCached, LocalAssetMissing

    cache = _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    original = dt_io.cached_asset_path_or_download
    runner = StepRunner(
        STEP, {"model_url": "https://example.invalid/model.bin", "keep_labels": ["good", 0.5]}
    )
    frame = pl.DataFrame({"id": ["g1"], "text": [GOOD]})
    with pytest.raises(AssetNotCached, match="which is not in datatrove's asset cache") as info:
        runner.run(frame)
    assert not isinstance(info.value, LocalAssetMissing) and "example.invalid/model.bin" in str(info.value)
    assert net.attempts == [] and not [p for p in cache.rglob("*") if p.is_file() and not p.suffix == ".lock"]
    # outside the guard, datatrove's own function is back, in datatrove.io and in the step's module
    assert dt_io.cached_asset_path_or_download is original is ft_module.cached_asset_path_or_download


def test_relative_remote_and_non_fasttext_models_are_reported_on_their_args_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from data_pipes.datatrove_bridge import StepRunner
    from data_pipes.datatrove_resolve import LocalAssetMissing, check_step

    _empty_asset_cache(tmp_path, monkeypatch)
    net = _NoNetwork(monkeypatch)
    monkeypatch.chdir(tmp_path)
    # a relative path is looked for from the working directory (as datatrove does), and the message says so
    (problem,) = check_step(STEP, {"model_url": "models/q.bin", "keep_labels": ["good", 0.5]})
    assert problem[0] == ("args", "model_url"), problem
    assert (
        f"taken from the working directory {tmp_path}, as datatrove does, not from pipeline.yaml's"
        in problem[1]
    )
    assert "give an absolute path" in problem[1]
    # an absolute one does not carry that hint
    (problem,) = check_step(STEP, {"model_url": str(tmp_path / "q.bin"), "keep_labels": ["good", 0.5]})
    assert "does not exist" in problem[1] and "working directory /" not in problem[1]
    # a remote URL not in datatrove's cache: on the same args line, not on `step:`
    (problem,) = check_step(
        STEP, {"model_url": "https://example.invalid/q.bin", "keep_labels": ["good", 0.5]}
    )
    assert problem[0] == ("args", "model_url") and "not in datatrove's asset cache" in problem[1], problem
    # a file that is not a fastText model (4 bytes read, nothing loaded): validate fails on its line, and a run
    # fails the node once instead of quarantining every row
    (tmp_path / "notes.txt").write_text("not a model\n")
    args = {"model_url": "notes.txt", "keep_labels": ["good", 0.5]}
    (problem,) = check_step(STEP, args)
    assert problem[0] == ("args", "model_url") and "is not a fastText model" in problem[1], problem
    with pytest.raises(LocalAssetMissing, match="'notes.txt'.*is not a fastText model"):
        StepRunner(STEP, args).run(pl.DataFrame({"id": ["g1"], "text": [GOOD]}))
    assert net.attempts == []
