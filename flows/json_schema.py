"""JSON Schema of pipeline.yaml: the pipeline model, with each node's params tied to its `uses:` kind.

Editors (VS Code's YAML extension, JetBrains) use it for completion and inline errors: put ``# yaml-language-
server: $schema=arcflow.schema.json`` at the top of pipeline.yaml after ``arcflow schema >
arcflow.schema.json``. Sources are typed as ``files`` params; ``inputs`` accepts one name or a list, as the
loader does.
"""

from __future__ import annotations

import json
from typing import Any

from flows.schema import PipelineSpec
from tasks.registry import get_kind_class, kind_names


def _rename_refs(schema: Any, renames: dict[str, str]) -> Any:
    """``schema`` with ``$ref``s to renamed ``$defs`` entries rewritten."""
    text = json.dumps(schema)
    for old, new in renames.items():
        text = text.replace(f'"#/$defs/{old}"', f'"#/$defs/{new}"')
    return json.loads(text)


def _params_schema(name: str, defs: dict[str, Any]) -> dict[str, Any]:
    """One kind's params schema; its ``$defs`` go into ``defs``, prefixed by the kind where names clash."""
    params = get_kind_class(name).Params.model_json_schema()
    own = params.pop("$defs", {})
    renames = {d: f"{name}__{d}" for d, body in own.items() if d in defs and defs[d] != body}
    params = _rename_refs(params, renames)
    for def_name, body in _rename_refs(own, renames).items():
        defs.setdefault(renames.get(def_name, def_name), body)
    return params


def pipeline_json_schema() -> dict[str, Any]:
    schema = PipelineSpec.model_json_schema()
    defs = schema["$defs"]
    node = defs["NodeSpec"]
    names = kind_names()
    node["properties"]["uses"]["enum"] = names
    inputs = node["properties"]["inputs"]
    node["properties"]["inputs"] = {
        "anyOf": [{"type": "string"}, {k: v for k, v in inputs.items() if k not in ("title", "description")}],
        "title": inputs.get("title", "Inputs"),
        "description": inputs.get("description", ""),
    }
    rules = []
    for name in names:
        rules.append(
            {
                "if": {"properties": {"uses": {"const": name}}, "required": ["uses"]},
                "then": {"properties": {"params": _params_schema(name, defs)}},
            }
        )
    node["allOf"] = rules
    if "files" in names:
        schema["properties"]["sources"]["additionalProperties"] = _params_schema("files", defs)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
