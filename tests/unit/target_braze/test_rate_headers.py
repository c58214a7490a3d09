"""HeaderPace: send while the window has room, hold until its reset when not."""

from __future__ import annotations

import threading
import time

from target_braze.rate_headers import HeaderPace

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


def test_senders_arriving_together_take_only_the_slots_the_window_has() -> None:
    pace = _pace(0.3)
    for _ in range(3):
        pace.acquire()
    pace.release(15, 6, RESET)           # six remain, two are on their way: room for four
    taken: list[float] = []
    senders = [threading.Thread(target=lambda: taken.append(_acquire_seconds(pace)))
               for _ in range(6)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert sorted(t < 0.2 for t in taken) == [False, False, True, True, True, True]


def test_an_answer_in_flight_frees_its_slot_for_a_waiting_sender() -> None:
    pace = _pace(5)
    pace.acquire()
    pace.acquire()
    pace.release(15, 1, RESET)           # one remains, one is on its way: none free
    waiting = threading.Thread(target=pace.acquire)
    waiting.start()
    time.sleep(0.05)
    assert waiting.is_alive()
    pace.release(15, 1, RESET)           # that one had been counted already: one is free
    waiting.join(timeout=1)
    assert not waiting.is_alive()


def test_a_new_window_opens_to_the_limit_before_its_first_answer() -> None:
    pace = _pace(0.1)
    pace.acquire()
    pace.release(3, 0, RESET)            # this window is spent; the next has three
    taken = [_acquire_seconds(pace) for _ in range(3)]
    assert taken[0] > 0.05               # the first waits for the reset
    assert max(taken[1:]) < 0.05         # the other two go with it
    blocked = threading.Thread(target=pace.acquire, daemon=True)
    blocked.start()
    blocked.join(timeout=0.3)
    assert blocked.is_alive()            # a fourth would go over the limit
    pace.release(3, 1, RESET + 1)        # the new window's answers: one remains
    pace.release(3, 2, RESET + 1)
    assert blocked.is_alive()            # ... and one request is still on its way
    pace.release(3, 1, RESET + 1)        # none is now: the slot is free
    blocked.join(timeout=1)
    assert not blocked.is_alive()
