"""`arcflow trace` and the training lineage of `arcflow show` (flows/trace.py) on a tiny real store: demo corpus ->
filter -> tokenizer -> pack (several shards) -> pretrain (more than one epoch) -> SFT from the pretrain
checkpoint, trained by the real DeepSpeed launcher on CPU.

The pretrain node is built the way issue 10 describes a crash: `--node pretrain` (a forced run) is killed with
kill -9 after its first DeepSpeed state, then `--node pretrain` again resumes from that state; a third forced run
of the finished output starts from scratch and ends with the same bytes.

Packed rows are checked against the documents themselves (each segment's decoded tokens are a piece of the
document's text, and its URL is the document's); the replayed sample order against what the trainer recorded
(samples per shard in lineage.json, non-padding tokens per step in metrics.parquet)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.store import Store
from flows.trace import find_documents
from tests._background import build_result
from tests.flows._trace_build import GLOBAL_BATCH, PRETRAIN_STEPS, ROWS_PER_SHARD

pytestmark = pytest.mark.background_build("trace")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The store of tests/flows/_trace_build.py (kill -9 of a forced pretrain run, the forced resume, a forced
    fresh run, then the run to chat_model), built in its own process from the session's start."""
    got = build_result(tmp_path_factory, "trace")
    return {**got, "store": Store(str(got["path"].parent / "store"))}


def cli(built: dict, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [*args, "-f", str(built["path"])])
    return result.exit_code, result.output


