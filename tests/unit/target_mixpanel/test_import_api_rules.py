"""check_event: what Mixpanel's Import API refuses, before any request."""

from __future__ import annotations

import time

import pytest

from target_mixpanel.mixpanel_rules import MAX_PROPERTIES, Refused, check_event, epoch_seconds

NOW = int(time.time())


def good(**overrides: object) -> dict:
    return {"distinct_id": "user-1", "time": NOW - 60, "$insert_id": "abc-123", **overrides}


def refused_field(name: object, properties: dict) -> str:
    with pytest.raises(Refused) as refused:
        check_event(name, properties)
    return refused.value.field


def test_a_valid_event_passes() -> None:
    check_event("Opened App", good())
    check_event("Opened App", good(time=(NOW - 60) * 1000))  # milliseconds


@pytest.mark.parametrize("name", ["", None, 3])
def test_the_event_name_must_be_a_non_empty_string(name: object) -> None:
    assert refused_field(name, good()) == "event"


@pytest.mark.parametrize("distinct_id", [None, 7, "null", " Anonymous ", "0", "undefined"])
def test_distinct_ids_mixpanel_refuses(distinct_id: object) -> None:
    assert refused_field("e", good(distinct_id=distinct_id)) == "distinct_id"


@pytest.mark.parametrize("moment", [None, "1700000000", True, 1000, NOW + 7200,
                                    (NOW + 7200) * 1000])
def test_times_mixpanel_refuses(moment: object) -> None:
    assert refused_field("e", good(time=moment)) == "time"


def test_up_to_an_hour_ahead_is_accepted() -> None:
    check_event("e", good(time=NOW + 3000))


@pytest.mark.parametrize("insert_id", [None, "", "a" * 37, "has space", "dot.ted"])
def test_insert_ids_mixpanel_refuses(insert_id: object) -> None:
    assert refused_field("e", good(**{"$insert_id": insert_id})) == "$insert_id"


def test_at_most_255_properties() -> None:
    extra = {f"p{i}": i for i in range(MAX_PROPERTIES - 3)}
    check_event("e", good(**extra))
    assert refused_field("e", good(**extra, one_more=1)) == "properties"


def test_epoch_seconds_reads_milliseconds() -> None:
    assert epoch_seconds(1_700_000_000) == 1_700_000_000
    assert epoch_seconds(1_700_000_000_500) == 1_700_000_000.5
