"""Avro -> JSON Schema, and the merge of drifted schemas."""

from __future__ import annotations

from tap_braze_currents.json_schema import avro_to_json_schema, merge_json_schemas


def test_primitives_unions_and_logical_types() -> None:
    assert avro_to_json_schema(["null", "long"]) == {"type": ["null", "integer"]}
    assert avro_to_json_schema("float") == {"type": ["number"]}
    assert avro_to_json_schema({"type": "long", "logicalType": "timestamp-millis"}) == {
        "type": ["string"], "format": "date-time"}
    assert avro_to_json_schema({"type": "array", "items": "string"}) == {
        "type": ["array"], "items": {"type": ["string"]}}
    assert avro_to_json_schema({"type": "map", "values": "int"}) == {
        "type": ["object"], "additionalProperties": {"type": ["integer"]}}


def test_records_nest() -> None:
    avro = {"type": "record", "name": "r", "fields": [
        {"name": "a", "type": "string"},
        {"name": "b", "type": {"type": "record", "name": "in", "fields": [
            {"name": "c", "type": ["null", "double"]}]}}]}
    assert avro_to_json_schema(avro) == {"type": ["object"], "properties": {
        "a": {"type": ["string"]},
        "b": {"type": ["object"], "properties": {"c": {"type": ["null", "number"]}}}}}


def test_merge_accepts_what_either_accepts() -> None:
    old = {"type": ["object"], "properties": {"a": {"type": ["string"]},
                                              "n": {"type": ["integer"]}}}
    new = {"type": ["object"], "properties": {"n": {"type": ["null", "number"]},
                                              "z": {"type": ["boolean"]}}}
    merged = merge_json_schemas(old, new)
    assert merged == {"type": ["object"], "properties": {
        "a": {"type": ["string"]}, "n": {"type": ["integer", "null", "number"]},
        "z": {"type": ["boolean"]}}}


def test_merge_joins_items_and_leaves_its_inputs_alone() -> None:
    old = {"type": ["array"], "items": {"type": ["string"]}}
    new = {"type": "array", "items": {"type": ["integer"]}}
    merged = merge_json_schemas(old, new)
    assert merged == {"type": ["array"], "items": {"type": ["string", "integer"]}}
    assert old == {"type": ["array"], "items": {"type": ["string"]}}
