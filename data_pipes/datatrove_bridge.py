"""Run one datatrove step over a document shard: rows become datatrove ``Document``s and back.

A row becomes ``Document(text=row[text_column], id=row[id_column], metadata=...)`` whose metadata is the row's
``meta`` JSON with every other column on top (``source``, ``url``, ``lang``, ``quality_score``, ...), as datatrove's
readers lay out a record. After the step, ``text`` and ``id`` come back from the document; a metadata key that
is a column goes back to that column (with its type checked); every other key goes to ``meta``, so what the step
added (a language score, a label) comes back in ``meta`` and what it removed is removed. A meta key that a column
shadows keeps its old value.

Each row ends in one of three places (``run_step`` returns the three frames):

* kept: the document the step let through, as it left the step (a formatter's or extractor's text, C4's lines);
* dropped, with ``reason``: a filter's ``(False, reason)`` keeps datatrove's reason verbatim (``gopher_short_doc``,
  ``line_punct_ratio``); a bare ``False`` is ``<step>`` in snake case (``lambda_filter``); an extractor that
  returns empty text drops as ``<step>_empty`` (datatrove drops it too), a per-document step that yields nothing
  as ``<step>_dropped``. Dropped rows keep their input text, with the metadata the step left;
* quarantined, with ``error``: the step raised on that row (``value_error: ... (in mypkg.steps line 12)``), the row
  has no text, its ``meta`` is not a JSON object, or the step left a value that cannot be stored (a column set to
  the wrong type, an object in the metadata). The input row is kept whole beside the error.

A step that asks datatrove to download a model or data file (``LanguageFilter``'s fastText model) is not a row
error: downloads are impossible while the step runs (``datatrove_resolve.no_downloads``), and the first such
request raises ``AssetNotCached`` naming the asset and the cache folder to pre-fill; the node fails with it. A
local model or word list (a plain path or ``file://`` URL) is read where it is; one that cannot be read raises
``LocalAssetMissing`` (an ``AssetNotCached``) naming it, and fails the node the same way.

How each role runs (the role comes from the class, ``data_pipes.datatrove_resolve.step_role``): a filter through
``filter_batch`` in batches of its ``batch_size`` (a batch that raises is redone document by document, so only the
bad row is quarantined); a formatter through ``format``; an extractor through ``extract``, in this process; any
other per-document step, or a filter/extractor/formatter that overrides ``run``, through ``run`` one document at a
time. Calling these methods directly instead of datatrove's ``run`` is what lets the bridge see each document's
fate: datatrove's ``run`` keeps a filter's reason only for an exclusion writer and skips a row that raises.

Deterministic: one fresh step per shard (a step's state, such as PIIFormatter's rotating replacements, starts
afresh), rows in order, meta serialised with sorted keys; no time limit on extraction (datatrove's per-document
timeout would make the output depend on the machine's load).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from data_pipes.datatrove_resolve import (
    AssetNotCached,
    LocalAssetMissing,
    Role,
    build_step,
    no_downloads,
    resolve_step,
    step_role,
)

META = "meta"
Fate = tuple[str, str, Any]  # (kept | dropped | error, the drop reason or the error, the document)


def snake(name: str) -> str:
    """``GopherQualityFilter`` -> ``gopher_quality_filter``; ``ZeroDivisionError`` -> ``zero_division_error``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def error_text(exc: BaseException) -> str:
    """``<exception class in snake case>: <message> (in <module> line <n>)``, naming where in the step's code it
    was raised (a module name, never a path of this machine)."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__", "")
        if module != __name__:
            where = f" (in {module} line {tb.tb_lineno})"
        tb = tb.tb_next
    message = str(exc).strip() or type(exc).__name__
    return f"{snake(type(exc).__name__)}: {message}{where}"


class _Unstorable(Exception):
    pass


def _plain(value: Any) -> Any:
    """A JSON value for ``value``: numpy scalars and arrays become Python ones; anything else that JSON cannot hold
    raises (its ``repr`` could hold a memory address, which would change the output's bytes)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return _plain(value.tolist())
    raise _Unstorable(f"a {type(value).__name__} cannot be stored in meta")


def dump_meta(meta: Mapping[str, Any]) -> str:
    return json.dumps(_plain(meta), sort_keys=True, ensure_ascii=False)


@dataclass
class _Row:
    index: int
    reason: str | None = None
    error: str | None = None
    text: str | None = None
    id: str | None = None
    meta: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepRunner:
    """One step bound to a frame's layout. ``run(frame)`` returns (kept, dropped, quarantined)."""

    path: str
    args: Mapping[str, Any]
    text_column: str = "text"
    id_column: str = "id"

    def __post_init__(self) -> None:
        self.cls = resolve_step(self.path)
        self.role: Role = step_role(self.cls, self.path)
        self.name = snake(self.cls.__name__)
        if self.role != "step" and _overrides_run(self.cls, self.role):
            self.role = "step"

    def run(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        from datatrove.data import Document

        step = build_step(self.cls, self.args, self.path)
        columns = [c for c in frame.columns if c not in (self.text_column, self.id_column, META)]
        values = {c: frame.get_column(c).to_list() for c in columns}
        texts = frame.get_column(self.text_column).to_list()
        ids = frame.get_column(self.id_column).cast(pl.String).to_list()
        metas = frame.get_column(META).to_list() if META in frame.columns else [None] * frame.height
        rows = [_Row(i) for i in range(frame.height)]
        docs: list[tuple[_Row, Any, dict[str, Any]]] = []  # (row, document, parsed input meta)
        for row in rows:
            i = row.index
            if not isinstance(texts[i], str):
                row.error = f"missing_text: column {self.text_column!r} holds no text in this row"
                continue
            if ids[i] is None:
                row.error = f"missing_id: column {self.id_column!r} is null in this row"
                continue
            try:
                meta = json.loads(metas[i]) if metas[i] else {}
            except json.JSONDecodeError as exc:
                row.error = f"meta_not_json: {exc}"
                continue
            if not isinstance(meta, dict):
                row.error = f"meta_not_json: meta is a JSON {type(meta).__name__}, not an object"
                continue
            metadata = json.loads(metas[i]) if metas[i] else {}  # its own copy: a step may edit nested values
            metadata.update((c, values[c][i]) for c in columns)
            docs.append((row, Document(text=texts[i], id=ids[i], metadata=metadata), meta))
        try:
            with no_downloads():
                fates = self._apply(step, [d for _, d, _ in docs])
        except LocalAssetMissing as exc:  # a local model or word list that cannot be read: the same, once
            raise LocalAssetMissing(f"step {self.path!r}: {exc}", exc.remote) from None
        except AssetNotCached as exc:  # a setup error, not a row error: fail the node with it once
            raise AssetNotCached(f"step {self.path!r}: {exc}", exc.remote) from None
        for (row, _, meta), (status, detail, out) in zip(docs, fates, strict=True):
            if status == "error":
                row.error = detail
                continue
            if status == "dropped":
                row.reason = detail
            try:
                self._collect(row, out, meta, frame, columns, values, metas[row.index])
            except _Unstorable as exc:
                row.reason, row.error = None, f"unstorable_metadata: {exc}"
        return self._frames(frame, rows, {"text": texts, "id": ids, "meta": metas})

    # ---- the step -----------------------------------------------------------------------------------------
    def _apply(self, step: Any, docs: list[Any]) -> list[Fate]:
        """One ``(status, detail, document)`` per document: ``kept``; ``dropped`` with the reason; ``error``
        with the error text."""
        if self.role == "filter":
            return self._filter(step, docs)
        out: list[Fate] = []
        for doc in docs:
            original = doc.text
            try:
                if self.role == "formatter":
                    doc.text = step.format(doc.text)
                elif self.role == "extractor":
                    doc.text = step.extract(doc.text)
                else:
                    yielded = list(step.run(iter([doc]), 0, 1))
                    if len(yielded) > 1:
                        out.append(
                            (
                                "error",
                                f"step_yielded_many: {self.cls.__name__} yielded {len(yielded)} documents for "
                                "one input; the `datatrove` kind maps each row to at most one",
                                None,
                            )
                        )
                        continue
                    if not yielded:
                        out.append(("dropped", f"{self.name}_dropped", doc))
                        continue
                    doc = yielded[0]
            except AssetNotCached:
                raise
            except Exception as exc:
                out.append(("error", error_text(exc), None))
                continue
            if self.role == "extractor" and not doc.text:  # empty or None: datatrove drops it too
                doc.text = original  # a dropped row keeps its input
                out.append(("dropped", f"{self.name}_empty", doc))
            elif not isinstance(doc.text, str):
                out.append(("error", f"bad_text: the step left text as a {type(doc.text).__name__}", None))
            else:
                out.append(("kept", "", doc))
        return out

    def _filter(self, step: Any, docs: list[Any]) -> list[Fate]:
        from datatrove.pipeline.filters.base_filter import get_filter_result

        size = max(1, int(getattr(step, "batch_size", 1) or 1))
        originals = [d.text for d in docs]
        out: list[Fate] = []
        for start in range(0, len(docs), size):
            batch = docs[start : start + size]
            try:
                results = list(step.filter_batch(batch)) if size > 1 else [step.filter(batch[0])]
                if len(results) != len(batch):
                    raise ValueError(
                        f"filter_batch returned {len(results)} results for {len(batch)} documents"
                    )
                outcomes: list[Any] = [("ok", r) for r in results]
            except AssetNotCached:
                raise
            except Exception:
                outcomes = []
                for doc in batch:  # find the row that raised
                    try:
                        outcomes.append(("ok", step.filter(doc)))
                    except AssetNotCached:
                        raise
                    except Exception as exc:
                        outcomes.append(("error", error_text(exc)))
            for offset, (doc, (status, result)) in enumerate(zip(batch, outcomes, strict=True)):
                if status == "error":
                    out.append(("error", result, None))
                    continue
                keep, reason = get_filter_result(result)
                if keep:
                    out.append(("kept", "", doc))
                else:
                    doc.text = originals[start + offset]  # C4 edits lines before it drops: keep the input
                    out.append(("dropped", str(reason) if reason else self.name, doc))
        return out

    # ---- back to rows -------------------------------------------------------------------------------------
    def _collect(
        self,
        row: _Row,
        doc: Any,
        meta: dict[str, Any],
        frame: pl.DataFrame,
        columns: list[str],
        values: dict[str, list[Any]],
        raw_meta: str | None,
    ) -> None:
        i = row.index
        metadata = doc.metadata if isinstance(doc.metadata, dict) else {}
        for c in columns:
            if c not in metadata:
                continue  # a column the step removed from metadata keeps its value
            new = metadata[c]
            if new is values[c][i] or new == values[c][i]:
                continue
            try:
                pl.Series([_plain(new)], dtype=frame.schema[c], strict=True)
            except _Unstorable:
                raise
            except Exception:
                raise _Unstorable(
                    f"the step set column {c!r} to a {type(new).__name__} ({new!r:.60}); the column holds "
                    f"{frame.schema[c]}"
                ) from None
            row.columns[c] = _plain(new)
        out_meta = {k: v for k, v in metadata.items() if k not in columns}
        for key in meta.keys() & set(columns):  # meta keys shadowed by a column keep their value
            out_meta[key] = meta[key]
        row.meta = raw_meta if out_meta == meta and raw_meta else dump_meta(out_meta)
        row.text = doc.text
        row.id = str(doc.id) if doc.id is not None else None

    def _frames(
        self, frame: pl.DataFrame, rows: list[_Row], originals: dict[str, list[Any]]
    ) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
        """The three frames; ``originals`` holds the input's text, id and meta values (``text``, ``id``,
        ``meta``), so unchanged columns are reused."""
        keep = [r.index for r in rows if r.error is None and r.reason is None]
        drop = [r.index for r in rows if r.error is None and r.reason is not None]
        bad = [r.index for r in rows if r.error is not None]
        by_index = {r.index: r for r in rows}

        def rebuilt(indices: list[int]) -> pl.DataFrame:
            part = frame[indices] if indices else frame.clear()
            updates = []
            for column, attr in ((self.text_column, "text"), (self.id_column, "id"), (META, "meta")):
                new = [getattr(by_index[i], attr) for i in indices]
                old = originals[attr]
                if column in frame.columns and all(
                    n is old[i] or n == old[i] for n, i in zip(new, indices, strict=True)
                ):
                    continue  # unchanged (a filter's text): the input column is reused, not rebuilt
                series = pl.Series(column, new, dtype=pl.String)
                if column in frame.columns and frame.schema[column] != pl.String:
                    series = series.cast(frame.schema[column], strict=False)
                updates.append(series)
            changed = sorted({c for i in indices for c in by_index[i].columns})
            for c in changed:
                current = part.get_column(c).to_list()
                new = [by_index[i].columns.get(c, old) for i, old in zip(indices, current, strict=True)]
                updates.append(pl.Series(c, new, dtype=frame.schema[c], strict=True))
            return part.with_columns(updates) if updates else part  # without `meta`, it gains one

        kept = rebuilt(keep)
        dropped = rebuilt(drop).with_columns(
            pl.Series("reason", [by_index[i].reason for i in drop], dtype=pl.String)
        )
        quarantined = (frame[bad] if bad else frame.clear()).with_columns(
            pl.Series("error", [by_index[i].error for i in bad], dtype=pl.String)
        )
        return kept, dropped, quarantined


def _overrides_run(cls: type, role: Role) -> bool:
    """True when the class replaces the ``run`` of its role's base, so only ``run`` says what it does."""
    from datatrove.pipeline.extractors.base import BaseExtractor
    from datatrove.pipeline.filters.base_filter import BaseFilter
    from datatrove.pipeline.formatters.base import BaseFormatter

    base = {"filter": BaseFilter, "extractor": BaseExtractor, "formatter": BaseFormatter}[role]
    return cls.run is not base.run
