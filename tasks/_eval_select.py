"""What the `eval` kind scores: the held-out documents, FIM spans and problems drawn from its inputs, and the reason
every other input row is left out.

Draws are seeded and depend on a row's id alone (a blake2b hash of ``seed``, the task and the id), never on shard
layout or worker count: each source's rows are ranked by that hash and the first N are taken. Every row of the
inputs a task reads ends scored by at least one task (kept) or dropped with the reason of the first task that read
it (``loss_beyond_docs_per_source``, ``fim_not_code``, ``problems_no_answer_or_tests``, ...). Inputs named only in
``exclude`` are reference sets: their ids are read, their rows are not candidates and not counted.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from data_pipes.code.fim import document_draws, has_sentinel
from tasks.base import DataType, InputRef

_UNIT = float(1 << 64)


class EvalInputError(ValueError):
    """Bad input of an `eval` node, found before any model runs: names the node, the input or file, and the fix."""


@dataclass(frozen=True)
class LossDoc:
    input: str
    id: str
    source: str
    text: str


@dataclass(frozen=True)
class FimSpan:
    input: str
    id: str
    source: str
    prefix: str
    middle: str
    suffix: str


@dataclass(frozen=True)
class Problem:
    input: str
    id: str
    source: str
    row: dict[str, Any]  # the problems row (prompt, answer, tests, entry_point, meta) the verifier reads


@dataclass
class Selection:
    loss: list[LossDoc] = field(default_factory=list)
    fim: list[FimSpan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows_in: int = 0
    kept: int = 0
    dropped: list[dict[str, str]] = field(default_factory=list)  # input, id, source, reason
    inputs: list[str] = field(default_factory=list)  # the inputs whose rows were candidates
    notes: list[str] = field(default_factory=list)

    @property
    def reasons(self) -> dict[str, int]:
        return dict(sorted(Counter(d["reason"] for d in self.dropped).items()))


def draw(seed: int, task: str, doc_id: str) -> float:
    """A uniform number in [0, 1) from (seed, task, id): the rank of a row inside its source."""
    digest = hashlib.blake2b(f"{seed}:{task}:{doc_id}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "little") / _UNIT


def columns_of(inp: InputRef) -> set[str]:
    """The columns of an input's shards (empty when it has none)."""
    for shard in inp.shards:
        return set(pq.read_schema(shard).names)
    return set()


def is_problems(inp: InputRef) -> bool:
    cols = columns_of(inp)
    return inp.data_type == DataType.DOCUMENTS and "prompt" in cols and bool({"answer", "tests"} & cols)


def read_input(inp: InputRef, columns: list[str], node: str, task: str) -> pl.DataFrame:
    """Every row of ``inp`` (its shards in order) with ``columns`` (missing optional ones as empty strings) and
    ``_row``, its position in the input."""
    frames = []
    for shard in inp.shards:
        have = set(pq.read_schema(shard).names)
        need = [c for c in columns if c in ("id", "text", "source", "prompt")]
        missing = [c for c in need if c not in have]
        if missing:
            raise EvalInputError(
                f"node {node!r}: input {inp.name!r} ({shard}) has no column(s) {missing} that {task} needs; "
                + (
                    "give it a `problems` node (docs/REASONING.md)"
                    if task == "problems"
                    else "give it a documents node (docs/CONTRACTS.md: id, text, source)"
                )
            )
        frame = pl.read_parquet(shard, columns=[c for c in columns if c in have])
        for c in columns:
            if c not in have:
                frame = frame.with_columns(pl.lit("").alias(c))
        frames.append(frame.select(columns))
    if not frames:
        return pl.DataFrame(
            {c: [] for c in columns}, schema=dict.fromkeys(columns, pl.String)
        ).with_row_index("_row")
    return (
        pl.concat(frames)
        .with_columns(pl.col(c).cast(pl.String).fill_null("") for c in columns)
        .with_row_index("_row")
    )


def _ids_of(inputs: dict[str, InputRef], names: list[str]) -> set[str]:
    out: set[str] = set()
    for name in names:
        for shard in inputs[name].shards:
            out.update(pl.read_parquet(shard, columns=["id"]).get_column("id").cast(pl.String).to_list())
    return out


