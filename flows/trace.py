"""Provenance of training data, read from the store: what ``arcflow trace`` and ``arcflow show`` print.

* :func:`trace_row`: one row of a ``pack`` node (docs/PACKED_TOKENS.md). Each segment with its token range in the
  row, its offset inside its document, the document id, the input node it came from, its source and bucket, and
  where the document came from: the document row is looked up by id in the exact output of that input node the
  pack consumed (the fingerprint in the pack's manifest), and when that row names neither a ``url`` nor a
  ``meta.path``, in that node's own inputs, and so on back to the source. A preview decodes the segment's tokens
  with the pack's tokenizer input.
* :func:`trace_training`: what a training stage (``pretrain``, ``midtrain``, ``sft``) consumed from each shard:
  the rows drawn and how many times, as ``seq_index`` ranges. It replays the trainer's own sample order
  (:class:`model.train.data.PackedLoader`, with the seed and shuffle of the stage's ``_train/spec.json``) over the
  shards named in its ``lineage.json``, for the samples the stage consumed; ``step=N`` lists the rows of step N
  (its sample range from ``metrics.parquet``) with the rank and micro-batch each went to. SFT rows are rebuilt
  from the chat records exactly as the stage built them (``model.train.sft.build_sft_shard``).
* :func:`training_lineage`: for ``show``: the parent checkpoint, the exact input shards (fingerprint and file,
  samples drawn), a digest of the code and the package versions.

Every failure is a :class:`TraceError` with the message to print and the CLI's exit code.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flows.store import Store
from flows.validate import Pipeline

TRAINING_KINDS = ("pretrain", "midtrain", "sft")
PREVIEW_CHARS = 80
MAX_DEPTH = 16  # how far back through inputs a document's url / path is looked for
_DOC_COLUMNS = ("id", "url", "source", "meta", "path")


class TraceError(Exception):
    """What to tell the user; ``code`` is the CLI's exit status (2: bad usage, 1: nothing stored to trace)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Stored:
    """The stored output of a node that trace reads: the pipeline's up-to-date one, else the node's last."""

    node: str
    kind: str
    fingerprint: str
    manifest: dict[str, Any]
    out_dir: str
    status: str  # up_to_date, or stale / pending when it is the last stored output a run would not reuse


def stored_output(pipeline: Pipeline, node: str, store: Store | None = None) -> Stored:
    """The output ``show`` would show for ``node``; a :class:`TraceError` for an unknown node or one not built."""
    from flows.engine import Engine, unknown_node_message

    if node not in pipeline.nodes:
        raise TraceError(unknown_node_message("trace", node, pipeline.order))
    engine = Engine(pipeline, store)
    try:
        plan = {x.node: x for x in engine.plan()}[node]
        ref = engine.store.read_refs(pipeline.spec.name).get(node, {})
        fp = plan.fingerprint if plan.status == "up_to_date" else ref.get("fingerprint")
        manifest = engine.store.manifest(fp) if fp else None
    finally:
        engine.close()
    if manifest is None or fp is None:
        raise TraceError(
            f"{node} has no stored output yet ({plan.status}); `arcflow run --to {node} -f {pipeline.file}` "
            "builds it",
            code=1,
        )
    return Stored(node, manifest["kind"], fp, manifest, engine.store.output_dir(fp), plan.status)


def unsupported(stored: Stored, pipeline: Pipeline) -> TraceError:
    """The error for a node trace does not cover, saying what it does cover."""
    packs = [n for n in pipeline.order if pipeline.nodes[n].uses == "pack"]
    trains = [n for n in pipeline.order if pipeline.nodes[n].uses in TRAINING_KINDS]
    return TraceError(
        f"{stored.node} is a {stored.kind!r} node ({stored.manifest.get('output_type')}); trace follows packed "
        f"rows (`arcflow trace PACK_NODE --row N`, pack nodes here: {', '.join(packs) or 'none'}) and training "
        f"stages (`arcflow trace TRAINING_NODE [--step N]`, {'/'.join(TRAINING_KINDS)} nodes here: "
        f"{', '.join(trains) or 'none'})"
    )


