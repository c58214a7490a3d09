"""HeaderPace: send while the window has room, hold until its reset when not."""

from __future__ import annotations

import time

from plugin_support.rate_headers import HeaderPace

RESET = 1_000_000.0


def _pace(seconds_to_reset: float) -> HeaderPace:
    return HeaderPace(wall_clock=lambda: RESET - seconds_to_reset)


def _acquire_seconds(pace: HeaderPace) -> float:
    started = time.monotonic()
    pace.acquire()
    return time.monotonic() - started


def test_room_left_sends_at_once() -> None:
    pace = _pace(0.3)
    pace.acquire()
    pace.release(100, 50, RESET)
    assert _acquire_seconds(pace) < 0.05


def test_no_room_for_what_is_on_its_way_holds_until_the_reset() -> None:
    pace = _pace(0.2)
    for _ in range(3):
        pace.acquire()
    pace.release(100, 2, RESET)          # two remain, two more are on their way
    assert _acquire_seconds(pace) >= 0.15


def test_a_late_answer_about_an_old_window_changes_nothing() -> None:
    pace = _pace(0.2)
    pace.acquire()
    pace.acquire()
    pace.release(100, 90, RESET)
    pace.release(100, 0, RESET - 1)      # the window before: over already
    assert _acquire_seconds(pace) < 0.05


def test_a_429_holds_every_sender_until_the_reset() -> None:
    pace = _pace(0.2)
    assert 0.15 < pace.throttled(RESET) < 0.25
    assert _acquire_seconds(pace) >= 0.15
    assert pace.throttled(None) == -1.0  # no reset header: back off instead
