"""Checks of training data against the model, run before the first step: each failure is a
:class:`DataError` naming the file and what to change.

- every shard's rows are ``seq_len`` long (one ``seq_len`` for all shards) and ``sum(doc_lens) + n_pad`` equals it;
- ``seq_len`` fits the model's positions (``max_position_embeddings``);
- every token id is inside the model's vocabulary;
- the tokenizer the shards were packed with is the one the run trains with;
- the tokenizer a stage trains with (for pretrain and midtrain, the one its shards were packed with) is the one
  its parent checkpoint was trained with (the ``tokenizer.json`` the checkpoint exported beside its weights), see
  :func:`check_checkpoint_tokenizer`.

How pack records its tokenizer: a ``pack`` node's output folder holds the store's ``manifest.json``, whose
``inputs`` name each input node's fingerprint; the input whose own ``manifest.json`` says ``output_type:
tokenizer`` is it, and that folder holds the tokenizer (``tokenizer/tokenizer.json``, and a one-row shard with the
file's ``sha256``). :func:`tokenizer_hash` is a content hash of a ``tokenizer.json`` (the parsed JSON re-serialised
with sorted keys), so a tokenizer re-saved by transformers with other whitespace still matches; when the packing
tokenizer's file is gone (garbage-collected), the recorded byte ``sha256`` is compared instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.config import ModelConfig

TOKENIZER_FILE = "tokenizer.json"


class DataError(ValueError):
    """Training data that does not fit the model or the run; the message names the file and the fix."""


@dataclass(frozen=True)
class TokenizerRecord:
    """The tokenizer a pack node was built with."""

    node: str  # the tokenizer node's name in the pack manifest
    path: str | None  # its tokenizer.json, when still on disk
    sha256: str | None  # sha256 of the file's bytes, as the tokenizer node recorded it


def tokenizer_json_path(path: str) -> str:
    """``path`` itself, or ``path/tokenizer.json`` for an HF tokenizer folder."""
    return os.path.join(path, TOKENIZER_FILE) if os.path.isdir(path) else path


def tokenizer_hash(path: str) -> str:
    """Content hash of a tokenizer (folder or ``tokenizer.json``): sha256 of its JSON with sorted keys."""
    file = tokenizer_json_path(path)
    if not os.path.isfile(file):
        raise DataError(f"{file}: no tokenizer.json here; point data.tokenizer at a tokenizer folder or file")
    with open(file, encoding="utf-8") as fh:
        data = json.load(fh)
    canon = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def file_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def packed_tokenizer(shard_dir: str) -> TokenizerRecord | None:
    """The tokenizer a pack output folder was made with, from the store manifests (None when the folder is not a
    store output, e.g. hand-made shards)."""
    manifest_path = os.path.join(shard_dir, "manifest.json")
    if not os.path.isfile(manifest_path):
        return None
    with open(manifest_path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    outputs = os.path.dirname(os.path.abspath(shard_dir))
    for inp in manifest.get("inputs", []):
        folder = os.path.join(outputs, str(inp.get("fingerprint", "")))
        sub = os.path.join(folder, "manifest.json")
        if not os.path.isfile(sub):
            continue
        with open(sub, encoding="utf-8") as fh:
            if json.load(fh).get("output_type") != "tokenizer":
                continue
        tok_dir, sha = "tokenizer", None
        part = os.path.join(folder, "part-00000.parquet")
        if os.path.isfile(part):
            row = pq.read_table(part).to_pylist()
            if row:
                tok_dir, sha = row[0].get("tokenizer_dir") or tok_dir, row[0].get("sha256")
        file = os.path.join(folder, tok_dir, TOKENIZER_FILE)
        return TokenizerRecord(str(inp.get("name")), file if os.path.isfile(file) else None, sha)
    return None


def check_tokenizer(
    shard_dirs: Sequence[str],
    tokenizer: str,
    *,
    fix: str = "set data.tokenizer to the tokenizer the pack node used, or repack with this one",
) -> list[str]:
    """Raise :class:`DataError` when a shard folder was packed with a tokenizer other than ``tokenizer``; the
    message ends with ``fix`` (a pipeline node says it in its own keys). Returns notes for folders whose packing
    tokenizer is not recorded (they cannot be checked)."""
    notes = []
    mine = tokenizer_hash(tokenizer)
    for d in shard_dirs:
        if not os.path.isdir(d):
            d = os.path.dirname(d)
        rec = packed_tokenizer(d)
        if rec is None:
            notes.append(f"{d}: no pack manifest here, so its tokenizer is not checked")
            continue
        if rec.path is not None:
            same = tokenizer_hash(rec.path) == mine
            theirs = rec.path
        elif rec.sha256 is not None:
            same = rec.sha256 == file_sha256(tokenizer_json_path(tokenizer))
            theirs = f"tokenizer node {rec.node!r} (sha256 {rec.sha256[:12]}...)"
        else:
            notes.append(f"{d}: its tokenizer node {rec.node!r} recorded no hash, so it is not checked")
            continue
        if not same:
            raise DataError(
                f"{d}: these shards were packed with {theirs}, but the run trains with "
                f"{tokenizer_json_path(tokenizer)} (a different tokenizer: content hashes differ); {fix}"
            )
    return notes


def check_shards(
    files: Sequence[str], cfg: ModelConfig, *, flavour: str = "model", overrides: str = "model.overrides"
) -> int:
    """Check every shard against ``cfg``; returns the common ``seq_len``. ``overrides``: the key the messages name
    for the model's overrides (a pipeline node's is ``params.overrides``)."""
    seq_len: int | None = None
    first_file = ""
    for f in files:
        table = pq.read_table(f, columns=["input_ids", "doc_lens", "n_pad"])
        if table.num_rows == 0:
            continue
        ids = table.column("input_ids").combine_chunks()
        lens = pc.list_value_length(ids).to_numpy()
        if (lens != lens[0]).any():
            bad = int(np.nonzero(lens != lens[0])[0][0])
            raise DataError(
                f"{f}: row {bad} has {lens[bad]} tokens but row 0 has {lens[0]}; packed rows must all be "
                "seq_len long (repack the shard)"
            )
        n = int(lens[0])
        if seq_len is None:
            seq_len, first_file = n, f
        elif n != seq_len:
            raise DataError(
                f"{f}: rows are {n} tokens but {first_file} has {seq_len}; train one seq_len per stage "
                "(list shards of one pack node in data.shards)"
            )
        if n > cfg.max_position_embeddings:
            raise DataError(
                f"{f}: rows are seq_len {n} tokens but the {flavour} model has max_position_embeddings "
                f"{cfg.max_position_embeddings}; set {overrides}.max_position_embeddings to at least {n} "
                "or pack with a smaller seq_len"
            )
        doc_sum = np.array([sum(x) for x in table.column("doc_lens").to_pylist()], dtype=np.int64)
        n_pad = table.column("n_pad").to_numpy().astype(np.int64)
        if (doc_sum + n_pad != n).any():
            bad = int(np.nonzero(doc_sum + n_pad != n)[0][0])
            raise DataError(
                f"{f}: row {bad} has sum(doc_lens) {doc_sum[bad]} + n_pad {n_pad[bad]} != seq_len {n} "
                "(docs/PACKED_TOKENS.md); repack the shard"
            )
        flat = ids.values.to_numpy().reshape(-1, n)
        hi, lo = int(flat.max()), int(flat.min())
        if hi >= cfg.vocab_size or lo < 0:
            bad_row = int(np.nonzero((flat >= cfg.vocab_size).any(1) | (flat < 0).any(1))[0][0])
            bad_id = hi if hi >= cfg.vocab_size else lo
            raise DataError(
                f"{f}: row {bad_row} holds token id {bad_id}, outside the {flavour} model's vocabulary of "
                f"{cfg.vocab_size} ids; set {overrides}.vocab_size to at least {hi + 1} (the tokenizer's "
                "size) or pack with the tokenizer the model was made for"
            )
    if seq_len is None:
        raise DataError(f"the shards {list(files)} hold no rows; nothing to train on")
    return seq_len


def trained_tokenizer_node(ckpt_dir: str, depth: int = 8) -> str | None:
    """The name of the tokenizer node a store checkpoint was trained with, from the store manifests (None when not
    found): its tokenizer input, else its parent checkpoint's, else the tokenizer its packed shards were made with
    (the order in which a stage picks its tokenizer)."""
    manifest_path = os.path.join(ckpt_dir, "manifest.json")
    if depth <= 0 or not os.path.isfile(manifest_path):
        return None
    with open(manifest_path, encoding="utf-8") as fh:
        inputs = json.load(fh).get("inputs", [])
    outputs = os.path.dirname(os.path.abspath(ckpt_dir))
    by_type: dict[str, list[tuple[str, str]]] = {}
    for inp in inputs:
        folder = os.path.join(outputs, str(inp.get("fingerprint", "")))
        sub = os.path.join(folder, "manifest.json")
        if os.path.isfile(sub):
            with open(sub, encoding="utf-8") as fh:
                kind = str(json.load(fh).get("output_type"))
            by_type.setdefault(kind, []).append((str(inp.get("name")), folder))
    if by_type.get("tokenizer"):
        return by_type["tokenizer"][0][0]
    for _name, folder in by_type.get("checkpoint", []):
        if os.path.isfile(os.path.join(folder, TOKENIZER_FILE)):
            return trained_tokenizer_node(folder, depth - 1)
    for _name, folder in by_type.get("packed_tokens", []):
        rec = packed_tokenizer(folder)
        if rec is not None:
            return rec.node
    return None


def check_checkpoint_tokenizer(
    ckpt_dir: str,
    tokenizer: str,
    *,
    parent: str,
    tok_node: str,
    pack_node: str | None = None,
    tokenizer_input: tuple[str, str] | None = None,
) -> str | None:
    """Raise :class:`DataError` when ``tokenizer`` (the input node ``tok_node``) is not the tokenizer the checkpoint
    ``ckpt_dir`` (node ``parent``) was trained with; compares content hashes of the ``tokenizer.json`` files. The
    message says the fix first. Without ``pack_node`` (SFT, or a tokenizer input) it is short: node names and
    12-hex hashes, no paths. With ``pack_node`` (pretrain, midtrain: ``tokenizer`` is the one that pack node's
    shards were packed with) the fix is to repack, and the message names both tokenizer files; when the node also
    has a tokenizer input (``tokenizer_input``: its node name and path) that is not the checkpoint's, the same
    message asks to change it too, so one run names every change. Returns a note when the checkpoint holds no
    ``tokenizer.json`` (it cannot be checked)."""
    theirs_file = os.path.join(ckpt_dir, TOKENIZER_FILE)
    if not os.path.isfile(theirs_file):
        return f"{ckpt_dir}: checkpoint {parent!r} holds no tokenizer.json, so its tokenizer is not checked"
    mine, theirs = tokenizer_hash(tokenizer), tokenizer_hash(theirs_file)
    if mine == theirs:
        return None
    source = trained_tokenizer_node(ckpt_dir)
    own = {tok_node, tokenizer_input[0] if tokenizer_input else tok_node}
    which = f"{source!r}" if source and source not in own else f"the tokenizer {parent!r} was trained with"
    if pack_node is not None:
        raise DataError(
            _repack_message(
                which=which,
                mine=mine,
                theirs_file=theirs_file,
                theirs=theirs,
                tokenizer=tokenizer,
                tok_node=tok_node,
                pack_node=pack_node,
                tokenizer_input=tokenizer_input,
                parent=parent,
            )
        )
    raise DataError(
        f"give this node {which} as its tokenizer input (checkpoint {parent!r} was trained with tokenizer sha256 "
        f"{theirs[:12]}, this node's {tok_node!r} is sha256 {mine[:12]}), or init_from a checkpoint trained "
        f"with {tok_node!r}"
    )


def _repack_message(
    *,
    which: str,
    mine: str,
    theirs_file: str,
    theirs: str,
    tokenizer: str,
    tok_node: str,
    pack_node: str,
    tokenizer_input: tuple[str, str] | None,
    parent: str,
) -> str:
    """The message of :func:`check_checkpoint_tokenizer` for shards packed with another tokenizer than the
    checkpoint's (``mine`` and ``theirs`` are the two hashes): every change either fix needs, then the files."""
    fix = f"repack {pack_node!r} with {which}"
    alternative = f"init_from a checkpoint trained with {tok_node!r}"
    note = ""
    if tokenizer_input is not None:
        input_node, input_path = tokenizer_input
        input_hash = tokenizer_hash(input_path)
        if input_hash != theirs:
            fix += f" and give this node {which} as its tokenizer input in place of {input_node!r}"
        if input_hash != mine:
            alternative += (
                f" and give this node {tok_node!r} as its tokenizer input in place of {input_node!r}"
            )
        if input_hash not in (mine, theirs):
            note = f"; this node's tokenizer input {input_node!r} is sha256 {input_hash[:12]}"
    return (
        f"{fix}, or {alternative}: {pack_node!r} was packed with {tok_node!r} ({tokenizer_json_path(tokenizer)}, "
        f"sha256 {mine[:12]}) but checkpoint {parent!r} was trained with {theirs_file} (sha256 {theirs[:12]}){note}"
    )