# ---- a packed row ------------------------------------------------------------------------------------------------
def trace_row(pipeline: Pipeline, node: str, row: int, store: Store | None = None) -> dict[str, Any]:
    """Every segment of row ``row`` (its ``seq_index``) of the pack node ``node``; see the module docstring."""
    stored = stored_output(pipeline, node, store)
    if stored.kind in TRAINING_KINDS:
        raise TraceError(
            f"--row traces a pack node's row; {node} is a training node: `arcflow trace {node}` lists the rows it "
            f"drew from each shard (`--step N`: the rows of step N)"
        )
    if stored.manifest.get("output_type") != "packed_tokens":
        raise unsupported(stored, pipeline)
    store = Store(pipeline.workdir) if store is None else store
    entries = store.shards(stored.fingerprint)
    total = _rows(entries)
    if not 0 <= row < total:
        raise TraceError(f"--row {row}: {node} has {total:,} rows; give a row in 0..{total - 1}")
    base = 0
    for entry in entries:
        n = int(entry.get("rows", entry["kept"]))
        if row < base + n:
            break
        base += n
    path = os.path.join(stored.out_dir, entry["file"])
    data = _read_row(path, row, row - base)
    ids, lens, starts = data["input_ids"], data["doc_lens"], data["doc_starts"]
    inputs = _inputs(store, stored.manifest)
    tok = _tokenizer(store, inputs)
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    for name in sorted(set(data["nodes"])):
        wanted = {d for d, n in zip(data["doc_ids"], data["nodes"], strict=True) if n == name}
        fp = inputs.get(name, {}).get("fingerprint")
        found = find_documents(store, fp, wanted) if fp else {}
        docs.update({(name, d): v for d, v in found.items()})
    segments, at = [], 0
    for i, length in enumerate(lens):
        doc = docs.get((data["nodes"][i], data["doc_ids"][i]), {})
        segments.append(
            {
                "segment": i,
                "tokens": [at, at + length],
                "doc_offset": int(starts[i]),
                "doc_id": data["doc_ids"][i],
                "node": data["nodes"][i],
                "source": data["sources"][i],
                "bucket": data["buckets"][i],
                "url": doc.get("url", ""),
                "path": doc.get("path", ""),
                "found_in": doc.get("found_in"),
                "found": bool(doc),
                "preview": preview(tok.decode(ids[at : at + length], skip_special_tokens=False))
                if tok
                else "",
            }
        )
        at += length
    return {
        "node": node,
        "fingerprint": stored.fingerprint,
        "status": stored.status,
        "row": row,
        "rows": total,
        "shard": entry["file"],
        "seq_len": len(ids),
        "n_pad": int(data["n_pad"]),
        "pad_tokens": [at, len(ids)],
        "segments": segments,
    }


def _rows(entries: list[dict[str, Any]]) -> int:
    return sum(int(e.get("rows", e["kept"])) for e in entries)


def _read_row(path: str, row: int, local: int) -> dict[str, Any]:
    table = pq.read_table(path, filters=[("seq_index", "=", row)])
    if table.num_rows != 1:  # an older shard without usable seq_index statistics: by position
        table = pq.read_table(path).slice(local, 1)
    return table.to_pylist()[0]


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``text`` on one line (whitespace runs as one space), cut to ``limit`` characters."""
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _inputs(store: Store, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> the manifest's input entry plus that input's output type (read from its own manifest)."""
    out = {}
    for entry in manifest.get("inputs", []):
        m = store.manifest(entry["fingerprint"]) or {}
        out[entry["name"]] = {**entry, "output_type": m.get("output_type"), "kind": m.get("kind")}
    return out


def _tokenizer(store: Store, inputs: dict[str, dict[str, Any]]) -> Any:
    from tasks.base import DataType, InputRef
    from tasks.tokenizer_train import tokenizer_json

    for name, entry in inputs.items():
        if entry["output_type"] == DataType.TOKENIZER.value:
            fp = entry["fingerprint"]
            out_dir = store.output_dir(fp)
            shards = tuple(os.path.join(out_dir, s["file"]) for s in store.shards(fp))
            ref = InputRef(name, DataType.TOKENIZER, out_dir, shards, (), entry["content_hash"])
            path = tokenizer_json(ref)
            if os.path.isfile(path):
                from tokenizers import Tokenizer

                return Tokenizer.from_file(path)
    return None


def find_documents(
    store: Store, fingerprint: str, ids: set[str], depth: int = 0
) -> dict[str, dict[str, Any]]:
    """id -> {url, path, source, found_in, fingerprint} of the documents ``ids`` in the output ``fingerprint``;
    those found without a url or path (and those not found) are looked for in that output's inputs, back to the
    sources. Ids are stable through filters (docs/CONTRACTS.md), so the same id names the same document."""
    manifest = store.manifest(fingerprint)
    if manifest is None or manifest.get("output_type") != "documents" or not ids:
        return {}
    out_dir = store.output_dir(fingerprint)
    found: dict[str, dict[str, Any]] = {}
    for entry in store.shards(fingerprint):
        path = os.path.join(out_dir, entry["file"])
        names = pq.read_schema(path).names
        if "id" not in names:
            continue
        table = pq.read_table(path, columns=[c for c in _DOC_COLUMNS if c in names])
        table = table.filter(pc.is_in(table.column("id"), value_set=pa.array(sorted(ids), pa.string())))
        for rec in table.to_pylist():
            meta = _meta(rec.get("meta"))
            found[rec["id"]] = {
                "url": rec.get("url") or "",
                "path": rec.get("path") or meta.get("path") or "",
                "source": rec.get("source") or "",
                "found_in": manifest["node"],
                "fingerprint": fingerprint,
            }
    unresolved = {i for i in ids if not (found.get(i, {}).get("url") or found.get(i, {}).get("path"))}
    if unresolved and depth < MAX_DEPTH:
        for inp in manifest.get("inputs", []):
            deeper = find_documents(store, inp["fingerprint"], unresolved, depth + 1)
            for doc_id, rec in deeper.items():
                if rec["url"] or rec["path"] or doc_id not in found:
                    found[doc_id] = rec
            unresolved -= {i for i, r in deeper.items() if r["url"] or r["path"]}
    return found


