"""check_event: what Mixpanel's Import API refuses, before any request."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from target_mixpanel import mixpanel_rules
from target_mixpanel.mixpanel_rules import (
    MAX_FUTURE_SECONDS,
    MAX_PROPERTIES,
    Refused,
    check_event,
    epoch_seconds,
)

NOW = 1_800_000_000   # the clock the rules read, fixed: the same cases (and test ids) every run


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mixpanel_rules, "time", SimpleNamespace(time=lambda: float(NOW)))


def good(**overrides: object) -> dict:
    return {"distinct_id": "user-1", "time": NOW - 60, "$insert_id": "abc-123", **overrides}


def refused_field(name: object, properties: dict) -> str | None:
    """The field Mixpanel would refuse the event for; None when it takes it."""
    try:
        check_event(name, properties)
    except Refused as refused:
        return refused.field
    return None


@pytest.mark.parametrize("moment", [NOW - 60, (NOW - 60) * 1000], ids=["seconds", "milliseconds"])
def test_a_valid_event_passes_and_each_required_property_is_needed(moment: int) -> None:
    event = good(time=moment)
    assert refused_field("Opened App", event) is None
    for required in ("distinct_id", "time", "$insert_id"):
        without = {k: v for k, v in event.items() if k != required}
        assert refused_field("Opened App", without) == required


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


def test_up_to_an_hour_ahead_is_accepted_and_no_more() -> None:
    assert MAX_FUTURE_SECONDS == 3600
    assert refused_field("e", good(time=NOW + 3600)) is None
    assert refused_field("e", good(time=(NOW + 3600) * 1000)) is None
    assert refused_field("e", good(time=NOW + 3601)) == "time"


@pytest.mark.parametrize("insert_id", [None, "", "a" * 37, "has space", "dot.ted"])
def test_insert_ids_mixpanel_refuses(insert_id: object) -> None:
    assert refused_field("e", good(**{"$insert_id": insert_id})) == "$insert_id"


def test_at_most_255_properties() -> None:
    extra = {f"p{i}": i for i in range(MAX_PROPERTIES - 3)}
    assert refused_field("e", good(**extra)) is None
    assert refused_field("e", good(**extra, one_more=1)) == "properties"


def test_epoch_seconds_reads_milliseconds() -> None:
    assert epoch_seconds(1_700_000_000) == 1_700_000_000
    assert epoch_seconds(1_700_000_000_500) == 1_700_000_000.5
