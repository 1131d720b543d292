"""What a training-stage kind does on the driver: resolve its inputs into the launcher's JSON spec, check the data
before any rank starts, run the DeepSpeed launcher as a subprocess while streaming its metrics, and write the
node's output.

Layout of a stage's output folder (``outputs/<fingerprint>/``)::

    config.json, model.safetensors, ...   the final HF folder (AutoModelForCausalLM / AutoTokenizer load it)
    tokenizer.json, chat_template.jinja   the tokenizer the stage trained with, with the one chat template
    metrics.parquet                       per-step metrics without the measured columns (tok_s): same bytes on rerun
    lineage.json                          parent checkpoint, the exact shards and samples drawn from each (the
                                          params are in the manifest: a param that changes no weight, such as
                                          checkpoint_every, leaves these bytes alone)
    part-00000.parquet                    one summary row (steps, samples, tokens, final loss)
    reports/                              metrics table and plot
    _train/spec.json                      the spec the launcher ran (rerun by hand: python -m model.train.main)
    _train/ckpt/                          DeepSpeed states (resume after a crash), removed once the stage is done
    _train/metrics.parquet|jsonl          the full metrics, tok/s included (scratch: not in the content hash)
    _train/launch.log                     the launcher's output

A stage killed with ``kill -9`` leaves its ranks running on their own; the next run of the node kills them first
(every process whose command line names this ``_train/spec.json``) and resumes from the last complete DeepSpeed
state.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.base import DataType, InputRef, RunContext

WORK = "_train"
LIVE_EVERY_S = 10.0  # live report refresh while training
DETERMINISTIC = [
    "step",
    "samples",
    "batch",
    "tokens",
    "loss",
    "mtp_loss",
    "aux_loss",
    "lr",
    "grad_norm",
    "max_vio",
]


class StageInputError(ValueError):
    """Bad input of a training stage, caught before training: names the node, the file and the fix."""


class StageFailedError(RuntimeError):
    """The launcher's ranks failed; the message holds the node, the error and where the log is."""


@dataclass
class Stage:
    """A resolved stage: the spec it runs and what the output records."""

    spec: dict[str, Any]
    work: str
    parent: InputRef | None
    data_inputs: list[InputRef]
    tokenizer: str | None


def tokenizer_dir(inp: InputRef) -> str:
    from tasks.tokenizer_train import tokenizer_json

    return os.path.dirname(tokenizer_json(inp))


def resolve(ctx: RunContext, kind: str) -> Stage:
    """The JSON spec of this stage from its params and inputs (model, data, batch, optimizer, checkpoints)."""
    from model.train.validate import packed_tokenizer

    p: Any = ctx.params
    by_name = {i.name: i for i in ctx.inputs}
    parent = by_name[p.init_from] if p.init_from else None
    if parent is not None and parent.data_type != DataType.CHECKPOINT:
        raise StageInputError(
            f"node {ctx.node_id!r}: init_from {p.init_from!r} is a {parent.data_type.value} node; name the "
            "checkpoint node (pretrain, midtrain, sft) this stage starts from"
        )
    toks = [i for i in ctx.inputs if i.data_type == DataType.TOKENIZER]
    work = os.path.join(ctx.out_dir, WORK)
    overrides = dict(p.overrides)
    data: dict[str, Any] = {"seed": ctx.seed + p.seed, "shuffle": p.shuffle}
    if kind == "sft":
        chats = [i for i in ctx.inputs if i.data_type == DataType.CHAT]
        data_inputs = chats
        tokenizer = tokenizer_dir(toks[0])
        data.update(chat=[s for i in chats for s in i.shards], tokenizer=tokenizer, seq_len=p.seq_len)
    else:
        data_inputs = [i for i in ctx.inputs if i.data_type == DataType.PACKED_TOKENS]
        tokenizer = None
        if toks:
            tokenizer = tokenizer_dir(toks[0])
        elif parent is not None and os.path.isfile(os.path.join(parent.path, "tokenizer.json")):
            tokenizer = parent.path
        else:
            rec = packed_tokenizer(data_inputs[0].path)
            tokenizer = os.path.dirname(rec.path) if rec is not None and rec.path else None
        data.update(shards=[s for i in data_inputs for s in i.shards], tokenizer=tokenizer)
        if kind == "midtrain":
            overrides["rope_theta"] = p.rope_theta
            positions = p.max_position_embeddings
            if positions is None:
                positions = max(_parent_positions(parent), _seq_len(data["shards"]))
            overrides["max_position_embeddings"] = positions
    spec = {
        "model": {
            "flavour": p.flavour,
            "overrides": overrides,
            "init_from": parent.path if parent else None,
            "compile": p.compile,
        },
        "data": data,
        "batch": p.batch.model_dump(mode="json"),
        "optim": p.optim.model_dump(mode="json"),
        "schedule": p.schedule.model_dump(mode="json"),
        "steps": p.steps,
        "zero_stage": p.zero_stage,
        "precision": p.precision,
        "checkpoint": {
            "dir": os.path.join(work, "ckpt"),
            "every": p.checkpoint_every,
            "keep": p.checkpoint_keep,
            "export": ctx.out_dir,
        },
        "metrics": os.path.join(work, "metrics.parquet"),
        "seed": ctx.seed + p.seed,
        "threads": p.threads,
    }
    return Stage(spec, work, parent, data_inputs, tokenizer)


