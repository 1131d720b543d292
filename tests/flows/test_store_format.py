"""A store written by a newer arcflow is refused, in one line naming the version, by every command that reads it:
run, gc, status, plan, show and trace; on a local store and on an object store (moto's S3 server on loopback). A
local store carries the marker too (``store.json``, written when a run takes the lock); an older local store
without it still reads, and gets it at its next run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from _moto_server import moto_server_process
from _pipeline_util import load, run_all, write_corpus, write_pipeline
from typer.testing import CliRunner

from flows.cli import app
from flows.store import Store
from flows.store_format import STORE_FORMAT, arcflow_version

NODES = {"raw": {"uses": "files", "params": {"paths": ["data"]}}}
NEWER = {"format": STORE_FORMAT + 1, "arcflow": "0.9.0"}
COMMANDS = (["status"], ["plan"], ["show", "raw"], ["trace", "raw"], ["gc"], ["run"])


def _refused_by_every_command(pipeline: Path, location: str) -> None:
    expected = (
        f"the store {location} was written by a newer arcflow (0.9.0, store format {STORE_FORMAT + 1}; this "
        f"arcflow {arcflow_version()} reads format {STORE_FORMAT}); upgrade arcflow"
    )
    for args in COMMANDS:
        result = CliRunner().invoke(app, [*args, "-f", str(pipeline)], env={"COLUMNS": "400"})
        assert result.exit_code == 1, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output, (args, result.output)


def test_a_local_store_carries_its_format_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    write_corpus(tmp_path, n_files=2)
    pipeline = write_pipeline(tmp_path, NODES)
    root = tmp_path / ".arcflow"
    with Store(str(root)).lock():
        run_all(load(pipeline))
    marker = root / "store.json"
    assert json.loads(marker.read_text()) == {"format": STORE_FORMAT, "arcflow": arcflow_version()}

    marker.unlink()  # a store made before the marker existed: read as it is, and marked at its next run
    assert CliRunner().invoke(app, ["status", "-f", str(pipeline)]).exit_code == 0
    assert not marker.exists()
    with Store(str(root)).lock():
        assert run_all(load(pipeline)) == {"raw": True}
    assert json.loads(marker.read_text())["format"] == STORE_FORMAT

    marker.write_text(json.dumps(NEWER))
    _refused_by_every_command(pipeline, str(root))
    assert json.loads(marker.read_text()) == NEWER  # left as the newer arcflow wrote it


@pytest.fixture()
def moto_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[object, str]]:
    s3fs = pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    with moto_server_process() as url:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url,
            "ARCFLOW_STAGING": str(tmp_path / "staging"),
        }.items():
            monkeypatch.setenv(key, value)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem()
        fs.mkdir("store-format")
        yield fs, "store-format"
        s3fs.S3FileSystem.clear_instance_cache()


def test_an_object_store_of_a_newer_arcflow_is_refused_by_every_command(
    moto_bucket: tuple[object, str], tmp_path: Path
) -> None:
    fs, bucket = moto_bucket
    write_corpus(tmp_path, n_files=2)
    url = f"s3://{bucket}/store"
    pipeline = write_pipeline(tmp_path, NODES, extra={"workdir": url})
    with Store(url).lock():
        run_all(load(pipeline))
    assert json.loads(fs.cat_file(f"{bucket}/store/store.json"))["format"] == STORE_FORMAT  # type: ignore[attr-defined]
    fs.pipe_file(f"{bucket}/store/store.json", json.dumps(NEWER).encode())  # type: ignore[attr-defined]
    _refused_by_every_command(pipeline, url)
