"""Turn ``pipeline.yaml`` (+ ``--set`` overrides) into a checked pipeline, or report every problem at once.

Checks, in order: YAML syntax and duplicate keys; the pipeline schema; each node's kind and params; inputs (missing,
how many, type of producer vs consumer); cycles. Every problem names file:line and the YAML path and, where it can,
suggests the fix.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from flows.dag import find_cycles, topo_order
from flows.errors import Problem, SpecError
from flows.schema import NODE_ID_PATTERN, PipelineSpec
from flows.yaml_source import Path, YamlDocument, YamlSyntaxError, parse_yaml
from tasks.base import Kind, KindParams
from tasks.registry import UnknownKindError, get_kind, kind_names


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
        wd = os.path.expanduser(self.spec.workdir)
        return wd if os.path.isabs(wd) else os.path.join(self.base_dir, wd)


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _close(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


class _Collector:
    def __init__(self, doc: YamlDocument, overridden: set[Path]) -> None:
        self.doc, self.overridden, self.problems = doc, overridden, []

    def add(self, path: Path, message: str, hint: str = "") -> None:
        for o in self.overridden:
            if tuple(path[: len(o)]) == o:
                self.problems.append(Problem("--set", None, _dotted(path), message, hint))
                return
        self.problems.append(Problem(self.doc.file, self.doc.line_of(path), _dotted(path), message, hint))

    def pydantic(self, exc: ValidationError, prefix: Path, model: type[BaseModel]) -> None:
        for err in exc.errors():
            loc = tuple(err["loc"])
            path = (*prefix, *loc)
            if err["type"] == "extra_forbidden":
                parent = _model_at(model, loc[:-1])
                options = list(parent.model_fields) if parent else []
                hint = _close(str(loc[-1]), options) or (f"valid keys: {', '.join(options)}" if options else "")
                self.add(path, f"unknown key {loc[-1]!r}", hint)
            elif err["type"] == "missing":
                self.add(path, f"missing required key {loc[-1]!r}", "add it")
            else:
                got = err.get("input")
                shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
                self.add(path, f"{err['msg']}{shown}")


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


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> set[Path]:
    """Apply ``KEY.PATH=VALUE`` overrides (VALUE parsed as YAML) in place; returns the overridden paths."""
    touched: set[Path] = set()
    for item in overrides:
        if "=" not in item:
            raise SpecError([Problem("--set", None, item, "expected KEY.PATH=VALUE", "e.g. nodes.x.params.k=3")])
        key, value = item.split("=", 1)
        parts = tuple(p for p in key.strip().split(".") if p)
        if not parts:
            raise SpecError([Problem("--set", None, item, "empty key path")])
        target = data
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[parts[-1]] = yaml.safe_load(value)
        touched.add(parts)
    return touched


def load_pipeline(file: str, overrides: list[str] | None = None) -> Pipeline:
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise SpecError([Problem(file, None, "", "pipeline file not found", "pass --file PATH")]) from None
    try:
        doc = parse_yaml(text, file)
    except YamlSyntaxError as exc:
        raise SpecError([Problem(file, exc.line, "", exc.message)]) from None
    if not isinstance(doc.data, dict):
        raise SpecError([Problem(file, 1, "", "the pipeline must be a YAML mapping", "start with `name: ...`")])
    data = copy.deepcopy(doc.data)
    touched = apply_overrides(data, overrides or [])
    col = _Collector(doc, touched)
    for path, line in doc.duplicate_keys:
        col.problems.append(Problem(file, line, _dotted(path), f"duplicate key {path[-1]!r}", "keep one"))
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        col.pydantic(exc, (), PipelineSpec)
        raise SpecError(col.problems) from None
    return _check(spec, data, col, file)


def _check(spec: PipelineSpec, data: dict[str, Any], col: _Collector, file: str) -> Pipeline:
    names = kind_names()
    nodes: dict[str, ResolvedNode] = {}
    clash = set(spec.sources) & set(spec.nodes)
    for name in sorted(clash):
        col.add(("nodes", name), f"{name!r} is both a source and a node", "rename one of them")
    all_nodes = spec.all_nodes()
    for node_id, node in all_nodes.items():
        base: Path = ("sources", node_id) if node_id in spec.sources and node_id not in spec.nodes else ("nodes", node_id)
        if not re.match(NODE_ID_PATTERN, node_id):
            col.add(base, f"node id {node_id!r} must be lower_snake_case (letters, digits, _)")
        try:
            kind = get_kind(node.uses)
        except UnknownKindError as exc:
            hint = f"did you mean {exc.close[0]!r}?" if exc.close else f"valid kinds: {', '.join(names)}"
            col.add((*base, "uses") if base[0] == "nodes" else base, f"unknown kind {node.uses!r}", hint)
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
            nodes[node_id] = ResolvedNode(
                node_id, node.uses, kind, params, list(node.inputs), node.retries, node.retry_delay_s,
                node.resources.model_dump(),
            )
        _check_inputs(node_id, node.inputs, kind, all_nodes, base, col)
    deps = {n: [i for i in all_nodes[n].inputs if i in all_nodes] for n in all_nodes}
    for loop in find_cycles(deps):
        col.add(("nodes", loop[0], "inputs"), f"cycle: {' -> '.join(loop)}", "remove one of these inputs")
    for i, sched in enumerate(spec.schedules):
        for j, n in enumerate(sched.nodes):
            if n not in all_nodes:
                col.add(("schedules", i, "nodes", j), f"unknown node {n!r}", _close(n, sorted(all_nodes)))
    if col.problems:
        raise SpecError(col.problems)
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
            out[key] = os.path.normpath(os.path.join(base, os.path.expanduser(value)))
        elif isinstance(value, list):
            out[key] = [
                os.path.normpath(os.path.join(base, os.path.expanduser(v))) if isinstance(v, str) else v
                for v in value
            ]
    return out


def _check_inputs(
    node_id: str, inputs: list[str], kind: Kind, all_nodes: dict, base: Path, col: _Collector
) -> None:
    n = len(inputs)
    if n < kind.min_inputs or (kind.max_inputs is not None and n > kind.max_inputs):
        want = (
            f"exactly {kind.min_inputs}" if kind.max_inputs == kind.min_inputs
            else f"at least {kind.min_inputs}" if kind.max_inputs is None
            else f"{kind.min_inputs} to {kind.max_inputs}"
        )
        col.add((*base, "inputs"), f"kind {kind.name!r} takes {want} input(s), got {n}")
    for i, name in enumerate(inputs):
        if name == node_id:
            col.add((*base, "inputs", i), f"node {node_id!r} lists itself as an input")
            continue
        if name not in all_nodes:
            col.add((*base, "inputs", i), f"input {name!r} is not a node or source", _close(name, sorted(all_nodes)))
            continue
        try:
            producer = get_kind(all_nodes[name].uses)
        except UnknownKindError:
            continue
        if kind.input_types and producer.output_type not in kind.input_types:
            accepted = ", ".join(t.value for t in kind.input_types)
            col.add(
                (*base, "inputs", i),
                f"type mismatch: {name!r} ({producer.name}) produces {producer.output_type.value}, "
                f"but {kind.name!r} consumes {accepted}",
                "insert a node that converts it, or pick another input",
            )