def _parent_positions(parent: InputRef | None) -> int:
    if parent is None:
        return 0
    with open(os.path.join(parent.path, "config.json"), encoding="utf-8") as fh:
        return int(json.load(fh).get("max_position_embeddings", 0))


def _seq_len(files: list[str]) -> int:
    for f in files:
        pf = pq.ParquetFile(f)
        if pf.metadata.num_rows:
            return len(pf.read_row_group(0, columns=["input_ids"]).column(0)[0])
    return 0


def validate(ctx: RunContext, stage: Stage) -> int:
    """Check the data against the model before any rank starts; returns the samples available. Every failure is
    a :class:`StageInputError` naming the node, the file and what to change."""
    from model.train.main import _model_config
    from model.train.spec import TrainSpec
    from model.train.validate import check_shards, check_tokenizer

    node = ctx.node_id
    try:
        spec = TrainSpec.model_validate(stage.spec)
        cfg = _model_config(spec)
        if spec.data.chat:
            from model.train.sft import read_chat_docs
            from model.train.validate import check_checkpoint_tokenizer

            if not any(sum(i.rows) for i in stage.data_inputs):
                names = ", ".join(repr(i.name) for i in stage.data_inputs)
                first = stage.data_inputs[0].name
                what = "the input" if len(stage.data_inputs) == 1 else "the inputs"
                verb = "has" if len(stage.data_inputs) == 1 else "have"
                raise ValueError(
                    f"{what} {names} {verb} no chat records (0 rows kept); see what dropped them with "
                    f"`arcflow show {first}` (its counts and drop reasons) and fix it upstream, or give this "
                    "node a chat input with records"
                )
            if stage.parent is not None and spec.data.tokenizer:
                tok_node = next(i.name for i in ctx.inputs if i.data_type == DataType.TOKENIZER)
                check_checkpoint_tokenizer(
                    stage.parent.path, spec.data.tokenizer, parent=stage.parent.name, tok_node=tok_node
                )
            docs, _stats = read_chat_docs(spec.data.chat, spec.data.tokenizer or "", spec.data.seq_len or 0)
            if max(int(d.ids.max()) for d in docs) >= cfg.vocab_size:
                raise ValueError(
                    f"{spec.data.tokenizer}: the tokenizer makes ids up to {max(int(d.ids.max()) for d in docs)}, "
                    f"outside the {spec.model.flavour} model's vocabulary of {cfg.vocab_size}; set "
                    "overrides.vocab_size to the tokenizer's size or train from a checkpoint made for it"
                )
            if spec.data.seq_len and spec.data.seq_len > cfg.max_position_embeddings:
                raise ValueError(
                    f"params.seq_len {spec.data.seq_len} exceeds the model's max_position_embeddings "
                    f"{cfg.max_position_embeddings}; lower seq_len or raise overrides.max_position_embeddings"
                )
            return len(docs)
        check_parent_tokenizer(ctx, stage)
        if spec.data.tokenizer:
            tok_node = next((i.name for i in ctx.inputs if i.data_type == DataType.TOKENIZER), "tokenizer")
            fix = (
                f"give this node the tokenizer node its pack input was packed with as its tokenizer input, or "
                f"repack that pack node with {tok_node!r}"
            )
            check_tokenizer(spec.data.shards, spec.data.tokenizer, fix=fix)
        check_shards(list(spec.data.shards), cfg, flavour=spec.model.flavour, overrides="params.overrides")
        return sum(sum(i.rows) for i in stage.data_inputs)
    except (ValueError, FileNotFoundError) as exc:
        raise StageInputError(f"node {node!r}: {exc}") from None