def _meta(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if value else {}
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


# ---- a training stage --------------------------------------------------------------------------------------------
def trace_training(
    pipeline: Pipeline, node: str, step: int | None = None, store: Store | None = None
) -> dict[str, Any]:
    """Per input shard of the training node ``node``: the rows drawn and how often; with ``step``, that step's
    rows. See the module docstring."""
    stored = stored_output(pipeline, node, store)
    store = Store(pipeline.workdir) if store is None else store
    if stored.manifest.get("output_type") == "packed_tokens":
        total = _rows(store.shards(stored.fingerprint))
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
        path = os.path.join(store.output_dir(fp), s["file"]) if fp else ""
        if not os.path.isfile(path):
            raise TraceError(
                f"{stored.node}: its input shard {s['node']}/{s['file']} is no longer in the store (removed by "
                f"`arcflow gc`?); `arcflow run --to {s['node']}` rebuilds it",
                code=1,
            )
        files.append(path)
        shards.append({"node": s["node"], "fingerprint": fp, "file": s["file"], "path": path,
                       "lineage_samples": int(s["samples"])})  # fmt: skip
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
        path = os.path.join(store.output_dir(fp), s["file"]) if fp else ""
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
    return [out], [{"node": "sft_rows", "fingerprint": None, "file": os.path.basename(out), "path": None,
                    "chat_shards": chats, "lineage_samples": int(rows[0]["samples"]) if rows else None}]  # fmt: skip


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

    out_dir = store.output_dir(manifest["fingerprint"])
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
        ),  # fmt: skip
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


# ---- rendering (the CLI prints these) ----------------------------------------------------------------------------
MAX_RANGES = 8  # drawn-row ranges shown per shard; --json lists all


def _status_note(result: dict[str, Any]) -> str:
    if result.get("status") in (None, "up_to_date"):
        return ""
    return " [yellow](its last stored output, which a run would not reuse: the node is stale)[/]"


