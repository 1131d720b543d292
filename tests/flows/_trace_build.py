"""The store that tests/flows/test_trace.py reads, built in its own process: ``python -m tests.flows._trace_build
FOLDER RESULT``.

demo corpus -> filter -> tokenizer -> pack (several shards) -> pretrain (more than one epoch) -> SFT from the
pretrain checkpoint, trained by the real DeepSpeed launcher on CPU. The pretrain node is built the way issue 10
describes a crash: `--node pretrain` (a forced run) is killed with kill -9 after its first DeepSpeed state, then
`--node pretrain` again resumes from that state; a third forced run of the finished output starts from scratch.

The build is a minute or two of mostly single-core work, so tests/conftest.py starts it in the background when the
session starts (as the shared default runs), and test_trace.py's fixture waits for its result (what the runs
returned: the manifests and the training logs, pickled).
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

from tasks._train_run import kill_launch, launcher_processes
from tests.tasks.test_train_kinds import run, write

ROOT = Path(__file__).resolve().parents[2]
PRETRAIN_STEPS = 24
GLOBAL_BATCH = 4
ROWS_PER_SHARD = 6

NODES = {
    "demo": {"uses": "demo_corpus", "params": {"parts": ["licenses"], "max_items_per_part": 30}},
    # a few short licences (MIT, BSD, ...), so the rows are few whatever is installed: pretrain sees them twice
    "short": {"uses": "filter", "inputs": ["demo"], "params": {"expr": "length(text) BETWEEN 500 AND 3000"}},
    "docs": {"uses": "sample", "inputs": ["short"], "params": {"limit": 6}},
    "tokenizer": {
        "uses": "tokenizer_train",
        "inputs": ["docs"],
        "params": {"vocab_size": 512, "sample_docs": 8, "heldout_docs": 0},
    },
    "pack": {
        "uses": "pack",
        "inputs": ["tokenizer", "docs"],
        "params": {"seq_len": 128, "rows_per_shard": ROWS_PER_SHARD},
    },
    "pack_unbuilt": {"uses": "pack", "inputs": ["tokenizer", "docs"], "params": {"seq_len": 96}},
    "pretrain": {
        "uses": "pretrain",
        "inputs": ["pack"],
        "params": {
            "steps": PRETRAIN_STEPS,
            "batch": {"global_batch": GLOBAL_BATCH, "micro_batch": 2},
            "optim": {"name": "muon", "lr": 0.01},
            "checkpoint_every": 3,
        },
    },
    "problems": {
        "uses": "problems",
        "params": {"reasoning_gym": [{"name": "basic_arithmetic", "size": 4, "seed": 1}]},
    },
    "chats": {"uses": "generate_sft", "inputs": ["problems"], "params": {"teacher": {"kind": "procedural"}}},
    "chat_model": {
        "uses": "sft",
        "inputs": ["chats", "tokenizer", "pretrain"],
        "params": {"init_from": "pretrain", "seq_len": 256, "steps": 2, "batch": {"global_batch": 2}},
    },
}


def _kill_during_forced_run(path: Path) -> str:
    """`--node pretrain` in another process, killed with SIGKILL once a DeepSpeed state is saved; its orphaned
    launcher and ranks are frozen, so the next run must stop them itself. Returns the killed run's spec path."""
    script = (
        "import sys; from flows.validate import load_pipeline; from flows.engine import Engine\n"
        "e = Engine(load_pipeline(sys.argv[1], [])); e.run_node('pretrain', forced=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=ROOT, start_new_session=True)
    outputs = path.parent / "store" / "outputs"
    deadline, killed = time.monotonic() + 900, False  # a background build: nice 10 beside the shared runs
    while time.monotonic() < deadline and proc.poll() is None:
        latest = list(outputs.glob("*/_train/ckpt/latest"))
        if latest and latest[0].read_text().strip() >= "step00000003":
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    proc.wait()
    assert killed, "pretrain ended before it could be killed; raise PRETRAIN_STEPS"
    spec = str(next(outputs.glob("*/_train/spec.json")))
    for pid in launcher_processes(spec):
        os.kill(pid, signal.SIGSTOP)
    return spec


def build(folder: Path) -> dict:
    """The store under ``folder``, built as the module says; returns the pipeline path, the pretrain manifests
    and launch logs of the resumed and the fresh run, and every node's manifest after the run to chat_model."""
    path = write(folder, NODES)
    run(path, to_node="pack")
    spec = _kill_during_forced_run(path)
    try:
        resumed = run(path, node="pretrain")["pretrain"]["manifest"]  # forced again: resumes
    finally:
        kill_launch(spec, timeout_s=5)
    outputs = path.parent / "store" / "outputs"
    resumed_log = (outputs / resumed["fingerprint"] / "_train" / "launch.log").read_text()
    fresh = run(path, node="pretrain")["pretrain"]["manifest"]  # a finished output, forced: from scratch
    fresh_log = (outputs / fresh["fingerprint"] / "_train" / "launch.log").read_text()
    done = run(path, to_node="chat_model")
    return {
        "path": path,
        "resumed": resumed,
        "resumed_log": resumed_log,
        "fresh": fresh,
        "fresh_log": fresh_log,
        "manifests": {n: d["manifest"] for n, d in done.items()},
    }


if __name__ == "__main__":
    folder, result = Path(sys.argv[1]), Path(sys.argv[2])
    built = build(folder)
    tmp = result.with_name(result.name + ".tmp")
    tmp.write_bytes(pickle.dumps(built))
    tmp.rename(result)  # the result appears whole, or not at all
