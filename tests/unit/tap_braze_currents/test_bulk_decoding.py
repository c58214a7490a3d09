"""The bulk (polars) path writes the same records as the record-by-record path, damage included."""

from __future__ import annotations

import io
import json
from pathlib import Path

import fastavro
import pytest

from tap_braze_currents.avro_decoding import BULK_BYTES, AvroFile
from tap_braze_currents.bulk_decoding import bulk_decodable
from tap_braze_currents.demo_export import write_demo_export
from tap_braze_currents.event_types import catalog
from tap_braze_currents.layout import EVENT_TYPE_PREFIX, segment_value
from tap_braze_currents.line_format import FileLines

LINES = FileLines({"type": "RECORD", "stream": "s"}, {"event_type": "t", "_sdc_source_file": "f"})


def _bulk(data: bytes, event_type: str) -> tuple[list[dict], AvroFile]:
    avro = AvroFile(io.BytesIO(data), event_type, "f")
    text = b"".join(avro.record_lines(LINES)).decode()
    messages = [json.loads(line) for line in text.splitlines()]
    return [m["record"] for m in messages], avro


def _one_by_one(data: bytes, event_type: str) -> tuple[list[dict], AvroFile]:
    avro = AvroFile(io.BytesIO(data), event_type, "f")
    records = [{"event_type": "t", "_sdc_source_file": "f", **r} for r in avro.decoded()]
    # through JSON, as a target would see them
    return json.loads(json.dumps(records)), avro


def test_every_event_type_comes_out_the_same_both_ways(tmp_path: Path) -> None:
    write_demo_export(str(tmp_path), hours=1, integrations=1, events_per_file=30)
    files = sorted(tmp_path.rglob("*.avro"))
    seen = set()
    for path in files:
        data = path.read_bytes()
        event_type = segment_value(str(path), EVENT_TYPE_PREFIX)
        assert event_type is not None
        seen.add(event_type)
        bulk, bulk_file = _bulk(data, event_type)
        plain, plain_file = _one_by_one(data, event_type)
        assert bulk_decodable(bulk_file.writer_schema), path
        assert bulk == plain, path
        assert bulk_file.count == plain_file.count == len(plain)
        assert bulk_file.invalid_json == plain_file.invalid_json
        assert bulk_file.error is None
    assert seen == set(catalog())


def _custom_events(count: int, codec: str = "null") -> bytes:
    schema = {"type": "record", "name": "CustomEvent", "fields": [
        {"name": "id", "type": "string"}, {"name": "time", "type": "int"},
        {"name": "price", "type": ["null", "float"]},
        {"name": "tags", "type": ["null", {"type": "array", "items": "string"}]},
        {"name": "properties", "type": ["null", "string"]}]}
    records = [{"id": f"e-{i}", "time": 1743500000 + i, "price": 3.14 if i % 2 else None,
                "tags": ["a", "ü"] if i % 3 else None,
                "properties": [json.dumps({"n": i, "city": "東京"}), "not json {", None,
                               "[1, 2]"][i % 4]}
               for i in range(count)]
    out = io.BytesIO()
    fastavro.writer(out, schema, records, codec=codec)
    return out.getvalue()


@pytest.mark.parametrize("codec", ["null", "deflate", "zstandard"])
def test_a_file_larger_than_one_batch(codec: str) -> None:
    data = _custom_events(20_000, codec)
    bulk, bulk_file = _bulk(data, "users.behaviors.CustomEvent")
    plain, plain_file = _one_by_one(data, "users.behaviors.CustomEvent")
    assert len(bulk) == 20_000
    assert bulk == plain
    assert bulk[1]["price"] == 3.14
    assert bulk[0]["properties"] == {"n": 0, "city": "東京"}
    assert bulk[1]["properties"] == "not json {"
    assert bulk_file.invalid_json == plain_file.invalid_json == 10_000  # strings and arrays


def test_damage_inside_a_block_stops_where_the_record_path_stops() -> None:
    data = bytearray(_custom_events(20_000))
    blocks = list(fastavro.block_reader(io.BytesIO(bytes(data))))
    assert sum(b.size for b in blocks[:3]) < BULK_BYTES < sum(b.size for b in blocks)
    # garble a record inside the fourth block: a string length turns huge
    middle = blocks[3].offset + blocks[3].size // 2
    data[middle:middle + 8] = b"\xff" * 8
    bulk, bulk_file = _bulk(bytes(data), "users.behaviors.CustomEvent")
    plain, plain_file = _one_by_one(bytes(data), "users.behaviors.CustomEvent")
    assert plain_file.error is not None
    assert bulk_file.error is not None
    assert bulk == plain
    assert 0 < len(bulk) < 20_000


def test_a_schema_polars_cannot_read_goes_record_by_record() -> None:
    schema = {"type": "record", "name": "Odd", "fields": [
        {"name": "id", "type": "string"},
        {"name": "extras", "type": ["null", {"type": "map", "values": "string"}]},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    out = io.BytesIO()
    fastavro.writer(out, schema, [{"id": "x", "extras": {"k": "v"}, "at": 0}])
    avro = AvroFile(io.BytesIO(out.getvalue()), "users.Odd", "f")
    assert not bulk_decodable(avro.writer_schema)
    lines = b"".join(avro.record_lines(LINES)).splitlines()
    record = json.loads(lines[0])["record"]
    assert record["extras"] == {"k": "v"}
    assert record["at"].startswith("1970-01-01")