def render_row(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    console.print(
        f"[bold]{result['node']}[/] row {result['row']} of {result['rows']:,} ({result['shard']}, seq_len "
        f"{result['seq_len']}, {result['n_pad']} pad tokens) · fingerprint {result['fingerprint'][:12]}"
        + _status_note(result),
        highlight=False,
        soft_wrap=True,
    )
    table = Table()
    for col, just in (("seg", "right"), ("tokens", "right"), ("doc offset", "right"), ("document", "left"),
                      ("node", "left"), ("source", "left"), ("url / path", "left"), ("preview", "left")):  # fmt: skip
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for s in result["segments"]:
        where = s["url"] or s["path"] or "(not found in the store)"
        if s["url"] and s["path"] and s["path"] not in s["url"]:
            where += f" ({s['path']})"
        if s["found_in"] and s["found_in"] != s["node"]:
            where += f" [via {s['found_in']}]"
        table.add_row(str(s["segment"]), f"{s['tokens'][0]}..{s['tokens'][1] - 1}", str(s["doc_offset"]),
                      s["doc_id"], s["node"], s["source"] + (f"/{s['bucket']}" if s["bucket"] else ""), where,
                      s["preview"])  # fmt: skip
    console.print(table)


def _drawn_text(shard: dict[str, Any]) -> str:
    drawn = shard["drawn"]
    if shard["seq_index"] and drawn == [shard["seq_index"]]:
        return f"all {shard['seq_index'][0]}..{shard['seq_index'][1]}"
    shown = ", ".join(f"{a}" if a == b else f"{a}..{b}" for a, b in drawn[:MAX_RANGES])
    return shown + (f", +{len(drawn) - MAX_RANGES} more" if len(drawn) > MAX_RANGES else "")


def render_training(result: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    order = "shuffled" if result["shuffle"] else "in file order"
    console.print(
        f"[bold]{result['node']}[/] ({result['kind']}): {result['samples']:,} samples = {result['epochs']:.3f} "
        f"epochs of {result['rows']:,} rows, in the trainer's order ({result['order']}, seed {result['seed']}, "
        f"{order}) · fingerprint {result['fingerprint'][:12]}" + _status_note(result),
        highlight=False,
        soft_wrap=True,
    )
    parent = result.get("parent")
    console.print(
        "parent checkpoint: "
        + (
            f"{parent['node']} (fingerprint {str(parent.get('fingerprint'))[:12]}, content "
            f"{parent['content_hash'][:12]})"
            if parent
            else "none (trained from scratch)"
        ),  # fmt: skip
        highlight=False,
    )
    table = Table(title="samples drawn per shard (seq_index: the pack node's row number)")
    for col in ("node", "fingerprint", "shard", "rows (seq_index)", "samples", "epochs", "times drawn: rows",
                "rows drawn"):  # fmt: skip
        table.add_column(col, overflow="fold")
    for s in result["shards"]:
        seq = f"{s['rows']} ({s['seq_index'][0]}..{s['seq_index'][1]})" if s["seq_index"] else "0"
        times = ", ".join(f"{t}x: {n}" for t, n in s["times"].items())
        table.add_row(s["node"], (s["fingerprint"] or "(rebuilt)")[:12], s["file"], seq, str(s["samples_drawn"]),
                      f"{s['epochs']:.3f}", times, _drawn_text(s))  # fmt: skip
    console.print(table)
    if result["kind"] == "sft":
        chats = {c["path"] for s in result["shards"] for c in s.get("chat_shards", [])}
        console.print(f"SFT rows rebuilt from {len(chats)} chat shard(s) exactly as the stage packed them; "
                      "each row's nodes name the chat shard of each record", highlight=False)  # fmt: skip
    mismatch = [s for s in result["shards"] if s.get("lineage_samples") not in (None, s["samples_drawn"])]
    for s in mismatch:
        console.print(f"[red]{s['file']}: lineage.json records {s['lineage_samples']} samples, the replay "
                      f"{s['samples_drawn']}[/]")  # fmt: skip
    step = result.get("step")
    if step:
        table = Table(title=f"step {step['step']}: samples {step['samples'][0]}..{step['samples'][1] - 1} "
                      f"({step['ranks']} rank(s), micro-batches of {step['micro_batch']})")  # fmt: skip
        for col in ("sample", "rank", "micro", "node", "shard", "seq_index", "documents"):
            table.add_column(col, overflow="fold")
        for r in step["rows"]:
            docs = ", ".join(f"{d} ({n})" for d, n in zip(r["doc_ids"], r["nodes"], strict=True))
            table.add_row(str(r["sample"]), str(r["rank"]), str(r["micro_batch"]), r["node"], r["file"],
                          str(r["seq_index"]), docs)  # fmt: skip
        console.print(table)


def render_lineage(lineage: dict[str, Any], console: Any) -> None:
    """The training lineage section of ``show``."""
    from rich.table import Table

    console.print("[bold]training lineage[/] (lineage.json)", highlight=False)
    parent = lineage["parent"]
    console.print(
        "  parent checkpoint (init_from): "
        + (
            f"{parent['node']} · fingerprint {parent.get('fingerprint')} · content {parent['content_hash']}"
            if parent
            else "none (trained from scratch)"
        ),  # fmt: skip
        highlight=False,
        soft_wrap=True,
    )
    epochs = lineage.get("epochs")
    console.print(f"  samples: {lineage.get('samples')} ({epochs:.3f} epochs)" if epochs is not None else "",
                  highlight=False)  # fmt: skip
    table = Table(title="input shards trained on", title_justify="left")
    for col in ("node", "fingerprint", "file", "rows", "samples drawn"):
        table.add_column(col, overflow="fold")
    for s in lineage["shards"]:
        table.add_row(s["node"], s.get("fingerprint") or "(built by the stage)", s["file"], str(s.get("rows", "")),
                      str(s.get("samples", "")))  # fmt: skip
    console.print(table)
    code = lineage["code"]
    console.print(f"  code: {code['modules']} modules, digest {code['digest'][:16]} ("
                  + ", ".join(f"{m} {h[:10]}" for m, h in code["main"].items()) + ")",
                  highlight=False, soft_wrap=True)  # fmt: skip
    console.print("  versions: " + ", ".join(f"{k} {v}" for k, v in sorted(lineage["versions"].items())),
                  highlight=False, soft_wrap=True)  # fmt: skip
    console.print(f"  spec the launcher ran: {lineage['spec']}; `arcflow trace NODE` lists the rows drawn",
                  highlight=False, soft_wrap=True)  # fmt: skip