def check_parent_tokenizer(ctx: RunContext, stage: Stage) -> None:
    """pretrain and midtrain with ``init_from``: the tokenizer each packed input was packed with, and the tokenizer
    input if there is one, are the tokenizer the parent checkpoint was trained with (its exported
    ``tokenizer.json``); raises :class:`~model.train.validate.DataError` naming the pack node, both tokenizer files
    and every change the fix needs (the repack, and the tokenizer input when it is another tokenizer too)."""
    from model.train.validate import check_checkpoint_tokenizer, packed_tokenizer

    parent = stage.parent
    if parent is None:
        return
    toks = [i for i in ctx.inputs if i.data_type == DataType.TOKENIZER]
    tok_input = (toks[0].name, stage.tokenizer) if toks and stage.tokenizer else None
    for inp in stage.data_inputs:
        rec = packed_tokenizer(inp.path)
        if rec is not None and rec.path is not None:
            check_checkpoint_tokenizer(
                parent.path,
                rec.path,
                parent=parent.name,
                tok_node=rec.node,
                pack_node=inp.name,
                tokenizer_input=tok_input,
            )
    if tok_input is not None:
        check_checkpoint_tokenizer(parent.path, tok_input[1], parent=parent.name, tok_node=tok_input[0])


# ---- the launcher ------------------------------------------------------------------------------------------------
def launcher_processes(spec_path: str) -> list[int]:
    """Live processes of a stage's launch: the launcher, DeepSpeed's per-host launcher and the ranks all carry the
    spec's path in their command line (this process excluded; zombies have none)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid() and spec_path in _cmdline(int(name)):
            out.append(int(name))
    return out


def kill_launch(spec_path: str, timeout_s: float = 30.0) -> None:
    """SIGKILL every process of the launch of ``spec_path`` and wait until they are gone. A run killed with
    ``kill -9`` leaves no launcher behind (model/train/launch_watchdog.py stops the launcher's process group once
    the run is gone), but one an older run left may still run, writing into the work folder: the next run of the
    node calls this first. (A signal to the run's process group, Ctrl-C included, reaches the launcher's group through
    the watchdog.)"""
    deadline = time.monotonic() + timeout_s
    while (pids := launcher_processes(spec_path)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def launch(
    ctx: RunContext,
    stage: Stage,
    ranks: int,
    device: str,
    on_rows: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Write the spec, start the launcher with ``ranks`` ranks and stream ``metrics.jsonl`` to ``on_rows`` until it
    ends; a failure raises :class:`StageFailedError` with the ranks' error."""
    from model.train.launch import launch_command

    p: Any = ctx.params
    work = stage.work
    os.makedirs(work, exist_ok=True)
    spec_path = os.path.join(work, "spec.json")
    kill_launch(spec_path)
    with open(spec_path, "w", encoding="utf-8") as fh:
        json.dump(stage.spec, fh, indent=1, sort_keys=True)
    try:
        plan = launch_command(
            spec_path, ranks, launcher=p.launcher, device=device, hostfile=p.hostfile, threads=p.threads,
            watch_parent=os.getpid(),  # the launcher and its ranks end with this process, `kill -9` included
        )  # fmt: skip
    except ValueError as exc:  # a missing or empty hostfile: before any rank starts
        raise StageInputError(f"node {ctx.node_id!r}: {exc}") from None
    run_launch(ctx, plan, spec_path, work, on_rows, "training")


