"""plugin_support.retry.retry_after_seconds: Retry-After in both forms (RFC 9110 10.2.3)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from plugin_support.retry import retry_after_seconds

NOW = dt.datetime(2026, 12, 7, 0, 0, 0, tzinfo=dt.timezone.utc).timestamp()


def _now() -> float:
    return NOW


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), ("0", 0.0), (" 7 ", 7.0),
                                                ("1.5", 1.5)])
def test_delta_seconds(value: str, seconds: float) -> None:
    assert retry_after_seconds(value, _now) == seconds


@pytest.mark.parametrize("value", [
    "Mon, 07 Dec 2026 00:00:30 GMT",       # IMF-fixdate, the form senders use
    "Monday, 07-Dec-26 00:00:30 GMT",      # obsolete RFC 850 form, still to be read
    "Mon Dec  7 00:00:30 2026",            # obsolete asctime form (no zone: UTC)
])
def test_an_http_date_in_the_future_is_the_time_until_it(
        value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # an HTTP date is UTC, whatever the local zone
    time.tzset()
    try:
        assert retry_after_seconds(value, _now) == 30.0
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_http_date_in_the_past_asks_for_no_wait() -> None:
    assert retry_after_seconds("Sun, 06 Dec 2026 23:59:00 GMT", _now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "nan", "inf", "30 seconds",
                                   "Mon, 99 Foo 2026 00:00:30 GMT"])
def test_no_header_or_garbage_is_none(value: str | None) -> None:
    assert retry_after_seconds(value, _now) is None
