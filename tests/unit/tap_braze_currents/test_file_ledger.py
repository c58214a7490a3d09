"""FileLedger: which files a stream read, kept in its state and bounded by the lookback."""

from __future__ import annotations

import base64
import json

from tap_braze_currents.file_ledger import FileLedger
from tap_braze_currents.storage import CurrentsFile


def file(hour: str, name: str = "a", version: str = "v1") -> CurrentsFile:
    return CurrentsFile(hour=hour, path=f"b/date={hour}/{name}.avro", event_type="t", size=10,
                        version=version)


def test_a_read_file_is_known_and_lands_in_the_state() -> None:
    state: dict = {}
    ledger = FileLedger(state, lookback_hours=2)
    ledger.mark_read(file("2026-12-01-10"))
    assert ledger.is_read(file("2026-12-01-10"))
    assert not ledger.is_read(file("2026-12-01-10", name="b"))
    assert state["newest_hour"] == "2026-12-01-10"
    reloaded = FileLedger(json.loads(json.dumps(state)), lookback_hours=2)
    assert reloaded.is_read(file("2026-12-01-10"))


def test_a_rewritten_key_is_read_again() -> None:
    ledger = FileLedger({}, lookback_hours=2)
    ledger.mark_read(file("2026-12-01-10"))
    assert not ledger.is_read(file("2026-12-01-10", version="v2"))


def test_hours_older_than_the_window_are_dropped() -> None:
    state: dict = {}
    ledger = FileLedger(state, lookback_hours=2)
    for hour in range(24):
        ledger.mark_read(file(f"2026-12-01-{hour:02d}"))
    assert sorted(state["read"]) == ["2026-12-01-21", "2026-12-01-22", "2026-12-01-23"]
    assert not ledger.is_read(file("2026-12-01-05"))


def test_marking_twice_keeps_one_digest() -> None:
    state: dict = {}
    ledger = FileLedger(state, lookback_hours=2)
    ledger.mark_read(file("2026-12-01-10"))
    ledger.mark_read(file("2026-12-01-10"))
    # one 6-byte digest, packed (file_ledger.py)
    assert len(base64.urlsafe_b64decode(state["read"]["2026-12-01-10"])) == 6


def test_an_older_file_does_not_move_the_newest_hour_back() -> None:
    state: dict = {}
    ledger = FileLedger(state, lookback_hours=5)
    ledger.mark_read(file("2026-12-01-10"))
    ledger.mark_read(file("2026-12-01-08"))
    assert ledger.newest_hour == "2026-12-01-10"


def test_the_window_starts_at_start_hour_then_at_the_lookback() -> None:
    ledger = FileLedger({}, lookback_hours=3)
    assert ledger.window_start("2026-11-01-00") == "2026-11-01-00"
    assert ledger.window_start(None) is None
    ledger.mark_read(file("2026-12-01-10"))
    assert ledger.window_start(None) == "2026-12-01-07"
    assert ledger.window_start("2026-12-01-09") == "2026-12-01-09"