def _check_sources(
    node: str, task: str, wanted: list[str] | None, present: set[str], names: list[str]
) -> None:
    unknown = sorted(set(wanted or []) - present)
    if unknown:
        raise EvalInputError(
            f"node {node!r}: params.{task}.sources names {unknown}, which no row of {names} has; the sources there "
            f"are {sorted(present)}: fix the names or drop them"
        )


class _Ledger:
    """Per input row: kept by some task, or the first reason a task gave."""

    def __init__(self) -> None:
        self.frames: dict[str, pl.DataFrame] = {}
        self.kept: dict[str, set[int]] = {}
        self.reason: dict[str, dict[int, str]] = {}

    def add(self, name: str, frame: pl.DataFrame) -> None:
        if name not in self.frames or frame.width > self.frames[name].width:
            self.frames[name] = frame
        self.kept.setdefault(name, set())
        self.reason.setdefault(name, {})

    def keep(self, name: str, row: int) -> None:
        self.kept[name].add(row)

    def drop(self, name: str, row: int, reason: str) -> None:
        self.reason[name].setdefault(row, reason)


def select(node: str, inputs: list[InputRef], params: Any, seed: int, explicit: set[str]) -> Selection:
    """Draw the items of every enabled task from ``inputs`` (params: :class:`tasks._eval_params.EvalParams`).
    ``explicit`` names the sections the node's params set: an explicit section with nothing to score is an error,
    a default one is skipped with a note."""
    by_name = {i.name: i for i in inputs}
    docs = [i.name for i in inputs if i.data_type == DataType.DOCUMENTS]
    problem_inputs = [n for n in docs if is_problems(by_name[n])]
    plain = [n for n in docs if n not in problem_inputs]
    sel = Selection()
    ledger = _Ledger()
    loss_exclude = list(params.loss.exclude) if params.loss is not None else []
    fim_exclude = (
        list(params.fim.exclude)
        if params.fim is not None and params.fim.exclude is not None
        else loss_exclude
    )
    excluded_names = set(loss_exclude) | set(fim_exclude)

    # a task with inputs and nothing drawn from them is an error (an empty held-out set); a task without inputs
    # is one only when the params ask for it; FIM on a corpus without code is skipped with a note unless asked for
    if params.loss is not None:
        p = params.loss
        names = p.inputs if p.inputs is not None else [n for n in plain if n not in excluded_names]
        if names:
            sel.loss = _select_loss(
                node, by_name, names, p.sources, p.docs_per_source, loss_exclude, seed, ledger
            )
        if not sel.loss:
            _empty(node, "loss", names, bool(names) or "loss" in explicit, sel, ledger)
    if params.fim is not None:
        p = params.fim
        loss_names = (
            params.loss.inputs if params.loss is not None and params.loss.inputs is not None else None
        )
        names = p.inputs or loss_names or [n for n in plain if n not in excluded_names]
        if names:
            sel.fim = _select_fim(node, by_name, names, p, fim_exclude, seed, ledger)
        if not sel.fim:
            _empty(node, "fim", names, "fim" in explicit, sel, ledger)
    if params.problems is not None:
        p = params.problems
        names = p.inputs if p.inputs is not None else problem_inputs
        if names:
            sel.problems = _select_problems(node, by_name, names, p, seed, ledger)
        if not sel.problems:
            _empty(node, "problems", names, bool(names) or "problems" in explicit, sel, ledger)

    for name, frame in ledger.frames.items():
        sel.inputs.append(name)
        sel.rows_in += frame.height
        sel.kept += len(ledger.kept[name])
        ids, sources = frame.get_column("id").to_list(), frame.get_column("source").to_list()
        for row in range(frame.height):
            if row not in ledger.kept[name]:
                reason = ledger.reason[name].get(row, "not_drawn")
                sel.dropped.append({"input": name, "id": ids[row], "source": sources[row], "reason": reason})
    return sel


def _empty(node: str, task: str, names: list[str], fail: bool, sel: Selection, ledger: _Ledger) -> None:
    """No item for ``task``: an error when ``fail``, else a note in the summary."""
    reasons: Counter[str] = Counter()
    for name in names:
        for row, reason in ledger.reason.get(name, {}).items():
            if reason.startswith(task + "_") and row not in ledger.kept.get(name, set()):
                reasons[reason] += 1
    why = f"; rows left out: {dict(sorted(reasons.items()))}" if reasons else ""
    if not fail:
        sel.notes.append(f"{task}: nothing to score in {names or 'the inputs'}{why}; skipped")
        return
    fix = {
        "loss": "give it a documents input with text, or loosen params.loss (sources, exclude)",
        "fim": 'give it code documents (meta {"format": "code"}) or name their params.fim.sources',
        "problems": "give it a `problems` node whose rows have an answer or tests",
    }[task]
    raise EvalInputError(
        f"node {node!r}: the held-out set of {task} is empty (inputs {names or 'none of the right kind'}){why}; "
        f"{fix}, or set {task}: null to turn it off"
    )


