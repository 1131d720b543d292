"""Packed-row data loading for training: a seeded global sample order over packed_tokens shards
(docs/PACKED_TOKENS.md), per-rank slices of each global batch, and the tensors one micro-batch needs.

Order. The shards are read in the order given; their rows are numbered ``0 .. N-1`` across them. Epoch ``e``
visits the rows in ``np.random.default_rng([seed, e]).permutation(N)`` order (or in file order with
``shuffle=False``), so global sample ``i`` is row ``perm_{i // N}[i % N]``. The order depends on the seed and the
rows only, never on the number of ranks.

Batches. Global batch ``b`` of ``G`` samples is the sample range ``[start, start + G)``; rank ``r`` of ``w`` takes
the contiguous slice ``[start + r*G/w, start + (r+1)*G/w)`` and cuts it into micro-batches of ``m`` rows, so the
micro-batches (the unit of a forward pass) are the same at any rank count, and gradient accumulation makes up the
rest (``G / (m * w)`` micro-batches per rank).

Rows. ``position_ids`` restart at 0 at every segment start (cumulative ``doc_lens``; the padding tail counts on
from 0 as one more segment, as the model does). ``labels`` follow transformers' convention (unshifted, ``-100`` =
no loss): ``-100`` on the ``n_pad`` padding tail, on the first token of every segment (predicting it would cross a
document boundary) and, when the shard has a ``loss_mask`` column (SFT rows, :mod:`model.train.sft`), wherever the
mask is 0. The model also masks boundary-crossing targets itself; doing it in the labels too keeps the count of
loss tokens known before the forward pass, which the global-batch loss weighting needs.

Resume. :meth:`PackedLoader.state_dict` is a small dict (seed, rows, a digest of the shard list, the next sample);
:meth:`PackedLoader.load_state_dict` refuses a state from other data, and the next batch is the exact next sample.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from glob import glob

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

IGNORE = -100
_COLUMNS = ["input_ids", "doc_lens", "n_pad"]


def shard_files(paths: Sequence[str]) -> list[str]:
    """The Parquet files of ``paths`` in order: a file stays itself, a folder gives its ``part-*.parquet``
    sorted by name. A path that is neither, or a folder without shards, is an error naming it."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob(os.path.join(path, "part-*.parquet")))
            if not found:
                raise FileNotFoundError(
                    f"{path}: no part-*.parquet shards in this folder; point data.shards at a pack node's output"
                )
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such shard file or folder (data.shards)")
    return files


@dataclass
class MicroBatch:
    """One forward pass worth of rows. Shapes: [m, S]."""

    input_ids: torch.Tensor  # int64
    labels: torch.Tensor  # int64, -100 = no loss (unshifted, HF convention)
    position_ids: torch.Tensor  # int64, restarting at each segment
    doc_lens: list[list[int]]  # segment lengths per row (padding excluded)
    samples: list[int]  # global sample index of each row
    rows: list[int]  # global row index (across shards) of each row

    @property
    def n_targets(self) -> int:
        """Loss tokens: positions t whose target labels[t+1] counts (what the model's ``n_tokens`` reports)."""
        return int((self.labels[:, 1:] != IGNORE).sum())

    @property
    def n_real(self) -> int:
        """Non-padding tokens."""
        return sum(sum(lens) for lens in self.doc_lens)


def batch_rows_at(
    samples: int, seq_len: int, global_batch: int, start: int | None, warmup_tokens: int, multiple: int
) -> int:
    """Rows in the next global batch after ``samples`` rows were consumed: ``global_batch``, or during a batch
    warm-up (``start`` rows, growing linearly over ``warmup_tokens`` row tokens, ``model.schedule``) a multiple
    of ``multiple`` (micro_batch x ranks). A pure function of the samples consumed, so resume reproduces it; a
    different rank count can round warm-up batches differently."""
    from model.schedule import batch_tokens_at

    if start is None or warmup_tokens <= 0:
        return global_batch
    tokens = batch_tokens_at(
        samples * seq_len,
        start=start * seq_len,
        end=global_batch * seq_len,
        warmup_tokens=warmup_tokens,
        multiple=multiple * seq_len,
    )
    return tokens // seq_len


