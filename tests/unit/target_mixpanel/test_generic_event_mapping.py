"""GenericMapping.map on single records: event name, identity, time, properties (and the
Singer metadata rule both mappings share)."""

from __future__ import annotations

import pytest

from target_mixpanel.event_mapping import BrazeCurrentsMapping, GenericMapping
from target_mixpanel.mixpanel_rules import Refused

RECORD = {"id": "r-1", "user": "u-1", "time": 1795255200}


def mapped(record: dict, event_name: str = "{stream}", insert_id_field: str | None = "id") -> dict:
    return GenericMapping(event_name, "user", "time", insert_id_field).map("rows", record)


def test_stream_placeholder_is_the_stream_name() -> None:
    assert mapped(RECORD, "{stream} seen")["event"] == "rows seen"
    assert mapped({**RECORD, "stream": "x"}, "{stream}")["event"] == "rows"


@pytest.mark.parametrize("empty", ["", None])
def test_an_empty_insert_id_is_absent(empty: object) -> None:
    first = mapped({**RECORD, "id": empty})["properties"]["$insert_id"]
    second = mapped({**RECORD, "id": empty, "user": "u-2"})["properties"]["$insert_id"]
    assert first != second
    unset = mapped({**RECORD, "id": empty}, insert_id_field=None)
    assert first == unset["properties"]["$insert_id"]


def test_every_sdc_column_is_dropped() -> None:
    record = {**RECORD, "_sdc_filename": "a.csv", "_sdc_source_lineno": 3,
              "_sdc_last_modified": "2026-01-01", "_sdc_stream": "rows", "kept": 1}
    assert mapped(record)["properties"] == {"time": 1795255200, "distinct_id": "u-1",
                                            "$insert_id": "r-1", "kept": 1}


@pytest.mark.parametrize(("text", "expected"), [
    ("1795255200", 1795255200), ("1795255200123", 1795255200123), ("1795255200.5", 1795255200.5),
    (" 1795255200 ", 1795255200)])
def test_numeric_strings_are_epoch_times(text: str, expected: float) -> None:
    moment = mapped({**RECORD, "time": text})["properties"]["time"]
    assert moment == expected
    assert type(moment) is type(expected)


@pytest.mark.parametrize(("record", "event_name", "setting"), [
    ({"id": "r-1", "time": 1795255200}, "{stream}", "distinct_id_field"),
    ({"id": "r-1", "user": "u-1"}, "{stream}", "time_field"),
    ({**RECORD, "time": "yesterday"}, "{stream}", "time_field"),
    (RECORD, "{status}", "event_name"),
])
def test_a_refusal_caused_by_a_setting_names_it(record: dict, event_name: str,
                                                setting: str) -> None:
    with pytest.raises(Refused) as refused:
        mapped(record, event_name)
    assert refused.value.setting == setting


def test_columns_named_like_the_identity_never_replace_it() -> None:
    record = {"id": "r-1", "user": "u-1", "created": 1795255200, "time": "soon",
              "distinct_id": "someone-else", "$insert_id": "other"}
    properties = GenericMapping("{stream}", "user", "created", "id").map("rows", record)[
        "properties"]
    assert (properties["time"], properties["distinct_id"], properties["$insert_id"]) == (
        1795255200, "u-1", "r-1")


def test_sdc_columns_first_seen_late_are_dropped_too() -> None:
    mapping = GenericMapping("{stream}", "user", "time", "id")
    mapping.map("rows", RECORD)
    later = mapping.map("rows", {**RECORD, "_sdc_new": 1, "kept": 2})["properties"]
    assert "_sdc_new" not in later
    assert later["kept"] == 2


def test_the_braze_mapping_drops_every_sdc_column_too() -> None:
    record = {"id": "e-1", "external_user_id": "u-1", "time": 1795255200, "name": "x",
              "event_type": "users.behaviors.CustomEvent", "_sdc_source_file": "s3://f",
              "_sdc_source_lineno": 4, "_sdc_extracted_at": "2026-01-01"}
    properties = BrazeCurrentsMapping().map("users_behaviors_customevent", record)["properties"]
    assert properties == {"name": "x", "time": 1795255200, "distinct_id": "u-1",
                          "$insert_id": "e-1"}


def test_the_digest_ignores_singer_metadata_so_a_re_read_row_keeps_its_id() -> None:
    row = {"id": "", "user": "u-1", "time": 1795255200, "plan": "pro"}
    first = mapped({**row, "_sdc_last_modified": "2026-11-01T00:00:00Z"})
    again = mapped({**row, "_sdc_last_modified": "2026-11-02T00:00:00Z"})
    assert first["properties"]["$insert_id"] == again["properties"]["$insert_id"]
    other = mapped({**row, "plan": "free", "_sdc_last_modified": "2026-11-01T00:00:00Z"})
    assert other["properties"]["$insert_id"] != first["properties"]["$insert_id"]
