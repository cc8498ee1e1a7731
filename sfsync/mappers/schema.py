"""The JSON Schema of the mapping format, generated from the models.

``schemas/mapping.schema.json`` is this function's output (``sfsync mapping schema --out
schemas/mapping.schema.json``); a test keeps the two equal. Editors that speak the
yaml-language-server protocol use it for completion and inline errors.
"""

from __future__ import annotations

from typing import Any

from sfsync.mappers.models import Mapping

SCHEMA_ID = "https://sfsync.dev/schemas/mapping.schema.json"


def mapping_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a mapping file."""
    schema = Mapping.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    field_ref = {"$ref": "#/$defs/FieldSpec"}
    # The models accept shorthands in a before-validator, which pydantic cannot see:
    # `Field__c: column` (a string names the source) and `record_type: DeveloperName`.
    props = schema["properties"]
    props["fields"]["additionalProperties"] = {
        "anyOf": [{"type": "string", "description": "Source column or path (shorthand for {source: ...})."}, field_ref]
    }
    props["record_type"] = {
        "anyOf": [{"type": "string", "description": "One record type DeveloperName for every row."}, field_ref,
                  {"type": "null"}],
        "default": None,
        "description": props["record_type"].get("description", ""),
    }
    unmapped = defs["FieldSpec"]["properties"]["unmapped"]
    unmapped["anyOf"] = [{"enum": ["reject", "default", "keep", "null"], "type": "string"}, {"type": "null"}]
    unmapped.pop("enum", None)
    unmapped.pop("type", None)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