def _unknown_inputs(node: str, task: str, by_name: dict[str, InputRef], names: list[str]) -> None:
    for name in names:
        inp = by_name.get(name)
        if inp is None or inp.data_type != DataType.DOCUMENTS:
            raise EvalInputError(
                f"node {node!r}: params.{task} names {name!r}, which is not a documents input of this node; "
                f"its documents inputs are {[i for i, v in by_name.items() if v.data_type == DataType.DOCUMENTS]}"
            )


def _rank(rows: list[tuple[str, str, int, str]], n: int, seed: int, task: str) -> tuple[set, set]:
    """Rows (source, input, row, id) -> (taken, beyond): the first ``n`` of each source in hash order."""
    per: dict[str, list[tuple[float, str, int, str, int]]] = {}
    for k, (source, name, row, doc_id) in enumerate(rows):
        per.setdefault(source, []).append((draw(seed, task, doc_id), name, row, doc_id, k))
    taken, beyond = set(), set()
    for items in per.values():
        items.sort()
        for j, (_u, name, row, _id, _k) in enumerate(items):
            (taken if j < n else beyond).add((name, row))
    return taken, beyond


def _select_loss(
    node: str,
    by_name: dict[str, InputRef],
    names: list[str],
    sources: list[str] | None,
    per_source: int,
    exclude: list[str],
    seed: int,
    ledger: _Ledger,
) -> list[LossDoc]:
    _unknown_inputs(node, "loss", by_name, [*names, *exclude])
    excluded = _ids_of(by_name, exclude)
    frames = {n: read_input(by_name[n], ["id", "text", "source"], node, "loss") for n in names}
    present = {s for f in frames.values() for s in f.get_column("source").to_list()}
    _check_sources(node, "loss", sources, present, names)
    wanted = set(sources) if sources else None
    eligible = []
    for name, frame in frames.items():
        ledger.add(name, frame)
        for row, doc_id, text, source in frame.select("_row", "id", "text", "source").iter_rows():
            if wanted is not None and source not in wanted:
                ledger.drop(name, row, "loss_source_not_selected")
            elif not text.strip():
                ledger.drop(name, row, "loss_empty_text")
            elif doc_id in excluded:
                ledger.drop(name, row, "loss_in_excluded_input")
            else:
                eligible.append((source, name, row, doc_id))
    taken, _beyond = _rank(eligible, per_source, seed, "loss")
    out = []
    for source, name, row, doc_id in eligible:
        if (name, row) in taken:
            ledger.keep(name, row)
            out.append(LossDoc(name, doc_id, source, frames[name].row(row, named=True)["text"]))
        else:
            ledger.drop(name, row, "loss_beyond_docs_per_source")
    return sorted(out, key=lambda d: (d.source, draw(seed, "loss", d.id), d.input, d.id))


def _is_code(meta: str) -> bool:
    try:
        value = json.loads(meta or "{}")
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("format") == "code"


def fim_span(
    text: str, doc_id: str, seed: int, max_middle_chars: int, context_chars: int
) -> tuple[str, str, str] | None:
    """(prefix, middle, suffix) of a code document: the middle is one non-blank line (without its line break) of at
    most ``max_middle_chars``, drawn from (seed, id); prefix and suffix are cut to ``context_chars`` around it.
    None when no line qualifies."""
    lines = text.splitlines(keepends=True)
    starts, at = [], 0
    for line in lines:
        starts.append(at)
        at += len(line)
    ok = [k for k, line in enumerate(lines) if line.strip() and len(line.rstrip("\r\n")) <= max_middle_chars]
    if not ok:
        return None
    k = ok[min(len(ok) - 1, int(document_draws(doc_id, seed)[2] * len(ok)))]
    a = starts[k]
    b = a + len(lines[k].rstrip("\r\n"))
    prefix = text[:a][-context_chars:] if context_chars else ""
    return prefix, text[a:b], text[b:][:context_chars]


