"""What the tap knows about Currents event types: the catalog, stream names, field quirks."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

# Currents string fields that carry a JSON-encoded object and come out as that object.
# A value that does not parse to an object is kept as the original string (and counted).
JSON_OBJECT_FIELDS: dict[str, tuple[str, ...]] = {
    "users.behaviors.CustomEvent": ("properties",),
    "users.behaviors.Purchase": ("properties",),
}

# Fields every record carries besides the Avro fields.
EXTRA_FIELDS: dict[str, dict] = {
    "event_type": {"type": ["string"]},
    "_sdc_source_file": {"type": ["string"]},
}


@cache
def catalog() -> dict[str, dict]:
    """Every known event type -> {"retired": bool, "fields": [Avro field, ...]}.

    Generated from ../shared/currents by tools/generate_tables.py.
    """
    text = resources.files(__package__).joinpath("event_catalog.json").read_text("utf-8")
    return json.loads(text)


def stream_name(event_type: str) -> str:
    """Singer stream name of a Currents event type: users.messages.email.Send -> users_messages_email_send."""  # noqa: E501
    return event_type.lower().replace(".", "_")


def _avro_type(catalog_type: Any) -> Any:
    """A catalog field type as Avro: the catalog writes arrays as {"array": items}."""
    if isinstance(catalog_type, list):
        return [_avro_type(branch) for branch in catalog_type]
    if isinstance(catalog_type, dict) and "array" in catalog_type:
        return {"type": "array", "items": _avro_type(catalog_type["array"])}
    return catalog_type


def catalog_avro_schema(event_type: str) -> dict | None:
    """The catalog's fields of a known type as an Avro record schema, or None if unknown."""
    entry = catalog().get(event_type)
    if entry is None:
        return None
    fields = [{"name": f["name"], "type": _avro_type(f["type"])} for f in entry["fields"]]
    return {"type": "record", "name": event_type.rsplit(".", 1)[-1], "fields": fields}
