"""What a training stage consumed, read from the store: ``arcflow trace TRAINING_NODE [--step N]`` and the
training lineage of ``arcflow show``.

:func:`trace_training`: per input shard of a ``pretrain``, ``midtrain`` or ``sft`` node, the rows drawn and how
many times, as ``seq_index`` ranges (the pack node's row numbers). It replays the trainer's own sample order
(:meth:`model.train.data.PackedLoader.row_of`, with the seed and shuffle of the stage's ``_train/spec.json``) over
the shards its ``lineage.json`` names, for the samples the stage consumed; nothing of the order is re-implemented
here. ``step=N`` lists the rows of step N (its sample range from ``metrics.parquet``, so batch warm-up is
included) with the rank and micro-batch each went to. SFT trains on rows it packs from the chat records at start
and removes with its checkpoints; they are rebuilt the same way (``model.train.sft.build_sft_shard``).

:func:`training_lineage`: for ``show``: the parent checkpoint (node, fingerprint, content), the exact input shards
(fingerprint, file, samples drawn), a digest of the code and the package versions.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flows.store import Store
from flows.trace import TRAINING_KINDS, Stored, TraceError, row_count, stored_output, unsupported
from flows.validate import Pipeline


# ---- a training stage --------------------------------------------------------------------------------------------
def trace_training(
    pipeline: Pipeline, node: str, step: int | None = None, store: Store | None = None
) -> dict[str, Any]:
    """Per input shard of the training node ``node``: the rows drawn and how often; with ``step``, that step's
    rows. See the module docstring."""
    stored = stored_output(pipeline, node, store)
    store = Store(pipeline.workdir) if store is None else store
    if stored.manifest.get("output_type") == "packed_tokens":
        total = row_count(store.shards(stored.fingerprint))
        raise TraceError(f"{node} is a pack node: give --row N, a row in 0..{total - 1}")
    if stored.kind not in TRAINING_KINDS:
        raise unsupported(stored, pipeline)
    lineage = _lineage(stored)
    spec = _spec(stored)
    with tempfile.TemporaryDirectory(prefix="arcflow-trace-") as tmp:
        files, shards = _training_files(store, stored, lineage, spec, tmp)
        loader = _loader(files, stored, spec)
        samples = int(lineage["samples"])
        n = len(loader.rows)
        full, rem = divmod(samples, n)
        times = [full] * n
        for i in range(rem):  # the partial last epoch, in the trainer's own order
            times[loader.row_of(full * n + i)] += 1
        seq_index = [_seq_index(f) for f in files]
        for k, shard in enumerate(shards):
            lo, hi = int(loader.rows.offsets[k]), int(loader.rows.offsets[k + 1])
            counts = times[lo:hi]
            shard.update(
                rows=hi - lo,
                seq_index=[seq_index[k][0], seq_index[k][-1]] if hi > lo else [],
                samples_drawn=sum(counts),
                epochs=sum(counts) / max(1, hi - lo),
                times={str(t): counts.count(t) for t in sorted(set(counts))},
                drawn=_ranges([s for s, c in zip(seq_index[k], counts, strict=True) if c > 0]),
            )
        out: dict[str, Any] = {
            "node": node,
            "kind": stored.kind,
            "fingerprint": stored.fingerprint,
            "status": stored.status,
            "samples": samples,
            "rows": n,
            "epochs": samples / n,
            "seed": loader.seed,
            "shuffle": loader.shuffle,
            "order": "model.train.data.PackedLoader.row_of",
            "parent": _parent(stored, lineage),
            "shards": shards,
        }
        if step is not None:
            out["step"] = _step_rows(stored, loader, files, shards, seq_index, step)
    return out


def _lineage(stored: Stored) -> dict[str, Any]:
    path = os.path.join(stored.out_dir, "lineage.json")
    if not os.path.isfile(path):
        raise TraceError(
            f"{stored.node}: its output has no lineage.json ({path}); rerun it with `arcflow run --node "
            f"{stored.node}`",
            code=1,
        )
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _spec(stored: Stored) -> dict[str, Any]:
    """The spec the launcher ran (seed, shuffle, SFT packing); from the manifest when the file is gone."""
    path = os.path.join(stored.out_dir, "_train", "spec.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    params = stored.manifest.get("params", {})
    return {
        "data": {"seed": stored.manifest["seed"] + params.get("seed", 0), "shuffle": params.get("shuffle")}
    }


def _loader(files: list[str], stored: Stored, spec: dict[str, Any]) -> Any:
    from model.train.data import PackedLoader

    data = spec.get("data", {})
    shuffle = data.get("shuffle")
    return PackedLoader(
        files, seed=int(data["seed"]), micro_batch=1, shuffle=True if shuffle is None else bool(shuffle)
    )


def _training_files(
    store: Store, stored: Stored, lineage: dict[str, Any], spec: dict[str, Any], tmp: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """The shard files the trainer read, in its order, and one record per file for the result."""
    inputs = {i["name"]: i for i in stored.manifest.get("inputs", [])}
    trained = [s for s in lineage["shards"] if "samples" in s]
    if stored.kind == "sft":
        return _sft_rows(store, stored, lineage, spec, inputs, tmp)
    files, shards = [], []
    for s in trained:
        fp = inputs.get(s["node"], {}).get("fingerprint")
        path = os.path.join(store.materialize(fp), s["file"]) if fp else ""
        if not os.path.isfile(path):
            raise TraceError(
                f"{stored.node}: its input shard {s['node']}/{s['file']} is no longer in the store (removed by "
                f"`arcflow gc`?); `arcflow run --to {s['node']}` rebuilds it",
                code=1,
            )
        files.append(path)
        shards.append(
            {
                "node": s["node"],
                "fingerprint": fp,
                "file": s["file"],
                "path": path,
                "lineage_samples": int(s["samples"]),
            }
        )
    return files, shards


def _sft_rows(
    store: Store,
    stored: Stored,
    lineage: dict[str, Any],
    spec: dict[str, Any],
    inputs: dict[str, dict[str, Any]],
    tmp: str,
) -> tuple[list[str], list[dict[str, Any]]]:
    """SFT trains on rows it packs from the chat records at start (and removes with its checkpoints): rebuild
    them the same way into ``tmp``."""
    from model.train.sft import build_sft_shard

    data = spec.get("data", {})
    chats = []
    for s in lineage["shards"]:
        if "samples" in s:
            continue
        fp = inputs.get(s["node"], {}).get("fingerprint")
        path = os.path.join(store.materialize(fp), s["file"]) if fp else ""
        if not os.path.isfile(path):
            raise TraceError(
                f"{stored.node}: its chat shard {s['node']}/{s['file']} is no longer in the store; "
                f"`arcflow run --to {s['node']}` rebuilds it",
                code=1,
            )
        chats.append({"node": s["node"], "file": s["file"], "path": path})
    tokenizer = data.get("tokenizer")
    if not tokenizer or not os.path.isdir(tokenizer) or "seq_len" not in data:
        raise TraceError(
            f"{stored.node}: its _train/spec.json (tokenizer, seq_len) is missing; rerun it with "
            f"`arcflow run --node {stored.node}` to trace its SFT rows",
            code=1,
        )
    out = os.path.join(tmp, "sft_rows", "part-00000.parquet")
    build_sft_shard([c["path"] for c in chats], tokenizer, int(data["seq_len"]), int(data["seed"]), out)
    rows = [s for s in lineage["shards"] if "samples" in s]
    return [out], [
        {
            "node": "sft_rows",
            "fingerprint": None,
            "file": os.path.basename(out),
            "path": None,
            "chat_shards": chats,
            "lineage_samples": int(rows[0]["samples"]) if rows else None,
        }
    ]


def _seq_index(path: str) -> list[int]:
    return pq.read_table(path, columns=["seq_index"]).column(0).to_pylist()


def _ranges(values: list[int]) -> list[list[int]]:
    """Sorted ``values`` as inclusive ``[lo, hi]`` runs."""
    out: list[list[int]] = []
    for v in sorted(values):
        if out and v == out[-1][1] + 1:
            out[-1][1] = v
        else:
            out.append([v, v])
    return out


def _parent(stored: Stored, lineage: dict[str, Any]) -> dict[str, Any] | None:
    parent = lineage.get("parent")
    if not parent:
        return None
    inputs = {i["name"]: i for i in stored.manifest.get("inputs", [])}
    return {**parent, "fingerprint": inputs.get(parent["node"], {}).get("fingerprint")}


def _step_rows(
    stored: Stored,
    loader: Any,
    files: list[str],
    shards: list[dict[str, Any]],
    seq_index: list[list[int]],
    step: int,
) -> dict[str, Any]:
    metrics = pq.read_table(
        os.path.join(stored.out_dir, "metrics.parquet"), columns=["step", "samples", "batch"]
    )
    steps = metrics.column("step").to_pylist()
    if step not in steps:
        raise TraceError(
            f"--step {step}: {stored.node} trained steps {steps[0]}..{steps[-1]}; give one of them"
        )
    at = steps.index(step)
    end, size = int(metrics.column("samples")[at].as_py()), int(metrics.column("batch")[at].as_py())
    params = stored.manifest.get("params", {})
    micro = int(params.get("batch", {}).get("micro_batch", 1))
    world = int(
        stored.manifest.get("timings", {}).get("phases", {}).get("ranks", 0) or params.get("ranks") or 1
    )
    per_rank = max(1, size // world)
    # SFT rows name the chat shard file of each record: as node/file where the file name is unique
    by_file = [(c["file"], f"{c['node']}/{c['file']}") for s in shards for c in s.get("chat_shards", [])]
    chat_of = {f: n for f, n in by_file if sum(1 for g, _ in by_file if g == f) == 1}
    rows = []
    tables: dict[int, pa.Table] = {}
    for sample in range(end - size, end):
        row = loader.row_of(sample)
        k, i = loader.rows.locate(row)
        if k not in tables:
            tables[k] = pq.read_table(files[k], columns=["doc_ids", "nodes"])
        offset = sample - (end - size)
        rows.append(
            {
                "sample": sample,
                "rank": offset // per_rank,
                "micro_batch": (offset % per_rank) // micro,
                "node": shards[k]["node"],
                "file": shards[k]["file"],
                "seq_index": seq_index[k][i],
                "doc_ids": tables[k].column("doc_ids")[i].as_py(),
                "nodes": [chat_of.get(n, n) for n in tables[k].column("nodes")[i].as_py()],
            }
        )
    return {"step": step, "samples": [end - size, end], "ranks": world, "micro_batch": micro, "rows": rows}


# ---- show --------------------------------------------------------------------------------------------------------
KEY_MODULES = (
    "tasks.train",
    "tasks._train_run",
    "model.train.main",
    "model.train.data",
    "model.glm",
    "model.moe",
)


def training_lineage(store: Store, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """What produced a training node's checkpoint, for ``show``: parent checkpoint (node, fingerprint,
    content), each input shard (node, fingerprint, file, rows, samples drawn), the code (a digest of every
    module hash in the manifest, and the main modules' hashes), package versions. None for other kinds."""
    if manifest.get("kind") not in TRAINING_KINDS:
        return None
    from flows.fingerprint import canonical_json, sha

    out_dir = store.materialize(manifest["fingerprint"])
    path = os.path.join(out_dir, "lineage.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        lineage = json.load(fh)
    inputs = {i["name"]: i for i in manifest.get("inputs", [])}
    shards = []
    for s in lineage.get("shards", []):
        fp = inputs.get(s["node"], {}).get("fingerprint")
        shards.append(
            {**s, "fingerprint": fp, "path": os.path.join(store.output_dir(fp), s["file"]) if fp else None}
        )
    code = manifest.get("code", {})
    params = manifest.get("params", {})
    return {
        "parent": _parent(
            Stored(manifest["node"], manifest["kind"], manifest["fingerprint"], manifest, out_dir, ""),
            lineage,
        ),
        "init_from": params.get("init_from"),
        "shards": shards,
        "samples": lineage.get("samples"),
        "epochs": lineage.get("epochs"),
        "code": {
            "digest": sha(canonical_json(code)),
            "modules": len(code),
            "main": {m: code[m] for m in KEY_MODULES if m in code},
        },
        "versions": manifest.get("versions", {}),
        "spec": os.path.join(out_dir, "_train", "spec.json"),
    }