def _select_fim(
    node: str,
    by_name: dict[str, InputRef],
    names: list[str],
    p: Any,
    exclude: list[str],
    seed: int,
    ledger: _Ledger,
) -> list[FimSpan]:
    _unknown_inputs(node, "fim", by_name, [*names, *exclude])
    excluded = _ids_of(by_name, exclude)
    frames = {n: read_input(by_name[n], ["id", "text", "source", "meta"], node, "fim") for n in names}
    present = {s for f in frames.values() for s in f.get_column("source").to_list()}
    _check_sources(node, "fim", p.sources, present, names)
    wanted = set(p.sources) if p.sources else None
    eligible, spans = [], {}
    for name, frame in frames.items():
        ledger.add(name, frame)
        for row, doc_id, text, source, meta in frame.select(
            "_row", "id", "text", "source", "meta"
        ).iter_rows():
            if wanted is not None and source not in wanted:
                ledger.drop(name, row, "fim_source_not_selected")
            elif wanted is None and not _is_code(meta):
                ledger.drop(name, row, "fim_not_code")
            elif doc_id in excluded:
                ledger.drop(name, row, "fim_in_excluded_input")
            elif has_sentinel(text):
                ledger.drop(name, row, "fim_has_sentinel")
            elif (span := fim_span(text, doc_id, seed, p.max_middle_chars, p.context_chars)) is None:
                ledger.drop(name, row, "fim_no_short_line")
            else:
                eligible.append((source, name, row, doc_id))
                spans[(name, row)] = span
    taken, _beyond = _rank(eligible, p.docs_per_source, seed, "fim")
    out = []
    for source, name, row, doc_id in eligible:
        if (name, row) in taken:
            ledger.keep(name, row)
            out.append(FimSpan(name, doc_id, source, *spans[(name, row)]))
        else:
            ledger.drop(name, row, "fim_beyond_docs_per_source")
    return sorted(out, key=lambda d: (d.source, draw(seed, "fim", d.id), d.input, d.id))


PROBLEM_COLUMNS = ["id", "text", "source", "prompt", "answer", "tests", "entry_point", "meta", "domain"]


def _select_problems(
    node: str, by_name: dict[str, InputRef], names: list[str], p: Any, seed: int, ledger: _Ledger
) -> list[Problem]:
    _unknown_inputs(node, "problems", by_name, names)
    for name in names:
        cols = columns_of(by_name[name])
        if cols and not {"answer", "tests"} & cols:
            raise EvalInputError(
                f"node {node!r}: input {name!r} ({by_name[name].shards[0]}) has no `answer` or `tests` column, so "
                "its answers cannot be checked; give params.problems a `problems` node (docs/REASONING.md)"
            )
    frames = {n: read_input(by_name[n], PROBLEM_COLUMNS, node, "problems") for n in names}
    present = {s for f in frames.values() for s in f.get_column("source").to_list()}
    _check_sources(node, "problems", p.sources, present, names)
    wanted = set(p.sources) if p.sources else None
    eligible = []
    for name, frame in frames.items():
        ledger.add(name, frame)
        for r in frame.iter_rows(named=True):
            row = r["_row"]
            if wanted is not None and r["source"] not in wanted:
                ledger.drop(name, row, "problems_source_not_selected")
            elif not r["prompt"].strip():
                ledger.drop(name, row, "problems_empty_prompt")
            elif not r["answer"].strip() and not r["tests"].strip():
                ledger.drop(name, row, "problems_no_answer_or_tests")
            else:
                eligible.append((r["source"], name, row, r["id"]))
    taken, _beyond = _rank(eligible, p.per_source, seed, "problems")
    out = []
    for source, name, row, doc_id in eligible:
        if (name, row) in taken:
            ledger.keep(name, row)
            r = frames[name].row(row, named=True)
            out.append(Problem(name, doc_id, source, {k: r[k] for k in PROBLEM_COLUMNS}))
        else:
            ledger.drop(name, row, "problems_beyond_per_source")
    return sorted(out, key=lambda d: (d.source, draw(seed, "problems", d.id), d.input, d.id))


def manifest_kind(inp: InputRef) -> str | None:
    """The kind that made an input (its store manifest), or None when unknown."""
    try:
        with open(os.path.join(inp.path, "manifest.json"), encoding="utf-8") as fh:
            return json.load(fh).get("kind")
    except (OSError, ValueError):
        return None
