"""The playbook JSON Schema, generated from the field tables in model.py (one source of truth).

`python -m responder.playbook.schema > responder/schema/playbook-v1.schema.json` refreshes the
committed copy; a unit test fails when it is stale.
"""

from __future__ import annotations

import json
from typing import Any

from responder.playbook.model import (
    HOST_PATTERN,
    IDENT,
    JSON_POINTER,
    MATCH_FIELDS,
    NOTIFY_FIELDS,
    PARAM_FIELDS,
    STEP_FIELDS,
    TOP_FIELDS,
    FieldSpec,
)

SCHEMA_ID = "urn:responder:schema:playbook-v1"
_STRINGS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}


def _field(spec: FieldSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"description": spec.description}
    if spec.type != "any":
        out["type"] = spec.type
    if spec.enum:
        out["enum"] = [str(e) if not isinstance(e, int) else e for e in spec.enum]
    if spec.pattern:
        out["pattern"] = spec.pattern
    if spec.minimum is not None:
        out["minimum"] = spec.minimum
    if spec.maximum is not None:
        out["maximum"] = spec.maximum
    if spec.default is not None:
        out["default"] = spec.default
    return out


def _object(table: dict[str, FieldSpec], **overrides: Any) -> dict[str, Any]:
    props = {name: _field(spec) for name, spec in table.items()}
    for name, extra in overrides.items():
        props[name].update(extra)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [name for name, spec in table.items() if spec.required],
        "properties": props,
    }


def build_schema() -> dict[str, Any]:
    """The playbook JSON Schema, generated from the model."""
    step = _object(STEP_FIELDS, **{"with": {"additionalProperties": True}})
    param = _object(PARAM_FIELDS)
    top = _object(
        TOP_FIELDS,
        params={"propertyNames": {"pattern": IDENT}, "additionalProperties": {"$ref": "#/$defs/param"}},
        steps={"items": {"$ref": "#/$defs/step"}, "minItems": 1},
        notify=_object(NOTIFY_FIELDS),
    )
    match_rule = _object(
        MATCH_FIELDS,
        alertname=_STRINGS,
        severity=_STRINGS,
        rule=_STRINGS,
        labels={"additionalProperties": {"type": "string"}},
        labels_regex={"additionalProperties": {"type": "string", "format": "regex"}},
        params={
            "propertyNames": {"pattern": IDENT},
            "additionalProperties": {"type": "string", "pattern": JSON_POINTER},
        },
    )
    top["properties"]["match"]["anyOf"] = [
        {"$ref": "#/$defs/match_rule"},
        {"type": "array", "items": {"$ref": "#/$defs/match_rule"}, "minItems": 1},
    ]
    schema: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "responder playbook, format v1",
        "description": "A response playbook: typed params and ordered steps, each running one runbook role. "
        f"Step host patterns match {HOST_PATTERN}.",
        **top,
        "$defs": {"param": param, "step": step, "match_rule": match_rule},
    }
    return schema


def render() -> str:
    """The schema as JSON text."""
    return json.dumps(build_schema(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
