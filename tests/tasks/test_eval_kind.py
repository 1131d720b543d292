"""The `eval` kind (tasks/eval.py) on a debug-sized checkpoint exported as an HF folder with a real BPE tokenizer
(trained on standard-library docstrings, tests/model/train/conftest.py): bits per byte and loss per source equal a
direct computation with transformers' AutoModelForCausalLM; FIM exact match and the problems pass rate on cases
whose answer is known (the checkpoint's own greedy output, found beforehand with HF generate, put where the kind
must find it); accounting of every row; bad inputs fail naming node, input or file and the fix."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from data_pipes.code.special_tokens import TOKENS
from tasks._eval_select import EvalInputError
from tasks.base import DataType, InputRef, RunContext
from tasks.eval import Eval
from tests.model.train.conftest import make_tokenizer

ROOT = Path(__file__).resolve().parents[2]
LONG = "# " + "configuration values for the example module, " * 4  # a line FIM never picks (> 80 characters)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A debug GLM checkpoint (seeded random weights) with the tokenizer and the chat template, as a stage exports."""
    from model.config import model_config
    from model.export import save_hf
    from model.glm import GLMForCausalLM
    from model.train.chat import install_chat_template

    folder = tmp_path_factory.mktemp("ck") / "outputs" / "pretrain"
    tok_dir = make_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer", 512)
    vocab = json.loads((tok_dir / "tokenizer.json").read_text())["model"]["vocab"]
    model = GLMForCausalLM(model_config("debug", vocab_size=max(512, len(vocab) + 16)), seed=3)
    save_hf(model, folder)
    for f in tok_dir.iterdir():
        shutil.copy(f, folder / f.name)
    install_chat_template(str(folder))
    (folder / "manifest.json").write_text(json.dumps({"kind": "sft", "output_type": "checkpoint"}))
    return folder


def shard(folder: Path, rows: list[dict]) -> InputRef:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "part-00000.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return InputRef(
        folder.name, DataType.DOCUMENTS, str(folder), (str(path),), (len(rows),), "h-" + folder.name
    )


def ck_ref(path: Path, name: str = "pretrain") -> InputRef:
    return InputRef(name, DataType.CHECKPOINT, str(path), (), (), "h-" + name)


def doc(i: str, text: str, source: str, code: bool = False) -> dict:
    meta = json.dumps({"format": "code"} if code else {})
    return {"id": i, "text": text, "source": source, "url": "", "lang": "en", "meta": meta}


def run_eval(tmp: Path, inputs: list[InputRef], params: dict, node: str = "eval") -> tuple[Path, object]:
    kind = Eval()
    out = tmp / "out"
    out.mkdir(parents=True, exist_ok=True)
    params = {
        "device": "cpu",
        **params,
    }  # fp32 on every machine: the figures are compared with fp32 on the CPU
    ctx = RunContext(node, kind.Params.model_validate(params), inputs, str(out), 0, map=None, run_shards=None)  # type: ignore[arg-type]
    result = kind.run(ctx)[0]
    return out, (result, ctx)


def hf_greedy(folder: Path, prompt_ids: list[int], n: int) -> list[int]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, eos_token_id=None)
    return out[0, len(prompt_ids) :].tolist()


PROSE = [
    "Return a new dictionary with the keys and values of the mapping.",
    "Split the string at the first occurrence of sep, and return a 3-tuple.",
    "Naïve caf\u00e9 text with non-ASCII bytes: 10 € — and more.",
]
CODE = ["def add(a, b):\n    return a + b\n", "import os\n\nprint(os.sep)\n"]


