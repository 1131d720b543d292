"""Training-stage mistakes that `arcflow validate` reports from the YAML alone, before any upstream node runs:
an unknown model flavour, ``init_from`` naming a node that is not a checkpoint, a global batch that is not a
whole number of micro-batches on every rank, an SFT ``seq_len`` beyond the flavour's positions, a ``grpo``
node whose only documents are a ``files`` node (no ``prompt``). Each problem
names the pipeline file, the YAML line and the key path, says what is wrong and what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.errors import Problem, SpecError
from flows.validate import load_pipeline

PIPELINE = """\
name: t
nodes:
  demo:
    uses: demo_corpus
    params: {parts: [licenses], max_items_per_part: 4}
  tokenizer:
    uses: tokenizer_train
    inputs: [demo]
    params: {vocab_size: 512}
  pack_4k:
    uses: pack
    inputs: [tokenizer, demo]
    params: {seq_len: 64}
  pretrain:
    uses: pretrain
    inputs: [pack_4k]
    params:
      flavour: debug
      batch: {global_batch: 8, micro_batch: 4}
  midtrain:
    uses: midtrain
    inputs: [pack_4k, pretrain]
    params:
      init_from: pretrain
  problems:
    uses: problems
    params:
      reasoning_gym:
        - {name: basic_arithmetic, size: 4, seed: 1}
  chats:
    uses: generate_sft
    inputs: [problems]
    params: {teacher: {kind: procedural}}
  chat_model:
    uses: sft
    inputs: [chats, tokenizer]
    params:
      seq_len: 512
