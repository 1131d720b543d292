"""Turn ``pipeline.yaml`` (+ ``--set`` overrides) into a checked pipeline, or report every problem at once.

Checks, in order: YAML syntax and duplicate keys; ``--set`` overrides; the pipeline schema; each node's kind
and params (with a training stage's ``init_from`` against its producer's type and its batch against its ranks,
and a ``grpo`` node's documents against `files` inputs, which hold no problems);
inputs (missing, how many, type of producer vs consumer); cycles; schedules. Every problem names
file:line and the YAML path and, where it can, suggests the fix. A schema error in one node does not hide the
problems of the others: the nodes that pass the schema are still checked, and the problems are reported in
file order.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from flows.dag import find_cycles, topo_order
from flows.errors import Problem, SpecError
from flows.schema import NODE_ID_PATTERN, NodeSpec, PipelineSpec, ScheduleSpec, suggest_name
from flows.yaml_source import MAX_BYTES as MAX_FILE_BYTES
from flows.yaml_source import Path, YamlDocument, YamlSyntaxError, parse_value, parse_yaml
from model.train.spec import BatchSpec
from tasks.base import DataType, Kind, KindParams
from tasks.registry import UnknownKindError, get_kind, kind_names

OVERRIDE = "--set"


@dataclass
class ResolvedNode:
    id: str
    uses: str
    kind: Kind
    params: KindParams
    inputs: list[str]
    retries: int
    retry_delay_s: float
    resources: dict[str, Any]


@dataclass
class Pipeline:
    file: str
    spec: PipelineSpec
    nodes: dict[str, ResolvedNode]
    deps: dict[str, list[str]]
    order: list[str]
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.file))

    @property
    def workdir(self) -> str:
        if "://" in self.spec.workdir and not self.spec.workdir.startswith("file://"):
            return self.spec.workdir  # an object store (s3://bucket/prefix): flows/store_remote.py
        wd = os.path.expanduser(self.spec.workdir.removeprefix("file://"))
        return wd if os.path.isabs(wd) else os.path.join(self.base_dir, wd)


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _close(word: str, options: list[str] | set[str], n: int = 1) -> list[str]:
    return difflib.get_close_matches(str(word), sorted(options), n=n, cutoff=0.6)


def _did_you_mean(word: str, options: list[str] | set[str]) -> str:
    close = _close(word, options)
    return f"did you mean {close[0]!r}?" if close else ""


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _shown(value: Any) -> str:
    if isinstance(value, dict | list):
        return _type_name(value)
    return f"{_type_name(value)} {value!r}" if value is not None else "nothing"


def _get(data: Any, path: Path) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _data_path(data: Any, prefix: Path, loc: tuple[Any, ...], keep_last: bool) -> Path:
    """The path of a pydantic error in the user's data: pydantic's ``loc`` also names union members and
    validator steps (``'int'``, ``'function-after[...]'``), which are not keys of the file."""
    current = _get(data, prefix)
    out: list[str | int] = list(prefix)
    for i, part in enumerate(loc):
        if isinstance(current, dict) and part in current:
            current = current[part]
            out.append(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            out.append(part)
        elif keep_last and i == len(loc) - 1 and isinstance(part, str):
            out.append(part)
    return tuple(out)


def _field_of(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> Any:
    """The pydantic FieldInfo at ``loc`` inside ``model`` (following nested models), or None."""
    if not loc:
        return None
    parent = _model_at(model, loc[:-1]) if model else None
    if parent is None or not isinstance(loc[-1], str):
        return None
    return parent.model_fields.get(loc[-1])


_MISSING_HINTS = {
    ("name",): "add `name: my_pipeline` at the top of the file",
    ("paths",): "add `paths: [data/*.jsonl]` (files, directories or globs)",
    ("cron",): "add `cron: '0 3 * * *'`",
    ("expr",): 'add `expr: "length(text) >= 200"`',
}


class _Collector:
    def __init__(self, doc: YamlDocument, data: dict[str, Any], overridden: set[Path]) -> None:
        self.doc, self.data, self.overridden = doc, data, overridden
        self.problems: list[Problem] = []

    def add(self, path: Path, message: str, hint: str = "") -> None:
        path = tuple(path)
        for o in self.overridden:
            # inside what --set wrote, or a key --set created on the way to it (`--set nodes.s.parms.x=1`)
            if path[: len(o)] == o or (o[: len(path)] == path and path not in self.doc.lines):
                self.problems.append(Problem(OVERRIDE, None, _dotted(path), message, hint))
                return
        self.problems.append(Problem(self.doc.file, self.doc.line_of(path), _dotted(path), message, hint))

    def pydantic(self, exc: ValidationError, prefix: Path, model: type[BaseModel]) -> None:
        seen: set[tuple[Path, str]] = set()
        for err in exc.errors():
            loc = tuple(err["loc"])
            kind = err["type"]
            path = _data_path(self.data, prefix, loc, keep_last=kind in ("missing", "extra_forbidden"))
            message, hint = self._describe(err, path, loc, model)
            if (path, message) not in seen:  # a union reports one error per member; say it once
                seen.add((path, message))
                self.add(path, message, hint)

    def _describe(
        self, err: Any, path: Path, loc: tuple[Any, ...], model: type[BaseModel]
    ) -> tuple[str, str]:
        kind, got = err["type"], err.get("input")
        key = str(path[-1]) if path else ""
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            options = list(parent.model_fields) if parent else []
            hint = _did_you_mean(key, options) or (f"valid keys: {', '.join(options)}" if options else "")
            return f"unknown key {key!r}", hint
        if kind == "missing":
            missing = str(loc[-1])
            if missing == "uses":
                return "missing required key 'uses'", f"add `uses: KIND`; kinds: {', '.join(kind_names())}"
            info = _field_of(model, loc)
            hint = _MISSING_HINTS.get((missing,)) or (
                f"add `{missing}:` ({info.description})"
                if info is not None and info.description
                else f"add `{missing}:`"
            )
            return f"missing required key {missing!r}", hint
        if kind in ("dict_type", "model_type", "model_attributes_type"):
            return f"expected a mapping (key: value lines), got {_shown(got)}", self._mapping_hint(path, got)
        if kind == "list_type":
            return f"expected a list, got {_shown(got)}", f"write `{key}: [{got}]`" if isinstance(
                got, str
            ) else ""
        text = re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])
        shown = "" if isinstance(got, dict | list) or repr(got) in text else f" (got {got!r})"
        hint = ""
        if kind in ("literal_error", "enum"):
            hint = _did_you_mean(str(got), re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", "")))
        if not hint:
            info = _field_of(model, loc)
            if info is not None and info.description and kind != "value_error":
                hint = f"{key}: {info.description}"
        return f"{text}{shown}", hint

    @staticmethod
    def _mapping_hint(path: Path, got: Any) -> str:
        if len(path) == 2 and path[0] == "nodes" and isinstance(got, str):
            return f"write `{path[1]}: {{uses: {got}}}`"
        if len(path) == 2 and path[0] == "sources" and isinstance(got, str):
            return f"write `{path[1]}: {{paths: [{got}]}}`"
        if path in (("nodes",), ("sources",)):
            return (
                f"write one `NAME:` entry per {'node' if path[0] == 'nodes' else 'source'} under `{path[0]}:`"
            )
        return ""


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            # dict[str, Model]: the key is a user name; stay on the value model
            continue
        ann = fields[part].annotation
        current = _unwrap(ann)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(ann: Any) -> Any:
    args = getattr(ann, "__args__", None)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in args or ():
        found = _unwrap(a)
        if found is not None:
            return found
    return None


def _apply_overrides(data: dict[str, Any], overrides: list[str]) -> tuple[set[Path], list[Problem]]:
    """Apply ``KEY.PATH=VALUE`` overrides (VALUE parsed as YAML) in place, collecting malformed ones."""
    touched: set[Path] = set()
    problems: list[Problem] = []

    def bad(where: str, message: str, hint: str = "") -> None:
        problems.append(Problem(OVERRIDE, None, where, message, hint))

    for item in overrides:
        if "=" not in item:
            bad(
                item,
                f"{item!r} has no '='; expected KEY.PATH=VALUE",
                "e.g. --set nodes.NAME.params.KEY=VALUE",
            )
            continue
        key, value = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            bad(item, f"{item!r} has no key before '='", "e.g. --set nodes.NAME.params.KEY=VALUE")
            continue
        try:
            parsed = parse_value(value)
        except YamlSyntaxError as exc:
            message = re.sub(r" \([^()]* on line \d+\)$", "", exc.message.removeprefix("invalid YAML: "))
            bad(key, f"value {value!r} is not valid YAML: {message}", "quote it: KEY='VALUE'")
            continue
        path: list[str | int] = []
        target: Any = data
        failed = False
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(target, list):
                if not part.isdigit() or int(part) >= len(target):
                    bad(
                        _dotted((*path, part)),
                        f"{_dotted(tuple(path))} is a list of {len(target)} item(s); "
                        f"{part!r} is not an index of it",
                        f"use 0..{len(target) - 1}" if target else "",
                    )
                    failed = True
                    break
                index: str | int = int(part)
            elif isinstance(target, dict):
                index = part
                if len(path) == 1 and path[0] in ("nodes", "sources") and not last and part not in target:
                    what = "node" if path[0] == "nodes" else "source"
                    names = sorted(target)
                    hint = _did_you_mean(part, names) or (f"{what}s: {', '.join(names)}" if names else "")
                    bad(_dotted((*path, part)), f"no {what} {part!r} to override", hint)
                    failed = True
                    break
            else:
                bad(
                    _dotted((*path, part)),
                    f"{_dotted(tuple(path))} is {_shown(target)}, not a mapping; "
                    f"cannot set {part!r} inside it",
                    f"--set {_dotted(tuple(path))}=VALUE replaces it whole",
                )
                failed = True
                break
            path.append(index)
            if last:
                target[index] = parsed
            else:
                if isinstance(target, dict) and target.get(index) is None:
                    target[index] = {}
                target = target[index]
        if not failed:
            touched.add(tuple(path))
    return touched, problems


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> set[Path]:
    """Apply ``KEY.PATH=VALUE`` overrides (VALUE parsed as YAML) in place; returns the overridden paths."""
    touched, problems = _apply_overrides(data, overrides)
    if problems:
        raise SpecError(problems)
    return touched


def _in_file_order(problems: list[Problem]) -> list[Problem]:
    """File problems by line (stable), then the ``--set`` ones in the order given."""
    return sorted(problems, key=lambda p: (p.file == OVERRIDE, p.line or 0))


_LOADED: dict[tuple, Pipeline] = {}


def load_pipeline(file: str, overrides: list[str] | None = None) -> Pipeline:
    """Parse and check ``file`` with ``overrides``; raises ``SpecError`` listing every problem. A file already
    checked in this process (same path, same bytes, same overrides) is not checked again: `arcflow run`
    validates before it starts the flow, and the flow loads the same file."""
    try:
        with open(file, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError([Problem(file, None, "", "pipeline file not found", "pass --file PATH")]) from None
    except IsADirectoryError:
        raise SpecError(
            [Problem(file, None, "", "is a directory", "pass --file PATH/pipeline.yaml")]
        ) from None
    except OSError as exc:
        raise SpecError([Problem(file, None, "", f"cannot read the pipeline file: {exc.strerror}")]) from None
    key = (os.path.abspath(file), hashlib.sha256(raw).hexdigest(), tuple(overrides or ()))
    if key in _LOADED:
        return _LOADED[key]
    pipeline = _load_pipeline(file, raw, overrides)
    _LOADED[key] = pipeline
    return pipeline


def _load_pipeline(file: str, raw: bytes, overrides: list[str] | None = None) -> Pipeline:
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(
            [
                Problem(
                    file,
                    None,
                    "",
                    f"the file is larger than {MAX_FILE_BYTES:,} bytes; a pipeline file is a few KB",
                    "is this the right file?",
                )
            ]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            [Problem(file, line, "", f"not UTF-8 text: {exc.reason}", "save the file as UTF-8")]
        ) from None
    try:
        doc = parse_yaml(text, file)
    except YamlSyntaxError as exc:
        raise SpecError([Problem(file, exc.line, "", exc.message, exc.hint)]) from None
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else _shown(doc.data)
        raise SpecError(
            [
                Problem(
                    file,
                    1,
                    "",
                    f"the pipeline must be a YAML mapping, got {got}",
                    "start with `name: my_pipeline`, then `nodes:`",
                )
            ]
        ) from None
    data = copy.deepcopy(doc.data)
    touched, override_problems = _apply_overrides(data, overrides or [])
    col = _Collector(doc, data, touched)
    col.problems.extend(override_problems)
    for path, line, what in doc.typed_keys:
        if len(path) == 2 and path[0] in ("nodes", "sources"):
            thing = "node" if path[0] == "nodes" else "source"
            col.problems.append(
                Problem(
                    file,
                    line,
                    _dotted(path),
                    f"{thing} name {path[-1]!r} is read by YAML as {what}, not as a name",
                    f"quote it ('{path[-1]}':) or choose another name",
                )
            )
    for path, line, first in doc.duplicate_keys:
        col.problems.append(
            Problem(
                file,
                line,
                _dotted(path),
                f"duplicate key {path[-1]!r}, first set on line {first}",
                "YAML keeps only the last one; remove or rename one of them",
            )
        )
    spec: PipelineSpec | None = None
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        col.pydantic(exc, (), PipelineSpec)
    pipeline = _check(spec, data, col, file)
    if col.problems or pipeline is None:
        raise SpecError(_in_file_order(col.problems))
    return pipeline


_SIDE_FIELDS = frozenset({"resources", "retries", "retry_delay_s", "description"})


def _salvage(data: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, NodeSpec], list[Any]]:
    """The sources, nodes and schedules that pass the schema on their own, so they can still be checked when
    another part of the file does not."""
    sources = data.get("sources")
    good_sources = (
        {k: v for k, v in sources.items() if isinstance(v, dict)} if isinstance(sources, dict) else {}
    )
    nodes: dict[str, NodeSpec] = {}
    if isinstance(data.get("nodes"), dict):
        for node_id, raw in data["nodes"].items():
            try:
                nodes[str(node_id)] = NodeSpec.model_validate(raw)
            except ValidationError as exc:
                # a bad `retries:` or `resources:` says nothing about the node's kind, params and inputs:
                # check those too (a bad `inputs:` or a misspelled key would, so such a node is left out)
                bad = {err["loc"][0] for err in exc.errors() if err["loc"]}
                if isinstance(raw, dict) and bad and bad <= _SIDE_FIELDS:
                    nodes[str(node_id)] = NodeSpec.model_validate(
                        {k: v for k, v in raw.items() if k not in bad}
                    )
    schedules: list[Any] = []
    if isinstance(data.get("schedules"), list):
        for i, raw in enumerate(data["schedules"]):
            try:
                schedules.append((i, ScheduleSpec.model_validate(raw)))
            except ValidationError:
                pass
    return good_sources, nodes, schedules


def _check(spec: PipelineSpec | None, data: dict[str, Any], col: _Collector, file: str) -> Pipeline | None:
    if spec is not None:
        sources, declared = spec.sources, spec.nodes
        schedules = list(enumerate(spec.schedules))
        all_nodes = spec.all_nodes()
    else:
        sources, declared, schedules = _salvage(data)
        all_nodes = {name: NodeSpec(uses="files", params=dict(p)) for name, p in sources.items()}
        all_nodes.update(declared)
    # every name the file declares, valid or not: an input naming a node with a schema error is not "missing"
    known = set(all_nodes)
    for section in ("sources", "nodes"):
        if isinstance(data.get(section), dict):
            known |= {str(k) for k in data[section]}

    nodes: dict[str, ResolvedNode] = {}
    for name in sorted(set(sources) & set(declared)):
        col.add(
            ("nodes", name),
            f"{name!r} is both a source and a node",
            f"rename one of them, e.g. the node to {name + '_2'!r}; inputs refer to either by this name",
        )
    raw_nodes = data["nodes"] if isinstance(data.get("nodes"), dict) else {}
    raw_sources = data["sources"] if isinstance(data.get("sources"), dict) else {}
    for node_id in dict.fromkeys([*map(str, raw_sources), *map(str, raw_nodes)]):
        if not re.match(NODE_ID_PATTERN, node_id):
            base: Path = ("nodes", node_id) if node_id in raw_nodes else ("sources", node_id)
            fix = suggest_name(node_id)
            col.add(
                base,
                f"id {node_id!r} must be lower_snake_case (a-z, 0-9, _; starting with a letter)",
                f"rename it to {fix!r}" if fix else "",
            )
    for node_id, node in all_nodes.items():
        base = ("sources", node_id) if node_id in sources and node_id not in declared else ("nodes", node_id)
        try:
            kind = get_kind(node.uses)
        except UnknownKindError as exc:
            close = ", ".join(repr(c) for c in exc.close)
            hint = f"did you mean {close}? " if close else ""
            col.add(
                (*base, "uses"),
                f"unknown kind {node.uses!r}",
                f"{hint}valid kinds: {', '.join(kind_names())}",
            )
            continue
        params_path: Path = (*base, "params") if base[0] == "nodes" else base
        try:
            params = kind.Params.model_validate(_absolute_paths(node.params, kind, file))
        except ValidationError as exc:
            col.pydantic(exc, params_path, kind.Params)
            params = None
        if params is not None:
            for sub, message in kind.check_params(params):
                col.add((*params_path, *sub), message)
            for sub, message in kind.check_inputs(params, list(node.inputs)):
                col.add((*params_path, *sub), message)
            _check_init_from(node_id, params, all_nodes, params_path, col)
            _check_batch(params, node.resources.model_dump(), params_path, col)
            _check_grpo_problems(node_id, kind, params, all_nodes, base, col)
            nodes[node_id] = ResolvedNode(
                node_id,
                node.uses,
                kind,
                params,
                list(node.inputs),
                node.retries,
                node.retry_delay_s,
                node.resources.model_dump(),
            )
        _check_inputs(node_id, node.inputs, kind, all_nodes, known, base, col)
    deps = {n: [i for i in all_nodes[n].inputs if i in all_nodes] for n in all_nodes}
    for loop in find_cycles(deps):
        if len(loop) <= 2:
            continue  # a node listing itself is reported by _check_inputs
        head, before = loop[0], loop[-2]  # `before -> head` is the edge held in head's inputs
        index = all_nodes[head].inputs.index(before)
        col.add(
            ("nodes", head, "inputs", index),
            f"cycle: {' -> '.join(loop)}",
            f"a cycle can never run; remove one edge of the loop, e.g. {before!r} from nodes.{head}.inputs",
        )
    for i, sched in schedules:
        for j, n in enumerate(sched.nodes):
            if n not in all_nodes:
                col.add(
                    ("schedules", i, "nodes", j),
                    f"schedule names unknown node {n!r}",
                    _did_you_mean(n, all_nodes) or f"nodes: {', '.join(sorted(all_nodes))}",
                )
    if col.problems or spec is None:
        return None
    return Pipeline(file=file, spec=spec, nodes=nodes, deps=deps, order=topo_order(deps), raw=data)


def _absolute_paths(params: dict[str, Any], kind: Kind, file: str) -> dict[str, Any]:
    """Paths in a kind's path params are relative to the pipeline file's directory."""
    if not kind.path_params:
        return params
    base = os.path.dirname(os.path.abspath(file))
    out = dict(params)
    for key in kind.path_params:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = _absolute(base, value)
        elif isinstance(value, list):
            out[key] = [_absolute(base, v) if isinstance(v, str) else v for v in value]
    return out


def _absolute(base: str, value: str) -> str:
    if "://" in value and not value.startswith("file://"):
        return value  # an object-store URL (s3://bucket/prefix): read through fsspec as it is
    return os.path.normpath(os.path.join(base, os.path.expanduser(value.removeprefix("file://"))))


def _check_init_from(
    node_id: str, params: KindParams, all_nodes: dict[str, NodeSpec], params_path: Path, col: _Collector
) -> None:
    """A training stage's ``init_from`` names an input that produces a checkpoint (tasks/_train_run.resolve says
    the same at run time, after the upstream nodes ran)."""
    name = getattr(params, "init_from", None)
    if not isinstance(name, str) or name not in all_nodes[node_id].inputs or name not in all_nodes:
        return  # not an input: the kind's check_inputs says so
    try:
        producer = get_kind(all_nodes[name].uses)
    except UnknownKindError:
        return  # reported at its own `uses:`
    if producer.output_type == DataType.CHECKPOINT:
        return
    makers = [
        i
        for i in all_nodes[node_id].inputs
        if i in all_nodes
        and all_nodes[i].uses in kind_names()
        and get_kind(all_nodes[i].uses).output_type == DataType.CHECKPOINT
    ]
    hint = (
        f"set `init_from: {makers[0]}`"
        + (f" (checkpoint inputs: {', '.join(makers)})" if len(makers) > 1 else "")
        if makers
        else "name a checkpoint node (pretrain, midtrain, sft, grpo) listed in `inputs:`, or drop init_from"
    )
    col.add(
        (*params_path, "init_from"),
        f"init_from {name!r} is a {producer.output_type.value} node ({producer.name}), not a checkpoint; "
        "init_from names the checkpoint this stage starts from",
        hint,
    )


def _check_batch(params: KindParams, resources: dict[str, Any], params_path: Path, col: _Collector) -> None:
    """A training stage's ``batch.global_batch`` is a multiple of ``micro_batch`` x ranks (model/train/data.py's
    check_batch says the same, but only once the DeepSpeed launcher has started the ranks). The ranks are
    ``ranks`` (default: ``resources.gpus``, else 1); with a ``hostfile`` its ``slots=`` decide them, so only
    ``micro_batch`` is checked here."""
    batch = getattr(params, "batch", None)
    if not isinstance(batch, BatchSpec):
        return
    hostfile = getattr(params, "hostfile", None)
    ranks = 1 if hostfile else getattr(params, "ranks", None) or max(1, int(resources.get("gpus") or 0))
    per_step = batch.micro_batch * ranks
    if batch.global_batch % per_step == 0:
        return
    if ranks == 1:
        what = f"batch.global_batch {batch.global_batch} is not a multiple of batch.micro_batch {batch.micro_batch}"
    else:
        source = "ranks" if getattr(params, "ranks", None) else "resources.gpus"
        what = (
            f"batch.global_batch {batch.global_batch} is not a multiple of batch.micro_batch x ranks = "
            f"{batch.micro_batch} x {ranks} ({source}) = {per_step}"
        )
    fits = [
        m
        for m in range(min(batch.micro_batch, batch.global_batch), 0, -1)
        if batch.global_batch % (m * ranks) == 0
    ]
    hint = f"set batch.global_batch to a multiple of {per_step} (e.g. {per_step * max(1, -(-batch.global_batch // per_step))})"
    if fits:
        hint += f", or batch.micro_batch to {fits[0]}"
    # at the key the file writes: batch.micro_batch, else batch, else what set the ranks (the batch defaults)
    where: Path = (*params_path, "batch", "micro_batch")
    for path in (
        where,
        (*params_path, "batch"),
        (*params_path, "ranks"),
        (*params_path[:-1], "resources", "gpus"),
    ):
        if _get(col.data, path) is not None:
            where = path
            break
    col.add(
        where,
        f"{what}; each optimizer step is a whole number of micro-batches on every rank",
        hint,
    )


# kinds whose documents are the fixed document columns (data_pipes/io/documents.DOC_COLUMNS: id, text, ...), never
# a `prompt`: a grpo node reading only such inputs has no problem to train on
_TEXT_ONLY_KINDS = frozenset({"files"})


def _check_grpo_problems(
    node_id: str, kind: Kind, params: KindParams, all_nodes: dict[str, NodeSpec], base: Path, col: _Collector
) -> None:
    """A `grpo` node whose documents inputs are all `files` nodes: every row lacks `prompt` and is quarantined
    (``grpo_no_prompt``, tasks/_grpo_run.split_problems), so the stage would fail after its upstream work. An
    agentic rollout reads such documents as its search index, so it is left alone."""
    if kind.name != "grpo" or getattr(getattr(params, "rollout", None), "strategy", None) == "agentic":
        return
    docs = []
    for name in all_nodes[node_id].inputs:
        spec = all_nodes.get(name)
        if spec is None or spec.uses not in kind_names():
            return  # reported elsewhere
        if get_kind(spec.uses).output_type == DataType.DOCUMENTS:
            docs.append(name)
    text_only = [n for n in docs if all_nodes[n].uses in _TEXT_ONLY_KINDS]
    if not docs or text_only != docs:
        return
    names = ", ".join(repr(n) for n in docs)
    col.add(
        (*base, "inputs"),
        f"grpo trains on problems (rows with a `prompt`), but its input(s) {names} (files) hold documents "
        "with their text in `text` and no `prompt`: every row would be dropped (grpo_no_prompt)",
        "read the file with a problems node instead: `{uses: problems, params: {jsonl: [your.jsonl]}}`, one "
        "object per line with `prompt` and `answer` and/or `tests` (docs/REASONING.md), and give that node as "
        "the grpo input",
    )


def _count_phrase(kind: Kind) -> str:
    lo, hi = kind.min_inputs, kind.max_inputs
    if hi == lo:
        return f"exactly {lo} input" + ("" if lo == 1 else "s")
    if hi is None:
        return f"at least {lo} input" + ("" if lo == 1 else "s")
    return f"{lo} to {hi} inputs"


def _check_inputs(
    node_id: str,
    inputs: list[str],
    kind: Kind,
    all_nodes: dict[str, NodeSpec],
    known: set[str],
    base: Path,
    col: _Collector,
) -> None:
    n = len(inputs)
    if n < kind.min_inputs or (kind.max_inputs is not None and n > kind.max_inputs):
        if kind.max_inputs == 0:
            hint = f"{kind.name!r} is a source and reads no inputs; remove `inputs:`"
        elif n < kind.min_inputs:
            hint = "add `inputs: [NODE]` naming the node(s) it reads"
        elif "union" in kind_names():
            hint = f"combine {', '.join(map(repr, inputs))} with a `uses: union` node and read that"
        else:
            hint = f"keep at most {kind.max_inputs}"
        col.add((*base, "inputs"), f"kind {kind.name!r} takes {_count_phrase(kind)}, got {n}", hint)
    produced: list[Any] = []  # the output type of each input, None where the input is itself broken
    for i, name in enumerate(inputs):
        produced.append(None)
        if name == node_id:
            col.add(
                (*base, "inputs", i),
                f"node {node_id!r} lists itself as an input",
                f"remove {node_id!r} from its inputs",
            )
            continue
        if name not in known:
            hint = _did_you_mean(name, known) or (
                f"nodes and sources: {', '.join(sorted(known - {node_id}))}"
                if known - {node_id}
                else "declare it under `nodes:` or `sources:`"
            )
            col.add((*base, "inputs", i), f"input {name!r} is not a node or source", hint)
            continue
        if name not in all_nodes:
            continue  # declared but invalid: its own problems are reported
        try:
            producer = get_kind(all_nodes[name].uses)
        except UnknownKindError:
            continue
        produced[-1] = producer.output_type
        if kind.input_types and producer.output_type not in kind.input_types:
            accepted = ", ".join(t.value for t in kind.input_types)
            fitting = sorted(
                other
                for other, spec in all_nodes.items()
                if other != node_id
                and spec.uses in kind_names()
                and get_kind(spec.uses).output_type in kind.input_types
            )
            hint = (
                f"nodes that produce {accepted}: {', '.join(fitting)}"
                if fitting
                else (f"insert a node that turns {producer.output_type.value} into {accepted}")
            )
            col.add(
                (*base, "inputs", i),
                f"type mismatch: {name!r} ({producer.name}) produces {producer.output_type.value}, "
                f"but {node_id!r} ({kind.name}) consumes {accepted}",
                hint,
            )
    if None not in produced:
        _check_input_counts(node_id, kind, produced, all_nodes, base, col)


def _check_input_counts(
    node_id: str, kind: Kind, produced: list[Any], all_nodes: dict[str, NodeSpec], base: Path, col: _Collector
) -> None:
    """The kind's ``input_counts``: e.g. `pack` needs exactly one tokenizer input and at least one of documents."""
    for data_type, (lo, hi) in kind.input_counts.items():
        n = sum(1 for t in produced if t == data_type)
        if lo <= n and (hi is None or n <= hi):
            continue
        want = f"exactly {lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
        if n < lo:
            makers = sorted(
                other
                for other, spec in all_nodes.items()
                if other != node_id
                and spec.uses in kind_names()
                and get_kind(spec.uses).output_type == data_type
            )
            hint = (
                f"add one of {', '.join(makers)} to its inputs"
                if makers
                else f"add a node that produces {data_type.value} and list it in `inputs:`"
            )
        else:
            hint = f"keep {want} {data_type.value} input(s)"
        col.add(
            (*base, "inputs"),
            f"kind {kind.name!r} needs {want} {data_type.value} input(s), got {n}",
            hint,
        )