def test_bpb_and_loss_equal_a_direct_transformers_computation(checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [doc(f"p{i}", t, "prose") for i, t in enumerate(PROSE)]
    rows += [doc(f"c{i}", t, "code", code=True) for i, t in enumerate(CODE)]
    rows.append(doc("e0", "   ", "prose"))  # blank: dropped with its reason
    docs = shard(tmp_path / "heldout", rows)
    out, (result, ctx) = run_eval(
        tmp_path, [ck_ref(checkpoint), docs], {"loss": {"max_tokens": 256}, "fim": None, "problems": None}
    )
    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint)).eval()
    expect: dict[str, list[float]] = {}
    for r in rows[:-1]:
        ids = [tok.eos_token_id, *tok(r["text"], add_special_tokens=False)["input_ids"]]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1].float()
        nats = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="sum").item()
        acc = expect.setdefault(r["source"], [0.0, 0, 0])
        acc[0] += nats
        acc[1] += len(ids) - 1
        acc[2] += len(r["text"].encode())
    table = {r["source"]: r for r in pq.read_table(out / "part-00000.parquet").to_pylist()}
    assert set(table) == {"prose", "code", "all"}
    for source, (nats, tokens, nbytes) in expect.items():
        row = table[source]
        assert (
            row["tokens"] == tokens
            and row["bytes"] == nbytes
            and row["items"] == (3 if source == "prose" else 2)
        )
        assert row["nats"] == pytest.approx(nats, rel=1e-5)
        assert row["loss"] == pytest.approx(nats / tokens, rel=1e-5)
        assert row["bpb"] == pytest.approx(nats / math.log(2) / nbytes, rel=1e-5)
    total = [sum(v[k] for v in expect.values()) for k in range(3)]
    assert table["all"]["bpb"] == pytest.approx(total[0] / math.log(2) / total[2], rel=1e-5)
    # accounting: every row scored or dropped with its reason, also in the exclusion shard
    assert (result.rows_in, result.kept, result.dropped) == (6, 5, 1)
    assert result.drop_reasons == {"loss_empty_text": 1}
    assert pq.read_table(out / "excluded" / "part-00000.parquet").to_pylist()[0]["id"] == "e0"
    # reports: a table per task, the markdown comparison and a plot that fits its canvas
    titles = {r["title"] for r in ctx.reports}
    assert titles == {"Held-out loss and bits per byte", "Evaluation"}
    md = (out / "reports" / "evaluation.md").read_text()
    assert "| prose |" in md and "6 rows read" in md and "loss_empty_text 1" in md
    assert (out / "reports" / "evaluation.png").read_bytes().startswith(b"\x89PNG")
    from data_pipes.plots import clipped_texts
    from tasks._eval_report import figure

    assert (
        clipped_texts(figure(pq.read_table(out / "part-00000.parquet").to_pylist(), ["pretrain"], "t")) == []
    )


