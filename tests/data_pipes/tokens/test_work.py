"""Phase 1 work files and the repeat draws: EOS appended, empty and zero-epoch documents marked, resumable."""

from __future__ import annotations

import pathlib

import numpy as np
import polars as pl
from tokenizers import Tokenizer

from data_pipes.tokens.mix import repeat_counts
from data_pipes.tokens.work import TokenizeJob, tokenize_shard, work_paths


def test_tokenize_shard(tmp_path: pathlib.Path, tok_dir: pathlib.Path, tok: Tokenizer) -> None:
    docs = pl.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "text": ["def f():\n    return 1\n", "", "plain text", "x"],
            "source": ["s"] * 4,
            "epochs": [1.0, 1.0, 0.0, 2.0],
            "bucket": [1, 2, 3, None],
        }
    )
    shard = tmp_path / "in.parquet"
    docs.write_parquet(shard)
    job = TokenizeJob(0, str(shard), "n", 1.0, str(tok_dir / "tokenizer.json"), str(tmp_path / "out"), seed=1)
    first = tokenize_shard(job)
    assert not first["reused"] and tokenize_shard(job)["reused"]
    tokens_path, meta_path = work_paths(job.out_dir, 0)
    meta = pl.read_parquet(meta_path)
    tokens = np.load(tokens_path)
    eos = tok.token_to_id("<|endoftext|>")
    assert meta["reason"].to_list() == [None, "pack_empty", "pack_epochs_zero", None]
    assert meta["repeats"].to_list() == [1, 0, 0, 2]
    assert meta["bucket"].to_list() == ["1", "2", "3", ""]
    for (off, n), text in zip(meta.select("offset", "n_tokens").iter_rows(), docs["text"], strict=True):
        assert tokens[off : off + n].tolist() == [*tok.encode(text, add_special_tokens=False).ids, eos]


def test_repeat_counts_expectation() -> None:
    ids = [f"doc{i}" for i in range(20_000)]
    counts = repeat_counts(ids, np.full(len(ids), 1.6), 1.5, "web", seed=3)  # target 2.4
    assert set(counts.tolist()) == {2, 3}
    assert abs(counts.mean() - 2.4) < 0.02
    again = repeat_counts(ids[::-1], np.full(len(ids), 1.6), 1.5, "web", seed=3)[::-1]
    assert np.array_equal(counts, again)  # a document's draw does not depend on order
