"""JSON Schema of pipeline.yaml: the pipeline model, with each node's params tied to its `uses:` kind."""

from __future__ import annotations

from typing import Any

from flows.schema import PipelineSpec
from tasks.registry import get_kind_class, kind_names


def pipeline_json_schema() -> dict[str, Any]:
    schema = PipelineSpec.model_json_schema()
    node = schema["$defs"]["NodeSpec"]
    node["properties"]["uses"]["enum"] = kind_names()
    rules = []
    for name in kind_names():
        params = get_kind_class(name).Params.model_json_schema()
        for def_name, definition in params.pop("$defs", {}).items():
            schema["$defs"].setdefault(def_name, definition)
        rules.append({"if": {"properties": {"uses": {"const": name}}},
                      "then": {"properties": {"params": params}}})
    node["allOf"] = rules
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
