"""A training stage run as a kind (tasks/train.py, the real DeepSpeed launcher on CPU) whose loss turns non-finite:
the node fails with an error naming the node and the step, and the last good DeepSpeed checkpoint stays in the
node's work folder (the next run resumes from it)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks._train_run import StageFailedError
from tasks.base import DataType, InputRef, RunContext
from tasks.registry import get_kind
from tests.model.train.conftest import store  # noqa: F401  (the tokenizer and pack nodes, as a store holds them)


@pytest.mark.slow
def test_pretrain_non_finite_loss_names_the_step_and_keeps_the_checkpoint(
    store: dict,  # noqa: F811
    tmp_path: Path,
) -> None:
    tok_node = store["tokenizer"].parent
    pack_node = store["packed"]
    parts = tuple(sorted(str(p) for p in pack_node.glob("part-*.parquet")))
    inputs = [
        InputRef("pack_4k", DataType.PACKED_TOKENS, str(pack_node), parts,
                 tuple(pq.ParquetFile(p).metadata.num_rows for p in parts), "h1"),
        InputRef("tokenizer", DataType.TOKENIZER, str(tok_node), (str(tok_node / "part-00000.parquet"),), (1,), "h2"),
    ]  # fmt: skip
    kind = get_kind("pretrain")
    params = kind.Params.model_validate(
        {
            "steps": 6,
            "batch": {"global_batch": 2, "micro_batch": 1},
            "optim": {"name": "adamw", "lr": 1e30, "clip": 0},  # the first step blows the weights up
            "schedule": {"floor": 0},
            "checkpoint_every": 1,
        }
    )
    out = tmp_path / "out"
    out.mkdir()
    ctx = RunContext("pretrain", params, inputs, str(out), 0, map=None, run_shards=None)  # type: ignore[arg-type]
    with pytest.raises(StageFailedError) as info:
        kind.run(ctx)
    msg = str(info.value)
    assert msg.startswith("node 'pretrain': training failed (exit 1): FloatingPointError: step 2: loss nan")
    assert "last checkpoint" in msg and "launch.log" in msg
    ckpt = out / "_train" / "ckpt"
    assert (ckpt / "latest").read_text() == "step00000001"  # the last good state, for the next run to resume
    assert (ckpt / "step00000001" / "mp_rank_00_model_states.pt").is_file()
    assert not (out / "lineage.json").exists()  # no output was written
