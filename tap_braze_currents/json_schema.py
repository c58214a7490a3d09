"""Avro schemas -> JSON Schema for Singer SCHEMA messages, and merging of drifted schemas."""

from __future__ import annotations

import copy
from typing import Any

_PRIMITIVES: dict[str, dict[str, Any]] = {
    "null": {"type": ["null"]},
    "boolean": {"type": ["boolean"]},
    "int": {"type": ["integer"]},
    "long": {"type": ["integer"]},
    "float": {"type": ["number"]},
    "double": {"type": ["number"]},
    "string": {"type": ["string"]},
    "bytes": {"type": ["string"]},
    "fixed": {"type": ["string"]},
    "enum": {"type": ["string"]},
}

_LOGICAL: dict[str, dict[str, Any]] = {
    "timestamp-millis": {"type": ["string"], "format": "date-time"},
    "timestamp-micros": {"type": ["string"], "format": "date-time"},
    "date": {"type": ["string"], "format": "date"},
    "uuid": {"type": ["string"]},
    "decimal": {"type": ["number"]},
}


def avro_to_json_schema(avro: Any) -> dict[str, Any]:
    """JSON Schema of one Avro type (primitive, union, array, map, record, enum, fixed)."""
    if isinstance(avro, list):
        merged: dict[str, Any] = {"type": []}
        for branch in avro:
            merged = merge_json_schemas(merged, avro_to_json_schema(branch))
        return merged
    if isinstance(avro, str):
        return copy.deepcopy(_PRIMITIVES.get(avro, {"type": ["string"]}))
    logical = avro.get("logicalType")
    if logical in _LOGICAL:
        return copy.deepcopy(_LOGICAL[logical])
    kind = avro["type"]
    if kind == "array":
        return {"type": ["array"], "items": avro_to_json_schema(avro["items"])}
    if kind == "map":
        return {"type": ["object"], "additionalProperties": avro_to_json_schema(avro["values"])}
    if kind == "record":
        return {
            "type": ["object"],
            "properties": {f["name"]: avro_to_json_schema(f["type"]) for f in avro["fields"]},
        }
    return avro_to_json_schema(kind)


def merge_json_schemas(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A schema that accepts everything either schema accepts (types joined, properties united)."""
    merged = copy.deepcopy(old)
    types = _type_list(old)
    types += [t for t in _type_list(new) if t not in types]
    merged["type"] = types
    for key, value in new.items():
        if key == "type":
            continue
        if key == "properties":
            props = merged.setdefault("properties", {})
            for name, sub in value.items():
                props[name] = merge_json_schemas(props[name], sub) if name in props else sub
        elif key in {"items", "additionalProperties"} and isinstance(merged.get(key), dict):
            merged[key] = merge_json_schemas(merged[key], value)
        else:
            merged.setdefault(key, copy.deepcopy(value))
    return merged


def _type_list(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def record_fields_schema(avro_record: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema properties of an Avro record's top-level fields."""
    return avro_to_json_schema(avro_record)["properties"]
