"""The tap's input state checks and its settings checks, without running the tap."""

from __future__ import annotations

import datetime as dt

import pytest

from plugin_support.config_errors import SettingError
from tap_braze_currents.batch_files import MAX_NAME_PART, file_name_part
from tap_braze_currents.settings import CurrentsSettings
from tap_braze_currents.state_check import StateError, check_state, parse_state_text


def test_future_hours_leave_the_state_and_the_newest_real_hour_becomes_the_bookmark() -> None:
    state = {"bookmarks": {"s": {"newest_hour": "2099-01-01-00",
                                 "read": {"2025-04-01-05": "AAAAAAAA",
                                          "2099-01-01-00": "BBBBBBBB"}}}}
    check_state(state, "2025-04-02-03")
    assert state == {"bookmarks": {"s": {"newest_hour": "2025-04-01-05",
                                         "read": {"2025-04-01-05": "AAAAAAAA"}}}}


def test_hours_within_the_tolerance_are_kept() -> None:
    state = {"bookmarks": {"s": {"newest_hour": "2025-04-02-03",
                                 "read": {"2025-04-02-03": "AAAAAAAA"}}}}
    check_state(state, "2025-04-02-03")
    assert state["bookmarks"]["s"]["newest_hour"] == "2025-04-02-03"


def test_latest_hour_is_now_plus_the_tolerance() -> None:
    now = dt.datetime(2025, 4, 1, 22, 59, tzinfo=dt.timezone.utc)
    assert CurrentsSettings(future_hours_tolerance=3).latest_hour(now) == "2025-04-02-01"
    assert CurrentsSettings(future_hours_tolerance=0).latest_hour(now) == "2025-04-01-22"


@pytest.mark.parametrize("read", [{"2025-04-01-00": "abc"}, {"2025-04-01-00": 5},
                                  {"2025-04-01-00": ["zz"]}, {"soon": "AAAAAAAA"}, ["x"]])
def test_bookmarks_this_tap_did_not_write_are_refused_naming_the_stream(read: object) -> None:
    with pytest.raises(StateError, match="state for stream users_x is not a state this tap"):
        check_state({"bookmarks": {"users_x": {"newest_hour": "2025-04-01-00", "read": read}}},
                    "2025-04-02-00")


def test_a_state_file_that_is_not_json_is_named() -> None:
    with pytest.raises(StateError, match=r"state file /x/state\.json is not JSON"):
        parse_state_text("{not json", "/x/state.json")
    assert parse_state_text("", "/x/state.json") == {}


def test_dates_must_parse_and_leave_an_hour_to_read() -> None:
    with pytest.raises(SettingError, match=r"start_date 'yesterday'.*ISO 8601"):
        CurrentsSettings.from_config({"start_date": "yesterday"})
    with pytest.raises(SettingError, match=r"end_date .* start_date"):
        CurrentsSettings.from_config({"start_date": "2025-04-01T05:00:00Z",
                                      "end_date": "2025-04-01T05:30:00"})
    CurrentsSettings.from_config({"start_date": "2025-04-01T05:00:00Z",
                                  "end_date": "2025-04-01T06:00:00Z"})


def test_long_stream_names_are_cut_in_file_names_and_stay_distinct() -> None:
    first, second = "users_custom_" + "x" * 190, "users_custom_" + "x" * 189 + "y"
    assert len(file_name_part(first).encode()) <= MAX_NAME_PART
    assert file_name_part(first) != file_name_part(second)
    assert file_name_part("users_messages_email_send") == "users_messages_email_send"
