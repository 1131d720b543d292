"""Training stages as pipeline nodes (tasks/train.py), on CPU with the `debug` flavour and a few steps: a cut-down
examples/train.yaml (demo corpus -> tokenizer -> pack -> pretrain -> midtrain -> sft) through the engine and the
real DeepSpeed launcher, with its pretrain stage killed with kill -9 mid-stage and rerun (the rerun resumes and
ends with the same bytes as an uninterrupted run); the result loads in transformers and generates; a changed
learning rate makes only that stage and what follows it stale; a param that changes no weight retrains the stage
and leaves what follows it cached; bad inputs stop the node before training, naming node, file and fix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flows.engine import Engine, select
from flows.validate import load_pipeline
from tasks._train_run import StageInputError, kill_launch, launcher_processes
from tasks.base import DataType, InputRef, RunContext
from tasks.registry import get_kind
from tests._background import build_result

ROOT = Path(__file__).resolve().parents[2]
# pretrain: long enough to be killed between its checkpoints (every 5 steps), and for the loss to fall
STEPS = 20


def nodes(extra: dict | None = None) -> dict:
    out = {
        "demo": {"uses": "demo_corpus", "params": {"parts": ["licenses"], "max_items_per_part": 30}},
        "tokenizer": {
            "uses": "tokenizer_train",
            "inputs": ["demo"],
            "params": {"vocab_size": 512, "sample_docs": 60, "heldout_docs": 0},
        },
        "pack_4k": {"uses": "pack", "inputs": ["tokenizer", "demo"], "params": {"seq_len": 64}},
        "pack_32k": {"uses": "pack", "inputs": ["tokenizer", "demo"], "params": {"seq_len": 128}},
        "pretrain": {
            "uses": "pretrain",
            "inputs": ["pack_4k"],
            "params": {
                "steps": STEPS,
                "batch": {"global_batch": 4, "micro_batch": 2},
                "optim": {"name": "muon", "lr": 0.01},
                "checkpoint_every": 5,
            },
        },
        "midtrain": {
            "uses": "midtrain",
            "inputs": ["pack_32k", "pretrain"],
            "params": {"init_from": "pretrain", "steps": 3, "batch": {"global_batch": 2, "micro_batch": 1}},
        },
        "problems": {
            "uses": "problems",
            "params": {"reasoning_gym": [{"name": "basic_arithmetic", "size": 6, "seed": 1}]},
        },
        "chats": {
            "uses": "generate_sft",
            "inputs": ["problems"],
            "params": {"teacher": {"kind": "procedural"}},
        },
        "chat_model": {
            "uses": "sft",
            "inputs": ["chats", "tokenizer", "midtrain"],
            "params": {"init_from": "midtrain", "seq_len": 256, "steps": 3, "batch": {"global_batch": 2}},
        },
    }
    out.update(extra or {})
    return out


def write(root: Path, node_specs: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "pipeline.yaml"
    spec = {"name": "train-test", "workdir": str(root / "store"), "seed": 7, "nodes": node_specs}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class Listener:
    """What the Prefect layer gets from a node: progress events and live reports (title, table, png)."""

    def __init__(self) -> None:
        self.events: list = []
        self.live: list[tuple[str, list | None, bytes | None]] = []

    def __call__(self, event: object) -> None:
        self.events.append(event)

    def live_report(self, title: str, table: list | None, png: bytes | None) -> None:
        self.live.append((title, table, png))


def run(path: Path, overrides: list[str] | None = None, **selection: str) -> dict[str, dict]:
    pipeline = load_pipeline(str(path), overrides or [])
    engine = Engine(pipeline)
    out = {}
    try:
        sel = select(pipeline, **selection)
        for node in sel.nodes:
            listener = Listener()
            reused, manifest = engine.run_node(node, forced=node in sel.forced, progress=listener)
            out[node] = {
                "reused": reused,
                "manifest": manifest,
                "events": listener.events,
                "live": listener.live,
            }
    finally:
        engine.close()
    return out


def out_dir(path: Path, manifest: dict) -> Path:
    return path.parent / "store" / "outputs" / manifest["fingerprint"]


def _kill_pretrain_after_a_state(path: Path) -> tuple[str, list[int], str]:
    """`pretrain` (not forced) in another process, killed with SIGKILL once a DeepSpeed state of step 5 or later is
    saved; its launcher and ranks end with it (within seconds). Returns (when it was killed, the processes of its
    launch still running 30 s later: none, the killed run's spec path)."""
    script = (
        "import sys; from flows.validate import load_pipeline; from flows.engine import Engine\n"
        "e = Engine(load_pipeline(sys.argv[1], [])); e.run_node('pretrain')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=ROOT, start_new_session=True)
    outputs = path.parent / "store" / "outputs"
    deadline, killed_at = time.monotonic() + 900, None  # a background build: nice 10 beside the shared runs
    while time.monotonic() < deadline and proc.poll() is None:
        latest = list(outputs.glob("*/_train/ckpt/latest"))
        if latest and latest[0].read_text().strip() >= "step00000005":
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = f"{latest[0].read_text().strip()} at {time.strftime('%H:%M:%S')}"
            break
        time.sleep(0.05)
    proc.wait()
    assert killed_at is not None, "the stage ended before it could be killed; raise STEPS"
    spec = str(next(outputs.glob("*/_train/spec.json")))
    # the launch watchdog (model/train/launch_watchdog.py) stops the launcher and ranks of the killed run; before
    # it they lived on, reparented to init, training and writing checkpoints
    deadline = time.monotonic() + 30
    while (orphans := launcher_processes(spec)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not orphans, f"the launcher and ranks outlived the killed run: {orphans}"
    return killed_at, orphans, spec


def build_trained(folder: Path) -> tuple[Path, dict[str, dict]]:
    """The cut-down pipeline, built the way a crash goes: pretrain is killed with kill -9 after a DeepSpeed state
    (its launcher and ranks end with it), then the whole pipeline runs: pretrain resumes, midtrain and SFT
    follow. ``done["pretrain"]["killed"]`` holds what the kill left (checked by the kill -9 test)."""
    path = write(folder, nodes())
    run(path, to_node="pack_4k")
    killed_at, orphans, spec = _kill_pretrain_after_a_state(path)
    try:
        # the same command again (a forced `--node` run resumes too: tests/flows/test_trace.py)
        done = run(path)
    finally:
        kill_launch(spec, timeout_s=5)  # the rerun stopped them already; a failed rerun must not leave them
    done["pretrain"]["killed"] = {"at": killed_at, "orphans": orphans, "spec": spec}
    return path, done


def build_uninterrupted(path: Path) -> dict[str, dict]:
    """The same pipeline with a param that changes no weight (the DeepSpeed state cadence): pretrain trains again,
    uninterrupted, from scratch; what follows it is asked for too."""
    return run(path, ["nodes.pretrain.params.checkpoint_every=20"], to_node="chat_model")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """``build_trained``'s store, built in its own process from the session's start (tests/tasks/_train_build.py,
    with ``build_uninterrupted`` after it)."""
    got = build_result(tmp_path_factory, "train_kinds")
    return got["path"], got["done"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    return build_result(tmp_path_factory, "train_kinds")["uninterrupted"]


@pytest.mark.slow
@pytest.mark.background_build("train_kinds")
def test_stages_train_export_and_load(trained: tuple[Path, dict]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, done = trained
    pre, mid, sft = (done[n]["manifest"] for n in ("pretrain", "midtrain", "chat_model"))
    assert pre["output_type"] == mid["output_type"] == sft["output_type"] == "checkpoint"
    # progress: the train phase counted every step
    train = [e for e in done["pretrain"]["events"] if e.phase == "train"]
    assert train[-1].done == train[-1].total == STEPS and train[-1].unit == "steps"
    # live reports while it trained: the metrics table (tok/s included) and the plot, the last at the last step
    title, table, png = done["pretrain"]["live"][-1]
    assert title == "pretrain metrics" and table[-1]["step"] == STEPS and table[-1]["tok_s"] > 0
    assert png.startswith(b"\x89PNG")
    # metrics: one row per step, finite, the loss falls
    rows = pq.read_table(out_dir(path, pre) / "metrics.parquet").to_pylist()
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1)) and "tok_s" not in rows[0]
    assert sum(r["loss"] for r in rows[-5:]) < sum(r["loss"] for r in rows[:5])
    # midtrain: RoPE base raised, positions at least the 128-token rows, lineage names the parent and the shards
    cfg = json.loads((out_dir(path, mid) / "config.json").read_text())
    assert cfg["rope_parameters"]["rope_theta"] == 1_000_000.0 and cfg["max_position_embeddings"] >= 128
    lineage = json.loads((out_dir(path, mid) / "lineage.json").read_text())
    assert lineage["parent"] == {"node": "pretrain", "content_hash": pre["content_hash"]}
    assert {s["node"] for s in lineage["shards"]} == {"pack_32k"}
    assert sum(s["samples"] for s in lineage["shards"]) == lineage["samples"] == 3 * 2
    # the DeepSpeed states are gone once the stage completed; the spec stays for a rerun by hand
    work = out_dir(path, pre) / "_train"
    assert not (work / "ckpt").exists() and (work / "spec.json").is_file()
    assert {r["title"] for r in pre["reports"]} == {"Training metrics"}
    from data_pipes.plots import clipped_texts
    from tasks._train_plot import metrics_figure

    assert clipped_texts(metrics_figure(rows, f"pretrain: step {STEPS}")) == []
    # the SFT folder loads in transformers, renders a chat with the one template, and generates
    folder = str(out_dir(path, sft))
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    new = model.generate(ids, max_new_tokens=5, do_sample=False)[0, ids.shape[1] :]
    assert len(new) >= 1 and type(model).__name__ == "Glm4MoeForCausalLM"


@pytest.mark.slow
@pytest.mark.background_build("train_kinds")
def test_kill9_then_resume_gives_the_same_bytes(
    trained: tuple[Path, dict], uninterrupted: dict[str, dict]
) -> None:
    """The trained pipeline's pretrain was killed with kill -9 after a DeepSpeed state and rerun (``trained``): its
    launcher and ranks ended with it, the rerun resumed from that state in the same output folder, and ended with
    the same bytes as an uninterrupted run."""
    path, done = trained
    again = done["pretrain"]["manifest"]
    killed = done["pretrain"]["killed"]
    assert not set(killed["orphans"]) & set(launcher_processes(killed["spec"]))
    assert Path(killed["spec"]).parents[1].name == again["fingerprint"]  # resumed where it was killed
    log = (out_dir(path, again) / "_train" / "launch.log").read_text()
    resumed = [int(line.rsplit(" ", 1)[1]) for line in log.splitlines() if "resumed at step" in line]
    assert resumed and 5 <= resumed[-1] < STEPS, f"killed after {killed['at']}\n{log[-3000:]}"
    fresh = uninterrupted["pretrain"]
    assert (
        not fresh["reused"]
        and "resumed at step" not in (out_dir(path, fresh["manifest"]) / "_train" / "launch.log").read_text()
    )
    assert again["content_hash"] == fresh["manifest"]["content_hash"]


@pytest.mark.slow
@pytest.mark.background_build("train_kinds")
def test_changed_lr_replans_that_stage_and_what_follows(trained: tuple[Path, dict]) -> None:
    path, _done = trained
    plan = {
        p.node: p for p in Engine(load_pipeline(str(path), ["nodes.midtrain.params.optim.lr=0.002"])).plan()
    }
    assert plan["midtrain"].status == "stale" and any("optim" in r for r in plan["midtrain"].reasons)
    assert plan["chat_model"].status == "pending"
    assert all(
        plan[n].status == "up_to_date" for n in ("demo", "tokenizer", "pack_4k", "pack_32k", "pretrain")
    )
    assert all(plan[n].status == "up_to_date" for n in ("problems", "chats"))


# ---- bad input, caught before training ------------------------------------------------------------------------
def _fail(tmp: Path, extra: dict, node: str) -> str:
    path = write(tmp, nodes(extra))
    with pytest.raises(StageInputError) as info:
        run(path, to_node=node)
    assert not list((path.parent / "store" / "outputs").glob("*/_train/launch.log")), (
        "it must fail before launch"
    )
    return str(info.value)


def test_token_ids_outside_the_vocabulary(tmp_path: Path) -> None:
    extra = {
        "tok_big": {
            "uses": "tokenizer_train",
            "inputs": ["demo"],
            "params": {"vocab_size": 1024, "sample_docs": 60, "heldout_docs": 0},
        },
        "pack_big": {"uses": "pack", "inputs": ["tok_big", "demo"], "params": {"seq_len": 64}},
        "pretrain": {"uses": "pretrain", "inputs": ["pack_big"], "params": {"steps": 2}},
    }
    msg = _fail(tmp_path, extra, "pretrain")
    assert (
        "node 'pretrain'" in msg
        and "part-00000.parquet" in msg
        and "outside the debug model's vocabulary" in msg
    )
    assert "overrides.vocab_size" in msg


def test_seq_len_beyond_the_positions(tmp_path: Path) -> None:
    extra = {
        "pretrain": {
            "uses": "pretrain",
            "inputs": ["pack_4k"],
            "params": {"steps": 2, "overrides": {"max_position_embeddings": 32}},
        }
    }
    msg = _fail(tmp_path, extra, "pretrain")
    assert "node 'pretrain'" in msg and "seq_len 64" in msg and "max_position_embeddings" in msg


def test_tokenizer_other_than_the_packing_one(tmp_path: Path) -> None:
    extra = {
        "tok_other": {
            "uses": "tokenizer_train",
            "inputs": ["demo"],
            "params": {"vocab_size": 400, "sample_docs": 60, "heldout_docs": 0},
        },
        "pretrain": {"uses": "pretrain", "inputs": ["pack_4k", "tok_other"], "params": {"steps": 2}},
    }
    msg = _fail(tmp_path, extra, "pretrain")
    assert "node 'pretrain'" in msg and "a different tokenizer" in msg
    # the fix in the pipeline's terms (the node's tokenizer input), not the launcher spec's data.tokenizer
    assert (
        "as its tokenizer input, or repack that pack node with 'tok_other'" in msg
        and "data.tokenizer" not in msg
    )


def test_chat_record_without_an_assistant_turn(tmp_path: Path) -> None:
    from data_pipes.tokens.bpe_train import save_hf_folder, train_bpe

    # a chat input as the store hands it to the kind (no chat source kind reads hand-made files)
    tok_dir = tmp_path / "tok" / "tokenizer"
    save_hf_folder(train_bpe(["what is two plus three? five."] * 20, 300, min_frequency=1), str(tok_dir))
    pq.write_table(
        pa.table({"id": ["t"], "text": ["x"], "tokenizer_dir": ["tokenizer"]}),
        tmp_path / "tok" / "part-00000.parquet",
    )
    chat_dir = tmp_path / "chats"
    chat_dir.mkdir()
    shard = chat_dir / "part-00000.parquet"
    messages = [[{"role": "user", "content": "what is two plus three?"}]]
    pq.write_table(pa.table({"id": ["c0"], "messages": messages}), shard)
    kind = get_kind("sft")
    params = kind.Params.model_validate({"steps": 1, "seq_len": 64})
    inputs = [
        InputRef("chats", DataType.CHAT, str(chat_dir), (str(shard),), (1,), "h1"),
        InputRef(
            "tokenizer",
            DataType.TOKENIZER,
            str(tmp_path / "tok"),
            (str(tmp_path / "tok" / "part-00000.parquet"),),
            (1,),
            "h2",
        ),
    ]
    out = tmp_path / "out"
    out.mkdir()
    ctx = RunContext("chat_model", params, inputs, str(out), 0, map=None, run_shards=None)  # type: ignore[arg-type]
    with pytest.raises(StageInputError) as info:
        kind.run(ctx)
    msg = str(info.value)
    assert "node 'chat_model'" in msg and str(shard) in msg and "row 0" in msg and "assistant" in msg
    assert not (out / "_train" / "launch.log").exists()


@pytest.mark.slow
@pytest.mark.background_build("train_kinds")
def test_same_weights_cut_off_downstream(trained: tuple[Path, dict], uninterrupted: dict[str, dict]) -> None:
    """A param that changes no weight (the DeepSpeed state cadence) retrains the stage, which ends with the same
    bytes: what follows it is reused (early cut-off)."""
    _path, done = trained
    again = uninterrupted
    assert not again["pretrain"]["reused"]
    assert again["pretrain"]["manifest"]["content_hash"] == done["pretrain"]["manifest"]["content_hash"]
    assert again["midtrain"]["reused"] and again["chat_model"]["reused"]


# ---- SFT's own checks, on inputs laid out as the store hands them to the kind (fast: no training) -------------
def _store_output(outputs: Path, fp: str, output_type: str, inputs: list[tuple[str, str]] = ()) -> Path:  # type: ignore[assignment]
    """``outputs/<fp>/`` with the store's manifest (output type, input names and fingerprints)."""
    folder = outputs / fp
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"output_type": output_type, "inputs": [{"name": n, "fingerprint": f} for n, f in inputs]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _tokenizer_input(outputs: Path, name: str, text: str, vocab: int) -> InputRef:
    from data_pipes.tokens.bpe_train import save_hf_folder, train_bpe

    folder = _store_output(outputs, f"fp_{name}", "tokenizer")
    save_hf_folder(train_bpe([text] * 20, vocab, min_frequency=1), str(folder / "tokenizer"))
    part = folder / "part-00000.parquet"
    pq.write_table(pa.table({"id": ["t"], "text": ["x"], "tokenizer_dir": ["tokenizer"]}), part)
    return InputRef(name, DataType.TOKENIZER, str(folder), (str(part),), (1,), f"h_{name}")


def _chat_input(outputs: Path, records: list[list[dict]]) -> InputRef:
    folder = _store_output(outputs, "fp_chats", "chat")
    shard = folder / "part-00000.parquet"
    table = pa.table({"id": [f"c{i}" for i in range(len(records))], "messages": records})
    if not records:
        table = pa.table(
            {"id": pa.array([], pa.string()), "messages": pa.array([], table.schema.field(1).type)}
        )
    pq.write_table(table, shard)
    return InputRef("chats", DataType.CHAT, str(folder), (str(shard),), (len(records),), "h_chats")


def _parent_checkpoint(outputs: Path, tok: InputRef) -> InputRef:
    """A checkpoint node's output as a stage exports it (HF config.json, the tokenizer.json it trained with),
    trained with the tokenizer input ``tok``, its vocabulary cut to 300 ids."""
    from model.config import model_config, to_hf

    folder = _store_output(outputs, "fp_midtrain", "checkpoint", [(tok.name, os.path.basename(tok.path))])
    to_hf(model_config("debug", vocab_size=300)).save_pretrained(str(folder))
    (folder / "tokenizer.json").write_bytes((Path(tok.path) / "tokenizer" / "tokenizer.json").read_bytes())
    return InputRef("midtrain", DataType.CHECKPOINT, str(folder), (), (), "h_mid")


CHAT = [{"role": "user", "content": "what is two plus three?"}, {"role": "assistant", "content": "five."}]
TEXT = "what is two plus three? five."


def _sft_ctx(tmp: Path, inputs: list[InputRef], init_from: str | None = "midtrain") -> RunContext:
    kind = get_kind("sft")
    params = kind.Params.model_validate({"steps": 1, "seq_len": 64, "init_from": init_from})
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    return RunContext("sft_tok3", params, inputs, str(out), 0, map=None, run_shards=None)  # type: ignore[arg-type]


def test_sft_tokenizer_other_than_the_parent_checkpoints(tmp_path: Path) -> None:
    """SFT from a checkpoint trained with another tokenizer stops before training, naming both nodes and both
    tokenizers and the fix; a tokenizer larger than the model's vocabulary is reported as the other tokenizer it
    is, not as a vocab_size to raise. With the parent's own tokenizer the same check passes."""
    from tasks._train_run import resolve, validate

    outputs = tmp_path / "store" / "outputs"
    tok = _tokenizer_input(outputs, "tokenizer", TEXT, 300)
    tok3 = _tokenizer_input(outputs, "tok3", TEXT + " six seven eight nine ten " * 3, 1024)
    parent = _parent_checkpoint(outputs, tok)
    ctx = _sft_ctx(tmp_path, [_chat_input(outputs, [CHAT]), tok3, parent])
    with pytest.raises(StageInputError) as info:
        get_kind("sft").run(ctx)
    msg = str(info.value)
    assert msg.startswith("node 'sft_tok3': give this node 'tokenizer'"), msg
    assert "'tok3'" in msg and "checkpoint 'midtrain'" in msg and "tokenizer input" in msg
    assert msg.count("sha256 ") == 2 and "vocab_size" not in msg and len(msg) <= 300, msg
    assert not (Path(ctx.out_dir) / "_train" / "launch.log").exists()
    # the tokenizer node is found through a chain of checkpoints too (an SFT of that midtrain, no tokenizer input)
    from model.train.validate import trained_tokenizer_node

    child = _store_output(outputs, "fp_sft1", "checkpoint", [("midtrain", "fp_midtrain")])
    (child / "tokenizer.json").write_bytes((Path(parent.path) / "tokenizer.json").read_bytes())
    assert trained_tokenizer_node(str(child)) == "tokenizer"
    # the parent's own tokenizer: the check passes and the one record is counted
    ok = _sft_ctx(tmp_path, [_chat_input(outputs, [CHAT]), tok, parent])
    assert validate(ok, resolve(ok, "sft")) == 1


def test_sft_without_chat_records(tmp_path: Path) -> None:
    outputs = tmp_path / "store" / "outputs"
    tok = _tokenizer_input(outputs, "tokenizer", TEXT, 300)
    ctx = _sft_ctx(tmp_path, [_chat_input(outputs, []), tok], init_from=None)
    with pytest.raises(StageInputError) as info:
        get_kind("sft").run(ctx)
    msg = str(info.value)
    assert "node 'sft_tok3': the input 'chats' has no chat records" in msg, msg
    assert "arcflow show chats" in msg and "seq_len" not in msg
    # the launcher's own reading of the shards (model/train/sft.py) says the same, not "raise data.seq_len"
    from model.train.sft import read_chat_docs

    with pytest.raises(ValueError, match="hold no chat records; nothing to train on"):
        read_chat_docs(ctx.inputs[0].shards, str(Path(tok.path) / "tokenizer"), 64)