"""


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _problems(tmp_path: Path, text: str) -> tuple[str, list[Problem]]:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_pipeline(str(path))
    return str(path), caught.value.problems


def _one(tmp_path: Path, text: str, needle: str, key: str, parts: list[str]) -> None:
    file, problems = _problems(tmp_path, text)
    rendered = "\n".join(p.render() for p in problems)
    assert len(problems) == 1, rendered
    (problem,) = problems
    assert (problem.file, problem.line, problem.path) == (file, _line(text, needle), key), rendered
    assert problem.render().startswith(f"{file}:{_line(text, needle)}: {key}: "), rendered
    said = f"{problem.message} {problem.hint}"
    for part in parts:
        assert part in said, f"{part!r} not in {said!r}"


def test_the_base_pipeline_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(PIPELINE)
    assert set(load_pipeline(str(path)).nodes) >= {"pretrain", "midtrain", "chat_model"}


def test_unknown_flavour(tmp_path: Path) -> None:
    text = PIPELINE.replace("flavour: debug", "flavour: tinyy")
    _one(
        tmp_path,
        text,
        "flavour: tinyy",
        "nodes.pretrain.params.flavour",
        ["unknown model flavour 'tinyy'", "did you mean 'tiny'?", "air, debug, small, tiny"],
    )


def test_init_from_a_packed_tokens_node(tmp_path: Path) -> None:
    text = PIPELINE.replace("init_from: pretrain", "init_from: pack_4k")
    _one(
        tmp_path,
        text,
        "init_from: pack_4k",
        "nodes.midtrain.params.init_from",
        ["init_from 'pack_4k' is a packed_tokens node (pack), not a checkpoint", "set `init_from: pretrain`"],
    )


def test_init_from_with_no_checkpoint_input(tmp_path: Path) -> None:
    text = PIPELINE.replace("      flavour: debug\n", "      flavour: debug\n      init_from: pack_4k\n")
    _one(
        tmp_path,
        text,
        "init_from: pack_4k",
        "nodes.pretrain.params.init_from",
        ["is a packed_tokens node", "name a checkpoint node", "or drop init_from"],
    )


def test_micro_batch_larger_than_global_batch(tmp_path: Path) -> None:
    text = PIPELINE.replace("{global_batch: 8, micro_batch: 4}", "{global_batch: 1, micro_batch: 4}")
    _one(
        tmp_path,
        text,
        "global_batch: 1",
        "nodes.pretrain.params.batch.micro_batch",
        [
            "batch.global_batch 1 is not a multiple of batch.micro_batch 4",
            "set batch.global_batch to a multiple of 4",
            "or batch.micro_batch to 1",
        ],
    )


def test_global_batch_against_the_gpus(tmp_path: Path) -> None:
    text = PIPELINE.replace(
        "    inputs: [pack_4k]\n", "    inputs: [pack_4k]\n    resources: {gpus: 4}\n"
    ).replace("{global_batch: 8, micro_batch: 4}", "{global_batch: 6, micro_batch: 2}")
    _one(
        tmp_path,
        text,
        "global_batch: 6",
        "nodes.pretrain.params.batch.micro_batch",
        ["micro_batch x ranks = 2 x 4 (resources.gpus) = 8", "a multiple of 8"],
    )


def test_global_batch_with_a_hostfile_checks_micro_batch_only(tmp_path: Path) -> None:
    (tmp_path / "hosts").write_text("localhost slots=4\n")
    text = PIPELINE.replace("flavour: debug", "flavour: debug\n      hostfile: hosts\n      ranks: 3")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    assert "pretrain" in load_pipeline(str(path)).nodes  # 8 rows of 4: the hostfile's slots decide the ranks


def test_sft_seq_len_beyond_the_flavour_positions(tmp_path: Path) -> None:
    text = PIPELINE.replace("seq_len: 512", "seq_len: 999999")
    _one(
        tmp_path,
        text,
        "seq_len: 999999",
        "nodes.chat_model.params.seq_len",
        [
            "seq_len 999999 exceeds the model's 1024 positions",
            "'debug' flavour",
            "lower seq_len to at most 1024",
        ],
    )


def test_sft_seq_len_within_raised_positions(tmp_path: Path) -> None:
    text = PIPELINE.replace("seq_len: 512", "seq_len: 4096\n      overrides: {max_position_embeddings: 4096}")
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    assert "chat_model" in load_pipeline(str(path)).nodes


def test_sft_seq_len_from_a_parent_checkpoint_is_left_to_run_time(tmp_path: Path) -> None:
    """With init_from the positions are the parent checkpoint's (midtrain raises them): not known statically."""
    text = PIPELINE.replace("inputs: [chats, tokenizer]", "inputs: [chats, tokenizer, midtrain]").replace(
        "seq_len: 512", "seq_len: 4096\n      init_from: midtrain"
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    assert "chat_model" in load_pipeline(str(path)).nodes


GRPO = (
    PIPELINE.replace("name: t\n", "name: t\nsources:\n  qs: {paths: [q.jsonl]}\n")
    + """\
  rl:
    uses: grpo
    inputs: [chat_model, qs]
    params: {steps: 1}
"""
)


def test_grpo_on_a_files_node_says_to_use_a_problems_node(tmp_path: Path) -> None:
    """A `files` node's documents hold `text`, never `prompt`: every row would be dropped (grpo_no_prompt)."""
    (tmp_path / "q.jsonl").write_text('{"prompt": "1+1?", "answer": "2"}\n')
    _one(
        tmp_path,
        GRPO,
        "inputs: [chat_model, qs]",
        "nodes.rl.inputs",
        [
            "input(s) 'qs' (files)",
            "no `prompt`",
            "grpo_no_prompt",
            "{uses: problems, params: {jsonl: [your.jsonl]}}",
        ],
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("inputs: [chat_model, qs]", "inputs: [chat_model, problems]"),  # problems rows have a prompt
        ("inputs: [chat_model, qs]", "inputs: [chat_model, problems, qs]"),  # some rows are problems
        (
            "params: {steps: 1}",
            "params: {steps: 1, rollout: {strategy: agentic}}",
        ),  # the agent's search index
    ],
)
def test_grpo_with_problems_or_an_agentic_index_is_valid(tmp_path: Path, old: str, new: str) -> None:
    (tmp_path / "q.jsonl").write_text('{"prompt": "1+1?", "answer": "2"}\n')
    path = tmp_path / "pipeline.yaml"
    path.write_text(GRPO.replace(old, new))
    assert "rl" in load_pipeline(str(path)).nodes


def test_default_batch_against_the_gpus_points_at_the_gpus(tmp_path: Path) -> None:
    """No `batch:` in the file (global_batch 8, micro_batch 1): the problem is at what set the ranks."""
    text = PIPELINE.replace(
        "    inputs: [pack_4k]\n", "    inputs: [pack_4k]\n    resources: {gpus: 3}\n"
    ).replace("      batch: {global_batch: 8, micro_batch: 4}\n", "")
    _one(
        tmp_path,
        text,
        "resources: {gpus: 3}",
        "nodes.pretrain.resources.gpus",
        ["batch.global_batch 8 is not a multiple of batch.micro_batch x ranks = 1 x 3 (resources.gpus) = 3"],
    )
