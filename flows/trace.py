"""Provenance of packed rows, read from the store: what ``arcflow trace PACK_NODE --row N`` prints, and the
helpers every trace shares (the stored output a node is traced in, the errors).

:func:`trace_row` takes one row of a ``pack`` node (docs/PACKED_TOKENS.md) apart: each segment with its token range
in the row, its offset inside its document, the document id, the input node it came from, its source and bucket,
and where the document came from. The document row is looked up by id in the exact output of that input node the
pack consumed (the fingerprint in the pack's manifest); when that row names neither a ``url`` nor a ``path`` (a
column, or ``meta.path``), in that node's own inputs, and so on back to the source (:func:`find_documents`; ids
are stable through filters, docs/CONTRACTS.md). A preview decodes the segment's tokens with the pack's tokenizer
input. Training stages are traced by :mod:`flows.trace_training`; the CLI prints with :mod:`flows.trace_render`.

Every failure is a :class:`TraceError` with the message to print and the CLI's exit code.
"""

from __future__ import annotations

import json
import os
import re
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
    return Stored(node, manifest["kind"], fp, manifest, engine.store.materialize(fp), plan.status)


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
    total = row_count(entries)
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


def row_count(entries: list[dict[str, Any]]) -> int:
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
            out_dir = store.materialize(fp)
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
    out_dir = store.materialize(fingerprint)
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
