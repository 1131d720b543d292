"""pretrain and midtrain with ``init_from``: the tokenizer their packed shards were made with must be the one the
parent checkpoint was trained with (its exported tokenizer.json), else the node stops before training, naming the
pack node, both tokenizer files and the fix. Inputs are laid out as the store hands them to the kind (the SFT
check's fixtures of test_train_kinds; fast: no training)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks._train_run import StageInputError, resolve, validate
from tasks.base import DataType, InputRef, RunContext
from tasks.registry import get_kind
from tests.tasks.test_train_kinds import TEXT, _parent_checkpoint, _store_output, _tokenizer_input

SEQ_LEN = 64
ROWS = 3


def _pack_input(outputs: Path, tok: InputRef) -> InputRef:
    """A pack node's output packed with the tokenizer input ``tok``: rows of ``SEQ_LEN`` ids, one document each."""
    folder = _store_output(outputs, f"fp_pack_{tok.name}", "packed_tokens", [(tok.name, Path(tok.path).name)])
    shard = folder / "part-00000.parquet"
    ids = [[(r + i) % 200 for i in range(SEQ_LEN)] for r in range(ROWS)]
    table = pa.table(
        {
            "input_ids": pa.array(ids, pa.list_(pa.int32())),
            "doc_lens": pa.array([[SEQ_LEN]] * ROWS, pa.list_(pa.int32())),
            "n_pad": pa.array([0] * ROWS, pa.int32()),
        }
    )
    pq.write_table(table, shard)
    return InputRef("pack", DataType.PACKED_TOKENS, str(folder), (str(shard),), (ROWS,), f"h_pack_{tok.name}")


def _ctx(tmp: Path, kind: str, inputs: list[InputRef]) -> RunContext:
    params = get_kind(kind).Params.model_validate({"steps": 1, "init_from": "midtrain"})
    out = tmp / f"out_{kind}"
    out.mkdir(exist_ok=True)
    return RunContext(f"{kind}_node", params, inputs, str(out), 0, map=None, run_shards=None)  # type: ignore[arg-type]


def _fails(ctx: RunContext, kind: str) -> str:
    with pytest.raises(StageInputError) as info:
        get_kind(kind).run(ctx)
    assert not (Path(ctx.out_dir) / "_train" / "launch.log").exists(), "it must fail before launch"
    return str(info.value)


@pytest.mark.parametrize("kind", ["pretrain", "midtrain"])
def test_packing_tokenizer_other_than_the_parent_checkpoints(tmp_path: Path, kind: str) -> None:
    """Shards packed with 'tok3' under a parent trained with 'tokenizer' fail with or without a tokenizer input
    (with 'tok3' as the input, the shards agree with it and nothing else noticed); the parent's own tokenizer
    passes."""
    outputs = tmp_path / "store" / "outputs"
    tok = _tokenizer_input(outputs, "tokenizer", TEXT, 300)
    tok3 = _tokenizer_input(outputs, "tok3", TEXT + " six seven eight nine ten " * 3, 1024)
    parent = _parent_checkpoint(outputs, tok)
    parent_file = str(Path(parent.path) / "tokenizer.json")
    tok3_file = str(Path(tok3.path) / "tokenizer" / "tokenizer.json")
    for inputs in ([_pack_input(outputs, tok3), parent], [_pack_input(outputs, tok3), tok3, parent]):
        msg = _fails(_ctx(tmp_path, kind, inputs), kind)
        assert msg.startswith(f"node '{kind}_node': repack 'pack' with 'tokenizer'"), msg
        assert "init_from a checkpoint trained with 'tok3':" in msg and "checkpoint 'midtrain'" in msg, msg
        assert parent_file in msg and tok3_file in msg and msg.count("sha256 ") == 2, msg
        # with 'tok3' as the tokenizer input too, the one message asks for both changes (not one per run)
        both = "repack 'pack' with 'tokenizer' and give this node 'tokenizer' as its tokenizer input in place of 'tok3'"
        assert (both in msg) == (tok3 in inputs), msg
    for inputs in ([_pack_input(outputs, tok), parent], [_pack_input(outputs, tok), tok, parent]):
        ok = _ctx(tmp_path, kind, inputs)
        assert validate(ok, resolve(ok, kind)) == ROWS


def test_tokenizer_input_other_than_the_parent_checkpoints(tmp_path: Path) -> None:
    """Hand-made shards (no pack manifest) with a tokenizer input other than the parent's: the input is checked
    against the parent as SFT's is."""
    outputs = tmp_path / "store" / "outputs"
    tok = _tokenizer_input(outputs, "tokenizer", TEXT, 300)
    tok3 = _tokenizer_input(outputs, "tok3", TEXT + " six seven eight nine ten " * 3, 1024)
    parent = _parent_checkpoint(outputs, tok)
    pack = _pack_input(outputs, tok3)
    (Path(pack.path) / "manifest.json").unlink()
    msg = _fails(_ctx(tmp_path, "pretrain", [pack, tok3, parent]), "pretrain")
    assert msg.startswith("node 'pretrain_node': give this node 'tokenizer' as its tokenizer input"), msg
    assert "'tok3'" in msg and "checkpoint 'midtrain'" in msg, msg


@pytest.mark.parametrize("kind", ["pretrain", "midtrain"])
def test_pack_and_tokenizer_input_each_other_than_the_parent_checkpoints(tmp_path: Path, kind: str) -> None:
    """Shards packed with 'tok3', a tokenizer input 'tok4', a parent trained with 'tokenizer': the first message
    names every change of either fix (repack and change the tokenizer input; or another checkpoint and the
    tokenizer input the shards were packed with) and the three hashes; after those changes the check passes."""
    outputs = tmp_path / "store" / "outputs"
    tok = _tokenizer_input(outputs, "tokenizer", TEXT, 300)
    tok3 = _tokenizer_input(outputs, "tok3", TEXT + " six seven eight nine ten " * 3, 1024)
    tok4 = _tokenizer_input(outputs, "tok4", TEXT + " eleven twelve thirteen " * 3, 1024)
    parent = _parent_checkpoint(outputs, tok)
    msg = _fails(_ctx(tmp_path, kind, [_pack_input(outputs, tok3), tok4, parent]), kind)
    assert msg.startswith(
        f"node '{kind}_node': repack 'pack' with 'tokenizer' and give this node 'tokenizer' as its tokenizer input "
        "in place of 'tok4', or init_from a checkpoint trained with 'tok3' and give this node 'tok3' as its "
        "tokenizer input in place of 'tok4': "
    ), msg
    assert "this node's tokenizer input 'tok4' is sha256 " in msg and msg.count("sha256 ") == 3, msg
    ok = _ctx(tmp_path, kind, [_pack_input(outputs, tok), tok, parent])
    assert validate(ok, resolve(ok, kind)) == ROWS