def position_ids_of(doc_lens: Sequence[int], seq_len: int) -> np.ndarray:
    """[seq_len] int64 positions restarting at 0 at every segment; the padding tail is one more segment."""
    pad = seq_len - int(sum(doc_lens))
    parts = [int(n) for n in doc_lens] + ([pad] if pad > 0 else [])
    return np.concatenate([np.arange(n, dtype=np.int64) for n in parts]) if parts else np.zeros(0, np.int64)


def labels_of(
    input_ids: np.ndarray, doc_lens: Sequence[int], n_pad: int, loss_mask: np.ndarray | None = None
) -> np.ndarray:
    """[S] int64 labels: the ids, with -100 on the padding tail, on each segment's first token and where
    ``loss_mask`` is 0."""
    labels = input_ids.astype(np.int64, copy=True)
    s = len(labels)
    if n_pad:
        labels[s - n_pad :] = IGNORE
    starts = np.cumsum([0, *[int(n) for n in doc_lens[:-1]]]) if len(doc_lens) else np.zeros(0, np.int64)
    labels[starts] = IGNORE
    if loss_mask is not None:
        labels[np.asarray(loss_mask) == 0] = IGNORE
    return labels


class PackedRows:
    """Random access to the rows of packed shards (a few decoded shards kept in memory)."""

    def __init__(self, files: Sequence[str], cache_shards: int = 4) -> None:
        self.files = list(files)
        self.counts = [pq.ParquetFile(f).metadata.num_rows for f in self.files]
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)
        self._cache: OrderedDict[int, dict[str, object]] = OrderedDict()
        self._cache_size = max(1, cache_shards)
        schema = pq.read_schema(self.files[0]) if self.files else pa.schema([])
        self.has_loss_mask = "loss_mask" in schema.names

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, row: int) -> tuple[int, int]:
        """(shard index, row inside it) of global row ``row``."""
        k = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return k, int(row - self.offsets[k])

    def _shard(self, k: int) -> dict[str, object]:
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        cols = _COLUMNS + (["loss_mask"] if self.has_loss_mask else [])
        table = pq.read_table(self.files[k], columns=cols)
        ids = table.column("input_ids").combine_chunks()
        seq_len = len(ids[0]) if len(ids) else 0
        data: dict[str, object] = {
            "input_ids": ids.values.to_numpy().reshape(-1, seq_len)
            if seq_len
            else np.zeros((0, 0), np.int32),
            "doc_lens": table.column("doc_lens").to_pylist(),
            "n_pad": table.column("n_pad").to_numpy(),
        }
        if self.has_loss_mask:
            mask = table.column("loss_mask").combine_chunks()
            data["loss_mask"] = mask.values.to_numpy(zero_copy_only=False).reshape(-1, seq_len)
        self._cache[k] = data
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data

    def row(self, row: int) -> tuple[np.ndarray, list[int], int, np.ndarray | None]:
        """(input_ids [S], doc_lens, n_pad, loss_mask [S] or None) of global row ``row``."""
        k, i = self.locate(row)
        data = self._shard(k)
        mask = data["loss_mask"][i] if "loss_mask" in data else None  # type: ignore[index]
        return data["input_ids"][i], list(data["doc_lens"][i]), int(data["n_pad"][i]), mask  # type: ignore[index]

    def digest(self) -> str:
        """Identifies the row set: shard file names and row counts, in order (not their folders)."""
        text = "\n".join(f"{os.path.basename(f)}:{n}" for f, n in zip(self.files, self.counts, strict=True))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class PackedLoader:
    """Per-rank micro-batches of a seeded global sample order; see the module docstring."""

    def __init__(
        self,
        files: Sequence[str],
        *,
        seed: int,
        micro_batch: int,
        rank: int = 0,
        world: int = 1,
        shuffle: bool = True,
    ) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is outside a world of {world}")
        self.rows = PackedRows(files)
        if len(self.rows) == 0:
            raise ValueError(f"the shards {list(files)} hold no rows; nothing to train on")
        self.seed, self.micro_batch, self.rank, self.world, self.shuffle = (
            seed,
            micro_batch,
            rank,
            world,
            shuffle,
        )
        self.sample = 0  # the next global sample index
        self._perm: tuple[int, np.ndarray] | None = None

    # ---- order ---------------------------------------------------------------------------------------------
    def row_of(self, sample: int) -> int:
        """Global row index of global sample ``sample``."""
        n = len(self.rows)
        epoch, k = divmod(sample, n)
        if not self.shuffle:
            return k
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        return int(self._perm[1][k])

    def epoch(self) -> float:
        """Samples consumed, in epochs."""
        return self.sample / len(self.rows)

    # ---- batches -------------------------------------------------------------------------------------------
    def check_batch(self, global_batch: int) -> int:
        """Micro-batches per rank for ``global_batch`` samples (an error when it does not divide evenly)."""
        per_step = self.micro_batch * self.world
        if global_batch <= 0 or global_batch % per_step:
            raise ValueError(
                f"global batch {global_batch} must be a positive multiple of micro_batch x ranks = "
                f"{self.micro_batch} x {self.world} = {per_step}; change batch.global_batch or batch.micro_batch"
            )
        return global_batch // per_step

    def next_batch(self, global_batch: int) -> list[MicroBatch]:
        """This rank's micro-batches of the next global batch of ``global_batch`` samples; advances the state."""
        n_micro = self.check_batch(global_batch)
        per_rank = global_batch // self.world
        first = self.sample + self.rank * per_rank
        out = [
            self.micro(list(range(first + j * self.micro_batch, first + (j + 1) * self.micro_batch)))
            for j in range(n_micro)
        ]
        self.sample += global_batch
        return out

    def micro(self, samples: list[int]) -> MicroBatch:
        """The :class:`MicroBatch` of global samples ``samples``."""
        ids, labels, pos, lens, rows = [], [], [], [], []
        for sample in samples:
            row = self.row_of(sample)
            x, doc_lens, n_pad, mask = self.rows.row(row)
            s = len(x)
            ids.append(x.astype(np.int64))
            labels.append(labels_of(x, doc_lens, n_pad, mask))
            pos.append(position_ids_of(doc_lens, s))
            lens.append(doc_lens)
            rows.append(row)
        return MicroBatch(
            torch.from_numpy(np.stack(ids)),
            torch.from_numpy(np.stack(labels)),
            torch.from_numpy(np.stack(pos)),
            lens,
            list(samples),
            rows,
        )

    def consumed(self) -> list[dict[str, object]]:
        """Per shard file: its rows and how many samples the run drew from it so far (all epochs), the record a
        stage keeps of what it trained on."""
        n, k = len(self.rows), len(self.rows.files)
        full, rem = divmod(self.sample, n)
        counts = np.asarray(self.rows.counts, dtype=np.int64) * full
        if rem:
            rows = np.array([self.row_of(full * n + i) for i in range(rem)], dtype=np.int64)
            shard = np.searchsorted(self.rows.offsets, rows, side="right") - 1
            counts = counts + np.bincount(shard, minlength=k)
        return [
            {"file": f, "rows": int(r), "samples": int(c)}
            for f, r, c in zip(self.rows.files, self.rows.counts, counts.tolist(), strict=True)
        ]

    # ---- resume --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        return {
            "sample": self.sample,
            "seed": self.seed,
            "rows": len(self.rows),
            "shards": self.rows.digest(),
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        mine = self.state_dict()
        different = [k for k in ("seed", "rows", "shards", "shuffle") if state.get(k) != mine[k]]
        if different:
            raise ValueError(
                "the checkpoint's data loader state is for other data: "
                + ", ".join(f"{k} {state.get(k)!r} (now {mine[k]!r})" for k in different)
                + "; resume with the same data.shards and seed, or start in a fresh checkpoint folder"
            )
        self.sample = int(state["sample"])  # type: ignore[arg-type]
