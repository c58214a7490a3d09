"""A plain singer-sdk tap over the same Currents files: the baseline the tap benchmark prints.

Default SDK writer (flush per message) and default type conformance; fastavro decoding;
one stream per event type found under the folder. No incremental state.
"""

from __future__ import annotations

import sys
from pathlib import Path

import fastavro
from singer_sdk import Stream, Tap
from singer_sdk import typing as th

from tap_braze_currents.event_types import catalog_avro_schema, stream_name
from tap_braze_currents.json_schema import record_fields_schema


class PlainStream(Stream):
    primary_keys = ("id",)

    def __init__(self, tap: Tap, event_type: str, files: list[Path]):
        self.files = files
        schema = {"type": "object",
                  "properties": record_fields_schema(catalog_avro_schema(event_type))}
        super().__init__(tap, schema=schema, name=stream_name(event_type))

    def get_records(self, context):
        for path in self.files:
            with open(path, "rb") as handle:
                yield from fastavro.reader(handle)


class PlainTap(Tap):
    name = "plain-sdk-currents"
    config_jsonschema = th.PropertiesList(th.Property("folder", th.StringType)).to_dict()

    def discover_streams(self) -> list[Stream]:
        by_type: dict[str, list[Path]] = {}
        for path in sorted(Path(self.config["folder"]).rglob("*.avro")):
            event_type = next(p for p in path.parts if p.startswith("event_type="))[11:]
            by_type.setdefault(event_type, []).append(path)
        return [PlainStream(self, t, files) for t, files in by_type.items()]


if __name__ == "__main__":
    sys.exit(PlainTap.cli())
