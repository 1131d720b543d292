"""Bad training data is caught before training, naming the file and the fix: token ids outside the vocabulary,
seq_len beyond the model's positions, a tokenizer other than the packing one, inconsistent rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from model.config import model_config
from model.train.data import shard_files
from model.train.validate import DataError, check_shards, check_tokenizer, packed_tokenizer, tokenizer_hash


def test_good_shards_pass(store: dict) -> None:
    files = shard_files([str(store["packed"])])
    assert check_shards(files, model_config("debug")) == 64
    assert check_tokenizer([str(store["packed"])], str(store["tokenizer"])) == []
    rec = packed_tokenizer(str(store["packed"]))
    assert rec is not None and rec.node == "tokenizer" and rec.path.endswith("tokenizer.json")


def test_token_ids_outside_the_vocabulary(store: dict) -> None:
    files = shard_files([str(store["packed"])])
    cfg = model_config("debug", vocab_size=300)
    with pytest.raises(DataError) as err:
        check_shards(files, cfg, flavour="debug")
    msg = str(err.value)
    assert files[0] in msg and "outside the debug model's vocabulary of 300" in msg
    assert "model.overrides.vocab_size" in msg
    with pytest.raises(DataError, match=r"set params\.overrides\.vocab_size to at least"):
        check_shards(files, cfg, flavour="debug", overrides="params.overrides")  # a pipeline node's key


def test_seq_len_beyond_positions(store: dict) -> None:
    files = shard_files([str(store["packed"])])
    with pytest.raises(
        DataError, match="max_position_embeddings 32; set model.overrides.max_position_embeddings"
    ):
        check_shards(files, model_config("debug", max_position_embeddings=32))


def test_other_tokenizer(store: dict, tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        check_tokenizer([str(store["packed"])], str(store["other_tokenizer"]))
    msg = str(err.value)
    assert str(store["packed"]) in msg and "different tokenizer" in msg and "data.tokenizer" in msg
    # the same tokenizer re-saved with other whitespace still matches (content hash, not bytes)
    copy = tmp_path / "tok"
    shutil.copytree(store["tokenizer"], copy)
    data = json.loads((copy / "tokenizer.json").read_text())
    (copy / "tokenizer.json").write_text(json.dumps(data, indent=2))
    assert tokenizer_hash(str(copy)) == tokenizer_hash(str(store["tokenizer"]))
    assert check_tokenizer([str(store["packed"])], str(copy)) == []
    # shards outside a store cannot be checked: said, not silently passed
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(shard_files([str(store["packed"])])[0], loose / "part-00000.parquet")
    assert "not checked" in check_tokenizer([str(loose)], str(copy))[0]


def test_rows_inconsistent_with_doc_lens(store: dict, tmp_path: Path) -> None:
    table = pq.read_table(shard_files([str(store["packed"])])[0])
    n_pad = table.column("n_pad").to_pylist()
    n_pad[2] += 1
    bad = table.set_column(table.schema.get_field_index("n_pad"), "n_pad", pa.array(n_pad, pa.int32()))
    path = tmp_path / "part-00000.parquet"
    pq.write_table(bad, path)
    with pytest.raises(DataError, match=r"row 2 has sum\(doc_lens\)"):
        check_shards([str(path)], model_config("debug"))
