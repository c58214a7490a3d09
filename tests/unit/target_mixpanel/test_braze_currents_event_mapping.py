"""BrazeCurrentsMapping: Currents records named and shaped as Braze's own Mixpanel export."""

from __future__ import annotations

import pytest

from target_mixpanel.event_mapping import (
    BrazeCurrentsMapping,
    SkippedByRule,
    braze_event_names,
    insert_id_for,
    stream_of,
)
from target_mixpanel.mixpanel_rules import Refused

MAPPING = BrazeCurrentsMapping()
CUSTOM = "users.behaviors.CustomEvent"


def custom(**overrides: object) -> dict:
    return {"id": "a1b2-c3", "external_user_id": "user-1", "user_id": "braze-1",
            "time": 1_795_000_000, "name": "Added to Cart", "platform": "ios",
            "os_version": "17.1", "device_model": "iPhone15,2", "event_type": CUSTOM,
            "properties": {"plan": "pro", "gone": None}, "app_id": None, **overrides}


def test_identity_time_and_insert_id() -> None:
    event = MAPPING.map(stream_of(CUSTOM), custom())
    props = event["properties"]
    assert props["distinct_id"] == "user-1"
    assert props["time"] == 1_795_000_000
    assert props["$insert_id"] == "a1b2-c3"
    for identity in ("id", "external_user_id", "event_type"):
        assert identity not in props


def test_time_ms_wins_over_time() -> None:
    props = MAPPING.map("s", custom(time_ms=1_795_000_000_123))["properties"]
    assert props["time"] == 1_795_000_000_123


def test_braze_fields_renamed_to_mixpanel_properties_and_nulls_dropped() -> None:
    props = MAPPING.map("s", custom())["properties"]
    assert (props["$os"], props["$os_version"], props["$device"]) == (
        "ios", "17.1", "iPhone15,2")
    assert "platform" not in props
    assert "app_id" not in props


def test_custom_event_properties_are_spread_with_braze_prefix() -> None:
    props = MAPPING.map("s", custom())["properties"]
    assert props["[Custom event property] plan"] == "pro"
    assert "[Custom event property] gone" not in props
    assert "properties" not in props


def test_singer_metadata_is_not_sent() -> None:
    props = MAPPING.map("s", custom(_sdc_source_file="s3://b/k.avro",
                                    _sdc_extracted_at="2026-01-01"))["properties"]
    assert not [k for k in props if k.startswith("_sdc_")]


@pytest.mark.parametrize("missing", [None, ""])
def test_events_of_unidentified_users_are_skipped(missing: object) -> None:
    with pytest.raises(SkippedByRule):
        MAPPING.map("s", custom(external_user_id=missing))


def test_a_record_without_an_event_id_is_refused() -> None:
    record = custom()
    del record["id"]
    with pytest.raises(Refused) as refused:
        MAPPING.map("s", record)
    assert refused.value.field == "id"


def test_event_names_follow_braze_s_table() -> None:
    table = braze_event_names()
    plain = next(t for t, v in table.items() if "{" not in v["mixpanel_event"])
    assert MAPPING.event_name(plain, {}) == table[plain]["mixpanel_event"]
    # a type newer than the table keeps Braze's own name
    assert MAPPING.event_name("users.behaviors.Brand.New", {}) == "users.behaviors.Brand.New"


def test_the_event_type_comes_from_the_stream_when_the_record_lacks_it() -> None:
    record = custom()
    del record["event_type"]
    by_stream = MAPPING.map(stream_of(CUSTOM), record)
    assert by_stream == MAPPING.map("s", custom())


def test_the_same_record_maps_to_the_same_event() -> None:
    assert MAPPING.map("s", custom()) == MAPPING.map("s", custom())


def test_insert_id_keeps_valid_ids_and_digests_others() -> None:
    assert insert_id_for("ok-id-1") == "ok-id-1"
    long = insert_id_for("x" * 40)
    assert len(long) == 32
    assert long == insert_id_for("x" * 40)
    assert insert_id_for({"b": 1, "a": 2}) == insert_id_for({"a": 2, "b": 1})
    assert insert_id_for("has space") != insert_id_for("has  space")