def run_launch(
    ctx: RunContext, plan: Any, spec_path: str, work: str, on_rows: Callable[[list[dict[str, Any]]], None], what: str
) -> None:  # fmt: skip
    """Run the launch ``plan`` (a :class:`model.train.launch.LaunchPlan`): its output into ``work/launch.log``
    with every exported value masked (DeepSpeed's multi-host runner logs the command that exports the env file's
    lines, the user's keys among them), ``work/metrics.jsonl`` streamed to ``on_rows`` until it ends, its ranks
    stopped after it, its env file deleted; a non-zero exit raises :class:`StageFailedError` with the ranks' error
    (``what``: "training", "GRPO")."""
    from model.train.launch import remove_env_file

    jsonl = os.path.join(work, "metrics.jsonl")
    log_path = os.path.join(work, "launch.log")
    try:
        with open(log_path, "ab") as log:
            log.write(f"\n$ {' '.join(plan.argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(plan.argv, env=plan.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            copier = threading.Thread(target=_copy_masked, args=(proc.stdout, log), daemon=True)
            copier.start()
            with open(os.path.join(work, "launcher.json"), "w", encoding="utf-8") as fh:
                json.dump({"pid": proc.pid, "spec": spec_path}, fh)
            seen = -1
            try:
                while True:
                    code = proc.poll()
                    size = os.path.getsize(jsonl) if os.path.exists(jsonl) else -1
                    if size != seen:
                        seen = size
                        on_rows(read_jsonl(jsonl))
                    if code is not None:
                        break
                    time.sleep(0.5)
            finally:
                _stop(proc, spec_path)  # also ranks that outlive a failed launcher
                copier.join(30)  # the ranks are gone: the pipe is at its end
    finally:
        remove_env_file(plan)
    if code != 0:
        raise StageFailedError(f"node {ctx.node_id!r}: {what} failed (exit {code}): {_error_of(log_path)}")


def _copy_masked(stream: Any, log: Any) -> None:
    """The launcher's output, line by line, into the log with exported values masked."""
    from model.train.launch import mask_exports

    for line in iter(stream.readline, b""):
        log.write(mask_exports(line))
        log.flush()


def _stop(proc: subprocess.Popen, spec_path: str) -> None:
    proc.kill()
    proc.wait()
    kill_launch(spec_path)


def read_jsonl(path: str) -> list[dict[str, Any]]:
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    break  # a line being written
    except OSError:
        pass
    return rows


def _error_of(log_path: str) -> str:
    """The ranks' last error line (``ValueError: ...``) and where the whole log is."""
    with open(log_path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    errors = [
        ln.split("] ", 1)[-1] for ln in lines if "Error: " in ln and not ln.lstrip().startswith("File ")
    ]
    last = errors[-1].strip() if errors else (lines[-1] if lines else "(no output)")
    if last.startswith("[rank") and "]: " in last:  # torch.distributed's prefix of a rank's traceback lines
        last = last.split("]: ", 1)[1]
    return f"{last} (log: {log_path})"


# ---- the output --------------------------------------------------------------------------------------------------
def write_outputs(ctx: RunContext, stage: Stage) -> dict[str, Any]:
    """metrics.parquet (deterministic columns), lineage.json; returns the summary row. The DeepSpeed states go."""
    work = stage.work
    full = pq.read_table(os.path.join(work, "metrics.parquet"))
    pq.write_table(full.select(DETERMINISTIC), os.path.join(ctx.out_dir, "metrics.parquet"))
    with open(os.path.join(work, "ckpt", "consumed.json"), encoding="utf-8") as fh:
        consumed = json.load(fh)
    # inputs by content hash, not fingerprint: a fingerprint changes with code that leaves the bytes alone, and
    # the output must not (early cut-off); the manifest names the fingerprints
    where = {s: (i.name, i.content_hash) for i in stage.data_inputs for s in i.shards}
    shards = []
    for entry in consumed["shards"]:
        node, fp = where.get(entry["file"], ("sft_rows", ""))
        shards.append(
            {"node": node, "content_hash": fp, "file": os.path.basename(entry["file"]),
             "rows": entry["rows"], "samples": entry["samples"]}
        )  # fmt: skip
    if stage.spec["data"].get("chat"):
        shards = [
            {"node": i.name, "content_hash": i.content_hash, "file": os.path.basename(s), "rows": r}
            for i in stage.data_inputs
            for s, r in zip(i.shards, i.rows, strict=True)
        ] + shards
    lineage = {
        "parent": {"node": stage.parent.name, "content_hash": stage.parent.content_hash}
        if stage.parent
        else None,
        "inputs": [{"node": i.name, "content_hash": i.content_hash} for i in ctx.inputs],
        "shards": shards,
        "samples": consumed["samples"],
        "epochs": consumed["epochs"],
    }
    with open(os.path.join(ctx.out_dir, "lineage.json"), "w", encoding="utf-8") as fh:
        json.dump(lineage, fh, indent=1, sort_keys=True)
    last = full.slice(full.num_rows - 1).to_pylist()[0] if full.num_rows else {}
    shutil.rmtree(os.path.join(work, "ckpt"), ignore_errors=True)
    return {
        "steps": int(last.get("step", 0)),
        "samples": int(consumed["samples"]),
        "tokens": int(last.get("tokens", 0)),
        "final_loss": float(last.get("loss", float("nan"))),
        "parent": lineage["parent"]["node"] if lineage["parent"] else None,
    }


def metrics_table(rows: list[dict[str, Any]], last: int = 10, measured: bool = False) -> list[dict[str, Any]]:
    """The last ``last`` metrics rows, rounded for reading; ``measured`` adds tok/s (live reports only: the output's
    table must be the same bytes on every run)."""
    keep = [*DETERMINISTIC, "tok_s"] if measured else DETERMINISTIC
    return [
        {k: (round(r[k], 6) if isinstance(r.get(k), float) else r.get(k)) for k in keep} for r in rows[-last:]
    ]


def summary_table(summary: dict[str, Any]) -> pa.Table:
    return pa.Table.from_pylist([summary])