def flat(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_forced_rerun_after_kill9_resumes_with_the_same_bytes(built: dict) -> None:
    steps = [int(s) for s in re.findall(r"resumed at step (\d+)", built["resumed_log"])]
    assert steps and 3 <= steps[-1] < PRETRAIN_STEPS, built["resumed_log"][-3000:]
    # a forced run of the finished output starts afresh (its log is new) and gives the same bytes
    assert "resumed at step" not in built["fresh_log"] and "from scratch" in built["fresh_log"]
    assert built["fresh"]["content_hash"] == built["resumed"]["content_hash"]
    assert built["fresh"]["fingerprint"] == built["resumed"]["fingerprint"]


def test_trace_packed_row(built: dict) -> None:
    store: Store = built["store"]
    pack = built["manifests"]["pack"]
    rows = pa.concat_tables(
        pq.read_table(os.path.join(store.output_dir(pack["fingerprint"]), s["file"]))
        for s in store.shards(pack["fingerprint"])
    )
    assert len(store.shards(pack["fingerprint"])) > 2
    row = max(rows.to_pylist(), key=lambda r: (len(r["doc_lens"]), r["seq_index"]))  # several segments
    assert len(row["doc_lens"]) > 1
    code, out = cli(built, "trace", "pack", "--row", str(row["seq_index"]), "--json")
    assert code == 0, out
    got = json.loads(out)
    assert (
        got["row"] == row["seq_index"]
        and got["shard"] == f"part-{row['seq_index'] // ROWS_PER_SHARD:05d}.parquet"
    )
    demo = built["manifests"]["demo"]["fingerprint"]
    docs = {
        d["id"]: d
        for s in store.shards(demo)
        for d in pq.read_table(os.path.join(store.output_dir(demo), s["file"])).to_pylist()
    }
    at = 0
    for seg, n, doc_id, start in zip(
        got["segments"], row["doc_lens"], row["doc_ids"], row["doc_starts"], strict=True
    ):
        assert seg["tokens"] == [at, at + n] and seg["doc_id"] == doc_id and seg["doc_offset"] == start
        at += n
        doc = docs[doc_id]
        assert seg["node"] == "docs" and seg["found_in"] == "docs" and seg["url"] == doc["url"]
        assert seg["path"] == json.loads(doc["meta"])["path"] and seg["source"] == "licenses"
        # the decoded tokens are a piece of the document's own text
        piece = re.sub(r"<\|endoftext\|>|<[|a-z]*$", "", seg["preview"].rstrip("…"))  # may cut the marker
        assert flat(piece.strip("\ufffd")) in flat(doc["text"])  # a cut UTF-8 character decodes as U+FFFD
    assert got["pad_tokens"] == [at, 128] and got["n_pad"] == 128 - at
    code, text = cli(built, "trace", "pack", "--row", str(row["seq_index"]))
    assert code == 0 and got["segments"][0]["doc_id"] in text and "pypi://" in text


def test_trace_training_replays_the_trainer_order(built: dict) -> None:
    store: Store = built["store"]
    pre = built["manifests"]["pretrain"]
    out_dir = Path(store.output_dir(pre["fingerprint"]))
    lineage = json.loads((out_dir / "lineage.json").read_text())
    code, out = cli(built, "trace", "pretrain", "--json")
    assert code == 0, out
    got = json.loads(out)
    assert got["samples"] == PRETRAIN_STEPS * GLOBAL_BATCH == lineage["samples"] and got["epochs"] > 1
    # per shard, the replay draws exactly what the trainer recorded drawing (its own consumed() count)
    assert [(s["file"], s["samples_drawn"]) for s in got["shards"]] == [
        (s["file"], s["samples"]) for s in lineage["shards"]
    ]
    assert {s["fingerprint"] for s in got["shards"]} == {built["manifests"]["pack"]["fingerprint"]}
    full = got["samples"] // got["rows"]
    for s in got["shards"]:
        assert sum(int(t) * n for t, n in s["times"].items()) == s["samples_drawn"]
        assert set(s["times"]) <= {str(full), str(full + 1)}
        assert s["drawn"][0][0] == s["seq_index"][0] and s["drawn"][-1][1] == s["seq_index"][1]
    # every step's rows: the trainer's own non-padding token count per step (metrics.parquet) and the draws
    metrics = pq.read_table(out_dir / "metrics.parquet").to_pylist()
    pack_dir = store.output_dir(built["manifests"]["pack"]["fingerprint"])
    n_pad = {}
    for s in got["shards"]:
        t = pq.read_table(os.path.join(pack_dir, s["file"]), columns=["seq_index", "n_pad"]).to_pylist()
        n_pad.update({r["seq_index"]: r["n_pad"] for r in t})
    before = 0
    for m in metrics:
        code, out = cli(built, "trace", "pretrain", "--step", str(m["step"]), "--json")
        step = json.loads(out)["step"]
        assert step["samples"] == [m["samples"] - m["batch"], m["samples"]]
        assert [r["micro_batch"] for r in step["rows"]] == [0, 0, 1, 1] and {
            r["rank"] for r in step["rows"]
        } == {0}
        assert sum(128 - n_pad[r["seq_index"]] for r in step["rows"]) == m["tokens"] - before
        before = m["tokens"]
        if m["step"] == 4:  # the first steps are enough; each is a command
            break
    code, text = cli(built, "trace", "pretrain", "--step", "1")
    assert code == 0 and "step 1" in text and "trainer's order" in text


def test_trace_sft_rebuilds_its_rows(built: dict) -> None:
    code, out = cli(built, "trace", "chat_model", "--step", "1", "--json")
    assert code == 0, out
    got = json.loads(out)
    lineage = json.loads((Path(built["store"].output_dir(got["fingerprint"])) / "lineage.json").read_text())
    sft_rows = [s for s in lineage["shards"] if s["node"] == "sft_rows"][0]
    assert (
        got["shards"][0]["rows"] == sft_rows["rows"]
        and got["shards"][0]["samples_drawn"] == sft_rows["samples"]
    )
    assert got["parent"]["node"] == "pretrain"
    assert got["parent"]["fingerprint"] == built["manifests"]["pretrain"]["fingerprint"]
    chats = built["manifests"]["chats"]
    ids = {
        r["id"]
        for s in built["store"].shards(chats["fingerprint"])
        for r in pq.read_table(
            os.path.join(built["store"].output_dir(chats["fingerprint"]), s["file"])
        ).to_pylist()
    }
    rows = got["step"]["rows"]
    assert rows and all(d in ids for r in rows for d in r["doc_ids"])
    assert all(n == "chats/part-00000.parquet" for r in rows for n in r["nodes"])


def test_show_names_shards_code_and_parent(built: dict) -> None:
    m = built["manifests"]
    code, out = cli(built, "show", "chat_model", "--json")
    assert code == 0, out
    lin = json.loads(out)["training_lineage"]
    assert lin["parent"] == {
        "node": "pretrain",
        "fingerprint": m["pretrain"]["fingerprint"],
        "content_hash": m["pretrain"]["content_hash"],
    }
    assert lin["init_from"] == "pretrain"
    assert [(s["node"], s["fingerprint"]) for s in lin["shards"]][0] == ("chats", m["chats"]["fingerprint"])
    assert (
        lin["code"]["modules"] == len(m["chat_model"]["code"]) and "model.train.main" in lin["code"]["main"]
    )
    code, out = cli(built, "show", "pretrain", "--json")
    lin = json.loads(out)["training_lineage"]
    assert lin["parent"] is None
    pack_dir = built["store"].output_dir(m["pack"]["fingerprint"])
    assert [s["path"] for s in lin["shards"]] == [
        os.path.join(pack_dir, s["file"]) for s in built["store"].shards(m["pack"]["fingerprint"])
    ]
    code, text = cli(built, "show", "chat_model")
    assert (
        code == 0
        and "training lineage" in flat(text)
        and "parent checkpoint (init_from): pretrain" in flat(text)
    )
    assert m["pretrain"]["fingerprint"][:12] in text.replace("\n", "")


def test_bad_input(built: dict) -> None:
    code, out = cli(built, "trace", "pretrian")
    assert code == 2 and "no such node" in out and "pretrain" in out
    code, out = cli(built, "trace", "pack", "--row", "100000")
    assert code == 2 and re.search(r"give a row in 0\.\.\d+", out)
    code, out = cli(built, "trace", "pack")
    assert code == 2 and "--row" in flat(out)
    code, out = cli(built, "trace", "pack_unbuilt", "--row", "0")
    assert code == 1 and "arcflow run --to pack_unbuilt" in flat(out)
    code, out = cli(built, "trace", "docs")
    assert code == 2 and re.search(r"pack nodes here: (pack, pack_unbuilt|pack_unbuilt, pack)\)", flat(out))
    assert "chat_model" in flat(out)
    code, out = cli(built, "trace", "pretrain", "--row", "1")
    assert code == 2 and "training node" in flat(out)
    code, out = cli(built, "trace", "pretrain", "--step", "999")
    assert code == 2 and f"1..{PRETRAIN_STEPS}" in flat(out)


def test_documents_found_back_through_inputs(tmp_path: Path) -> None:
    """A document row that names no URL or path is looked up by id in its node's inputs."""
    store = Store(str(tmp_path))

    def output(fp: str, table: pa.Table, inputs: list[dict]) -> None:
        os.makedirs(store.output_dir(fp))
        pq.write_table(table, os.path.join(store.output_dir(fp), "part-00000.parquet"))
        store.write_manifest(
            fp, {"node": fp, "output_type": "documents", "inputs": inputs}, [{"file": "part-00000.parquet"}]
        )

    raw = pa.table({"id": ["a", "b"], "url": ["", "https://x/b"], "meta": ['{"path": "a.txt"}', "{}"]})
    output("raw", raw, [])
    output(
        "clean",
        pa.table({"id": ["a", "b", "c"], "url": ["", "", ""]}),
        [{"name": "raw", "fingerprint": "raw"}],
    )
    found = find_documents(store, "clean", {"a", "b", "c"})
    assert (found["a"]["path"], found["a"]["found_in"]) == ("a.txt", "raw")
    assert (found["b"]["url"], found["b"]["found_in"]) == ("https://x/b", "raw")
    assert found["c"] == {"url": "", "path": "", "source": "", "found_in": "clean", "fingerprint": "clean"}
