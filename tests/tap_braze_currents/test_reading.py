"""The tap reading a local export: completeness, record shape, quirks, schema drift, damage."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import fastavro
import fsspec

from tap_braze_currents.demo_export import currents_key, write_avro_file, write_demo_export
from tap_braze_currents.event_types import catalog, catalog_avro_schema
from tests.conftest import SAMPLE_TYPES


def test_every_event_of_every_type_comes_out_once(tmp_path: Path, run_tap) -> None:
    export = write_demo_export(str(tmp_path / "export"), hours=2, events_per_file=5)
    run = run_tap({"storage_url": str(tmp_path / "export")})
    assert run.returncode == 0, run.stderr
    expected = [i for ids in export.ids.values() for i in ids]
    assert Counter(run.ids) == Counter(expected)
    assert len(export.ids) == len(catalog()) == 102
    by_stream = Counter(m["stream"] for m in run.records)
    assert by_stream["users_messages_email_send"] == len(export.ids["users.messages.email.Send"])


def test_records_carry_braze_names_event_type_and_source(tmp_path: Path, run_tap) -> None:
    write_demo_export(str(tmp_path), event_types=["users.messages.email.Send"], hours=1,
                      integrations=1, events_per_file=3)
    run = run_tap({"storage_url": str(tmp_path)})
    record = run.records[0]
    assert record["stream"] == "users_messages_email_send"
    fields = record["record"]
    assert fields["event_type"] == "users.messages.email.Send"
    assert fields["_sdc_source_file"].startswith("file://")
    assert fields["_sdc_source_file"].endswith(".avro")
    catalog_names = {f["name"] for f in catalog()["users.messages.email.Send"]["fields"]}
    assert catalog_names <= set(fields)
    schema = run.schemas("users_messages_email_send")[0]
    assert schema["properties"]["time"]["type"] == ["integer"]
    assert schema["properties"]["external_user_id"]["type"] == ["null", "string"]


def test_float32_prices_come_out_as_short_decimals(tmp_path: Path, run_tap) -> None:
    write_demo_export(str(tmp_path), event_types=["users.behaviors.Purchase"], hours=1,
                      events_per_file=40)
    run = run_tap({"storage_url": str(tmp_path)})
    prices = {m["record"]["price"] for m in run.records}
    assert prices <= {3.14, 0.99, 19.99, 4.2, 1234.56, 7.1}
    assert '"price":3.14' in run.stdout or '"price":0.99' in run.stdout
    assert "3.140000104904175" not in run.stdout


def test_properties_json_becomes_an_object_and_bad_json_is_kept(tmp_path: Path, run_tap) -> None:
    schema = catalog_avro_schema("users.behaviors.CustomEvent")
    template = {f["name"]: None for f in schema["fields"]}
    good = {**template, "id": "e-good", "user_id": "u", "time": 1743500000, "name": "Added",
            "properties": json.dumps({"plan": "pro", "n": 2, "city": "東京"})}
    bad = {**good, "id": "e-bad", "properties": "{not json"}
    fs = fsspec.filesystem("file")
    key = currents_key("abc", "users.behaviors.CustomEvent", "2025-04-01-00", old_layout=False,
                       partition=0, offset=0)
    write_avro_file(fs, str(tmp_path / key), schema, [good, bad])
    run = run_tap({"storage_url": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    by_id = {m["record"]["id"]: m["record"] for m in run.records}
    assert by_id["e-good"]["properties"] == {"plan": "pro", "n": 2, "city": "東京"}
    assert by_id["e-bad"]["properties"] == "{not json"
    assert "1 values in" in run.stderr
    assert "not JSON objects" in run.stderr


def _write(tmp_path: Path, event_type: str, hour: str, schema: dict, records: list[dict],
           offset: int, codec: str = "null") -> str:
    key = currents_key("int1", event_type, hour, old_layout=offset % 2 == 1, partition=0,
                       offset=offset)
    path = str(tmp_path / key)
    write_avro_file(fsspec.filesystem("file"), path, schema, records, codec)
    return path


def test_drifted_writer_schemas_are_all_read(tmp_path: Path, run_tap) -> None:
    event_type = "users.behaviors.app.SessionStart"
    base = catalog_avro_schema(event_type)
    base_record = {f["name"]: None for f in base["fields"]}
    base_record.update({"id": "a1", "user_id": "u1", "time": 1743500000, "app_id": "app",
                        "session_id": "s"})
    required = {f["name"] for f in base["fields"] if not isinstance(f["type"], list)}
    base_record = {k: (v if v is not None or k not in required else "x")
                   for k, v in base_record.items()}
    # 1: a new optional field; 2: a field removed; 3: time widened from int to long
    added = {**base, "fields": [*base["fields"],
                                {"name": "brand_new_field", "type": ["null", "string"]}]}
    removed = {**base, "fields": [f for f in base["fields"] if f["name"] != "device_model"]}
    widened = {**base, "fields": [({**f, "type": "long"} if f["name"] == "time" else f)
                                  for f in base["fields"]]}
    _write(tmp_path, event_type, "2025-04-01-00", base, [base_record], 1)
    _write(tmp_path, event_type, "2025-04-01-01", added,
           [{**base_record, "id": "a2", "brand_new_field": "hello"}], 2, "deflate")
    _write(tmp_path, event_type, "2025-04-01-02", removed,
           [{k: v for k, v in base_record.items() if k != "device_model"} | {"id": "a3"}], 3)
    _write(tmp_path, event_type, "2025-04-01-03", widened,
           [{**base_record, "id": "a4", "time": 17435000000}], 4, "snappy")
    run = run_tap({"storage_url": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert sorted(run.ids) == ["a1", "a2", "a3", "a4"]
    by_id = {m["record"]["id"]: m["record"] for m in run.records}
    assert by_id["a2"]["brand_new_field"] == "hello"
    assert by_id["a4"]["time"] == 17435000000
    schemas = run.schemas("users_behaviors_app_sessionstart")
    assert "brand_new_field" not in schemas[0]["properties"]
    assert schemas[-1]["properties"]["brand_new_field"]["type"] == ["null", "string"]
    # the widened schema is announced before the record that needs it
    lines = run.stdout.splitlines()
    schema_line = next(i for i, line in enumerate(lines) if "brand_new_field" in line
                       and '"type":"SCHEMA"' in line)
    record_line = next(i for i, line in enumerate(lines) if '"id":"a2"' in line)
    assert schema_line < record_line


def _truncated_copy(tmp_path: Path) -> tuple[str, int]:
    """A multi-block file cut in the middle of a later block; returns its path and good records."""
    event_type = "users.behaviors.Location"
    schema = catalog_avro_schema(event_type)
    write_demo_export(str(tmp_path / "src"), event_types=[event_type], hours=1, integrations=1,
                      events_per_file=1)
    with open(next((tmp_path / "src").rglob("*.avro")), "rb") as handle:
        template = next(iter(fastavro.reader(handle)))
    records = [{**template, "id": f"loc-{i}"} for i in range(3000)]
    path = _write(tmp_path / "export", event_type, "2025-04-01-00", schema, records, 0)
    blocks = []
    with open(path, "rb") as handle:
        for block in fastavro.block_reader(handle):
            blocks.append((block.offset, block.size, block.num_records))
    assert len(blocks) >= 2
    offset, size, _ = blocks[-1]
    good = sum(n for _, _, n in blocks[:-1])
    with open(path, "r+b") as handle:
        handle.truncate(offset + size // 2)
    shutil.rmtree(tmp_path / "src")
    return path, good


def test_truncated_file_yields_records_before_the_damage(tmp_path: Path, run_tap) -> None:
    path, good = _truncated_copy(tmp_path)
    run = run_tap({"storage_url": str(tmp_path / "export")})
    assert run.returncode == 0, run.stderr
    assert len(run.records) == good > 0
    assert "is damaged" in run.stderr
    assert Path(path).name in run.stderr
    # the damaged file counts as read: the next run does not warn again
    again = run_tap({"storage_url": str(tmp_path / "export")}, run.last_state)
    assert again.records == []
    assert "is damaged" not in again.stderr


def test_truncated_file_fails_the_run_when_asked(tmp_path: Path, run_tap) -> None:
    path, _ = _truncated_copy(tmp_path)
    run = run_tap({"storage_url": str(tmp_path / "export"), "on_corrupt_file": "fail"})
    assert run.returncode != 0
    assert "CorruptFileError" in run.stderr
    assert Path(path).name in run.stderr
    assert "on_corrupt_file" in run.stderr


def test_a_file_that_is_not_avro_is_reported_not_fatal(tmp_path: Path, run_tap) -> None:
    write_demo_export(str(tmp_path), event_types=["users.behaviors.Location"], hours=1,
                      integrations=1, events_per_file=4)
    bogus = tmp_path / currents_key("zzz", "users.behaviors.Location", "2025-04-01-00",
                                    old_layout=False, partition=9, offset=9)
    bogus.parent.mkdir(parents=True, exist_ok=True)
    bogus.write_bytes(b"this is not avro at all")
    (bogus.parent / "_SUCCESS").write_text("")
    (bogus.parent / "notes.json").write_text("{}")
    run = run_tap({"storage_url": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert len(run.records) == 4
    assert bogus.name in run.stderr
    assert "damaged" in run.stderr


def test_every_codec_is_read(tmp_path: Path, run_tap) -> None:
    schema = catalog_avro_schema("users.behaviors.Location")
    write_demo_export(str(tmp_path / "src"), event_types=["users.behaviors.Location"], hours=1,
                      integrations=1, events_per_file=1)
    with open(next((tmp_path / "src").rglob("*.avro")), "rb") as handle:
        template = next(iter(fastavro.reader(handle)))
    for n, codec in enumerate(["null", "deflate", "snappy", "zstandard"]):
        _write(tmp_path / "export", "users.behaviors.Location", "2025-04-01-00", schema,
               [{**template, "id": f"{codec}-{i}"} for i in range(5)], n, codec)
    run = run_tap({"storage_url": str(tmp_path / "export")})
    assert run.returncode == 0, run.stderr
    assert sorted(run.ids) == sorted(f"{c}-{i}" for c in
                                     ["null", "deflate", "snappy", "zstandard"] for i in range(5))


def test_unknown_event_type_in_storage_gets_its_own_stream(tmp_path: Path, run_tap) -> None:
    schema = {"type": "record", "name": "Send", "fields": [
        {"name": "id", "type": "string"}, {"name": "user_id", "type": "string"},
        {"name": "external_user_id", "type": ["null", "string"]},
        {"name": "time", "type": "int"}, {"name": "carrier_pigeon", "type": "string"}]}
    _write(tmp_path, "users.messages.pigeon.Send", "2025-04-01-00", schema,
           [{"id": "p1", "user_id": "u", "external_user_id": "x", "time": 1743500000,
             "carrier_pigeon": "Gustav"}], 0)
    run = run_tap({"storage_url": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    assert [(m["stream"], m["record"]["carrier_pigeon"]) for m in run.records] == [
        ("users_messages_pigeon_send", "Gustav")]


def test_event_types_and_dates_limit_what_is_read(tmp_path: Path, run_tap) -> None:
    export = write_demo_export(str(tmp_path), event_types=SAMPLE_TYPES[:3], hours=4,
                               integrations=1, events_per_file=2)
    run = run_tap({"storage_url": str(tmp_path), "event_types": [SAMPLE_TYPES[1]],
                   "start_date": "2025-04-01T01:00:00Z", "end_date": "2025-04-01T03:00:00Z"})
    assert run.returncode == 0, run.stderr
    assert {m["stream"] for m in run.records} == {"users_behaviors_purchase"}
    hours = {m["record"]["_sdc_source_file"].split("date=")[1][:13] for m in run.records}
    assert hours == {"2025-04-01-01", "2025-04-01-02"}
    assert len(run.records) == 4 < len(export.ids[SAMPLE_TYPES[1]])
