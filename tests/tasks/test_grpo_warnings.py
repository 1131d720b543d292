"""What the grpo kind says instead of passing silently: val_problems larger than the problems (an error when the
training problems left are fewer than one step's prompts, else a warning) and a run in which no step updated the
policy (every group of every step filtered)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks._grpo_params import GrpoParams
from tasks._grpo_run import split_problems
from tasks._train_run import StageInputError
from tasks.base import DataType


def _ctx(tmp_path: Path, n: int, **params: object) -> SimpleNamespace:
    shard = tmp_path / "part-00000.parquet"
    rows = [
        {"id": f"p{i}", "prompt": f"What is {i}+2?", "answer": str(i + 2), "domain": "math"} for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), shard)
    return SimpleNamespace(
        params=GrpoParams(**params), seed=0, node_id="rl",
        inputs=[SimpleNamespace(data_type=DataType.DOCUMENTS, shards=[str(shard)])],
    )  # fmt: skip


def test_val_problems_beyond_the_problems_is_an_error_naming_node_and_param(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, 7, val_problems=50, rollout={"prompts_per_step": 4})
    with pytest.raises(StageInputError) as caught:
        split_problems(ctx, str(tmp_path / "work"))  # type: ignore[arg-type]
    text = str(caught.value)
    assert text.startswith("node 'rl': params.val_problems is 50 but only 7 problems can be scored")
    assert "6 would be held out and 1 left to train on" in text
    assert (
        "set val_problems to at most 3 (leaving 4 training problems for rollout.prompts_per_step 4)" in text
    )
    # more prompts per step than problems at all: more problems, or no validation
    ctx = _ctx(tmp_path, 7, val_problems=50, rollout={"prompts_per_step": 8})
    with pytest.raises(StageInputError, match="give more problems .at least 9.*or set val_problems: 0"):
        split_problems(ctx, str(tmp_path / "work"))  # type: ignore[arg-type]


def test_a_clip_that_leaves_one_steps_prompts_is_a_warning(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, 7, val_problems=50, rollout={"prompts_per_step": 1})
    split = split_problems(ctx, str(tmp_path / "work"))  # type: ignore[arg-type]
    assert (split["train"], split["val"]) == (1, 6)
    (warning,) = split["warnings"]
    assert "params.val_problems is 50 but only 7 problems" in warning and "at most 6" in warning
    ok = split_problems(_ctx(tmp_path, 7, val_problems=2), str(tmp_path / "work"))  # type: ignore[arg-type]
    assert (ok["train"], ok["val"], ok["warnings"]) == (5, 2, [])


def test_a_run_without_any_update_is_said() -> None:
    from model.rl.main import no_update_stats
    from tasks.grpo import no_update_note

    idle = [{"step": s, "kept_groups": 0, "filtered_share": 1.0, **no_update_stats()} for s in (1, 2, 3)]
    note = no_update_note(idle)
    assert note.startswith(
        "no step updated the policy: 3 of 3 steps filtered (all samples of each prompt got the same reward); "
        "the exported checkpoint equals the initial one"
    )
    assert no_update_note([*idle, {"step": 4, "kept_groups": 2}]) == "" and no_update_note([]) == ""