def test_truncation_scores_the_bytes_of_the_kept_tokens(checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    text = " ".join(PROSE * 6)
    docs = shard(tmp_path / "heldout", [doc("long", text, "prose")])
    out, _ = run_eval(
        tmp_path, [ck_ref(checkpoint), docs], {"loss": {"max_tokens": 20}, "fim": None, "problems": None}
    )
    row = pq.read_table(out / "items.parquet").to_pylist()[0]
    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert row["tokens"] == 20 and row["bytes"] == len(text[: enc["offset_mapping"][19][1]].encode())


def _fim_doc(checkpoint: Path, prefix: str, suffix: str, n: int) -> str | None:
    """The middle line this checkpoint's greedy decoding writes between prefix and suffix, or None if it is not one
    short line."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    prompt = f"{TOKENS.fim_prefix}{prefix}{TOKENS.fim_suffix}{suffix}{TOKENS.fim_middle}"
    new = hf_greedy(checkpoint, tok(prompt, add_special_tokens=False)["input_ids"], n)
    stops = {tok.convert_tokens_to_ids(t) for t in (TOKENS.endoftext, TOKENS.fim_prefix, TOKENS.fim_middle,
                                                     TOKENS.fim_suffix, TOKENS.fim_pad, TOKENS.file_sep,
                                                     TOKENS.repo_name)}  # fmt: skip
    for k, t in enumerate(new):
        if t in stops:
            new = new[:k]
            break
    text = tok.decode(new, skip_special_tokens=False)
    ok = text.strip() and "\n" not in text and "\r" not in text and len(text) <= 80 and "\ufffd" not in text
    return text if ok else None


def test_fim_exact_match_on_a_known_answer(checkpoint: Path, tmp_path: Path) -> None:
    # the known answer: the line the checkpoint writes itself between this prefix and suffix
    for k in range(20):
        prefix, suffix = f"{LONG}{k}\n", f"\n{LONG}end\n"
        middle = _fim_doc(checkpoint, prefix, suffix, 6)
        if middle is not None:
            break
    assert middle is not None, "no prefix gave a one-line greedy middle"
    rows = [
        doc("hit", prefix + middle + suffix, "code", code=True),
        doc("miss", prefix + "x = 'not what it writes'" + suffix, "code", code=True),
        doc("prose", "A paragraph of prose.", "prose"),
        doc("long", f"{LONG}\n{LONG}\n", "code", code=True),  # no line short enough
    ]
    docs = shard(tmp_path / "code", rows)
    out, (result, _ctx) = run_eval(
        tmp_path,
        [ck_ref(checkpoint), docs],
        {"loss": None, "fim": {"max_new_tokens": 6}, "problems": None},
    )
    items = {r["id"]: r for r in pq.read_table(out / "items.parquet").to_pylist()}
    assert items["hit"]["expected"] == middle and items["hit"]["output"] == middle and items["hit"]["correct"]
    assert items["miss"]["expected"] == "x = 'not what it writes'" and not items["miss"]["correct"]
    row = next(r for r in pq.read_table(out / "part-00000.parquet").to_pylist() if r["source"] == "code")
    assert (row["items"], row["correct"], row["accuracy"]) == (2, 1, 0.5)
    assert result.drop_reasons == {"fim_no_short_line": 1, "fim_not_code": 1}
    assert result.rows_in == result.kept + result.dropped == 4


def test_problems_pass_rate_with_the_verifiers(checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from data_pipes.reasoning.answers import final_answer

    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    prompt = "What is the value of the example constant?"
    text = tok.apply_chat_template(
        [{"role": "user", "content": prompt}],
        add_generation_prompt=True,
        enable_thinking=False,
        tokenize=False,
    )
    new = hf_greedy(checkpoint, tok(text, add_special_tokens=False)["input_ids"], 8)
    stops = {tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|user|>", "<|system|>",
                                                    "<|observation|>", "<|assistant|>")}  # fmt: skip
    new = next((new[:k] for k, t in enumerate(new) if t in stops), new)
    answer = final_answer(tok.decode(new, skip_special_tokens=False))
    base = {"text": prompt, "url": "", "lang": "", "meta": "{}", "tests": "", "entry_point": "", "domain": "math",
            "difficulty": "easy"}  # fmt: skip
    rows = [
        {**base, "id": "right", "source": "set_a", "prompt": prompt, "answer": answer or "?"},
        {**base, "id": "wrong", "source": "set_a", "prompt": prompt, "answer": "zzz-never-written"},
        {
            **base,
            "id": "other",
            "source": "set_b",
            "prompt": "Name the capital.",
            "answer": "yyy-never-written",
        },
        {**base, "id": "none", "source": "set_b", "prompt": "Unanswerable?", "answer": ""},
    ]
    problems = shard(tmp_path / "problems", rows)
    out, (result, _ctx) = run_eval(
        tmp_path, [ck_ref(checkpoint, "chat_model"), problems], {"problems": {"max_new_tokens": 8}}
    )
    items = {r["id"]: r for r in pq.read_table(out / "items.parquet").to_pylist()}
    assert answer is not None and items["right"]["correct"], items["right"]
    assert not items["wrong"]["correct"] and not items["other"]["correct"]
    table = {(r["task"], r["source"]): r for r in pq.read_table(out / "part-00000.parquet").to_pylist()}
    assert table[("problems", "set_a")]["accuracy"] == 0.5 and table[("problems", "set_b")]["accuracy"] == 0.0
    assert table[("problems", "all")]["correct"] == 1 and table[("problems", "all")]["items"] == 3
    assert {t for t, _s in table} == {"problems"}  # no plain documents: loss and FIM are skipped, with a note
    assert result.drop_reasons == {"problems_no_answer_or_tests": 1}
    assert "loss: nothing to score" in (out / "reports" / "evaluation.md").read_text()


# ---- bad input ---------------------------------------------------------------------------------------------------
def test_checkpoint_without_a_tokenizer(checkpoint: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(checkpoint, bare)
    (bare / "tokenizer.json").unlink()
    docs = shard(tmp_path / "heldout", [doc("a", PROSE[0], "prose")])
    with pytest.raises(EvalInputError) as info:
        run_eval(tmp_path, [ck_ref(bare, "midtrain"), docs], {"fim": None, "problems": None}, node="compare")
    msg = str(info.value)
    assert "node 'compare'" in msg and "'midtrain'" in msg and str(bare) in msg and "tokenizer" in msg


def test_problems_without_answers(checkpoint: Path, tmp_path: Path) -> None:
    row = {"id": "q", "text": "q", "source": "s", "prompt": "Why?", "answer": "", "tests": "", "meta": "{}"}
    problems = shard(tmp_path / "problems", [row])
    with pytest.raises(EvalInputError) as info:
        run_eval(
            tmp_path, [ck_ref(checkpoint), problems], {"loss": None, "fim": None}
        )  # problems: the default
    msg = str(info.value)
    assert "node 'eval'" in msg and "problems_no_answer_or_tests" in msg and "answer or tests" in msg
    # a problems node without the answer column at all
    bad = shard(tmp_path / "prompts", [{"id": "q", "text": "q", "source": "s", "prompt": "Why?"}])
    with pytest.raises(EvalInputError) as info:
        run_eval(
            tmp_path,
            [ck_ref(checkpoint), bad],
            {"loss": None, "fim": None, "problems": {"inputs": ["prompts"]}},
        )
    assert "prompts" in str(info.value) and "no `answer` or `tests` column" in str(info.value)


def test_empty_held_out_set(checkpoint: Path, tmp_path: Path) -> None:
    rows = [doc("a", PROSE[0], "prose"), doc("b", PROSE[1], "prose")]
    train = shard(tmp_path / "train_docs", rows)
    heldout = shard(tmp_path / "heldout", rows)
    with pytest.raises(EvalInputError) as info:
        run_eval(
            tmp_path,
            [ck_ref(checkpoint), train, heldout],
            {"loss": {"inputs": ["heldout"], "exclude": ["train_docs"]}, "fim": None, "problems": None},
        )
    msg = str(info.value)
    assert "node 'eval'" in msg and "held-out set of loss is empty" in msg and "loss_in_excluded_input" in msg


def test_unknown_source(checkpoint: Path, tmp_path: Path) -> None:
    docs = shard(tmp_path / "heldout", [doc("a", PROSE[0], "prose")])
    with pytest.raises(EvalInputError) as info:
        run_eval(
            tmp_path,
            [ck_ref(checkpoint), docs],
            {"loss": {"sources": ["wiki"]}, "fim": None, "problems": None},
        )
    msg = str(info.value)
    assert "'wiki'" in msg and "['prose']" in msg and "heldout" in msg


def test_params_name_inputs_the_node_has() -> None:
    from tasks.registry import get_kind

    kind = get_kind("eval")
    assert isinstance(kind, Eval) and kind.output_type == DataType.REPORT
    params = kind.Params.model_validate(
        {"loss": {"exclude": ["demo"]}, "problems": {"checkpoints": ["chat"]}}
    )
    errors = kind.check_inputs(params, ["pretrain", "heldout"])
    assert [path for path, _ in errors] == [("loss", "exclude", 0), ("problems", "checkpoints", 0)]


def test_example_pipeline_has_an_eval_node() -> None:
    from flows.validate import load_pipeline

    spec = yaml.safe_load((ROOT / "examples" / "train.yaml").read_text())
    node = spec["nodes"]["eval"]
    assert node["uses"] == "eval" and {"pretrain", "midtrain", "chat_model"} <= set(node["inputs"])
    load_pipeline(str(ROOT / "examples" / "train.yaml"), [])  # the DAG type-checks


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_in_bf16(checkpoint: Path, tmp_path: Path) -> None:
    rows = [doc(f"p{i}", t, "prose") for i, t in enumerate(PROSE)]
    rows += [doc(f"c{i}", LONG + "\n" + t, "code", code=True) for i, t in enumerate(CODE)]
    docs = shard(tmp_path / "heldout", rows)
    params = {"loss": {"max_tokens": 256}, "fim": {"max_new_tokens": 4}, "problems": None}
    cpu, _ = run_eval(tmp_path / "cpu", [ck_ref(checkpoint), docs], params)
    gpu, _ = run_eval(tmp_path / "gpu", [ck_ref(checkpoint), docs], {**params, "device": "cuda"})
    want = {(r["task"], r["source"]): r for r in pq.read_table(cpu / "part-00000.parquet").to_pylist()}
    got = {(r["task"], r["source"]): r for r in pq.read_table(gpu / "part-00000.parquet").to_pylist()}
    assert got.keys() == want.keys() and ("fim", "code") in got
    for key, row in got.items():
        assert row["items"] == want[key]["items"]
        if key[0] == "loss":
            assert row["tokens"] == want[key]["tokens"] and row["bytes"] == want[key]["bytes"]
            assert row["bpb"] == pytest.approx(want[key]["bpb"], rel=3e-2)
