"""Adaptive sending: requests in flight and events per second steered by Mixpanel's answers.

Mixpanel takes about 30,000 events/s per project and answers 429 above that. Firing at full
speed and sleeping on 429s wastes the intake: most requests bounce. Instead each sender keeps,
like TCP's congestion control (AIMD):

- a window of requests in flight, at most `max_in_flight`: +1/window per accepted request,
  x`DECREASE` on a 429 that cuts the pace;
- a pace in events/s, unset until the first 429 (no limit is known before). On a 429 the
  rate Mixpanel accepted in the current or the last WINDOW_SECONDS is the measured intake
  (the ceiling), and the pace is cut to `DECREASE` x the lower of itself and the ceiling,
  after a pause of one request at the new pace for the intake to refill. After a cut the
  pace climbs back fast to just under the ceiling, then probes past it (additive increase, a
  share of the ceiling per second of sending) at a speed that doubles every PROBE_SECONDS
  without a 429, so an intake that grew, or was measured low, is found again quickly. A
  first 429 within a second only gives a guess, from which the pace doubles every second of
  sending until the next 429.
- no slot booked ahead: a sender waits for the next free one, so a cut slows every sender at
  once; and once paced, batches of at most BATCH_SECONDS of the pace (a 2,000-event batch is
  a large share of a low intake, and each 429 then wastes much of it).

A burst of 429s from requests sent before the last cut counts as one signal (they saw the
old pace), so one congestion event cuts once.

Not every 429 is congestion: an endpoint may refuse a share of requests whatever the pace (a
flaky proxy, a benchmark's random 429s). Cutting for each would lower the pace cut after cut
to nothing, as each cut measures the intake at the pace then sent. So a cut from a measured
pace is a test: the pace holds below the intake until TEST_ANSWERS requests sent after the
cut are answered. Under a rate limit their 429s stop; if they do not, the cut is undone (pace,
ceiling and probe as before) and, no intake having been found, the pace doubles per second
until the next cut. The 429s seen while holding are the background share; a 429 starts a cut
only when the share of 429s since the last cut is clearly above it (a binomial test). While
the pace holds, only a share above MAX_BACKGROUND cuts it again.

The target's worker processes share one pace (`SharedPace`, numbers in shared memory behind one
lock): Mixpanel's intake is per project, so one measured ceiling and one schedule of send slots
serve them all. Each sender keeps its own window.

`adaptive_sending: false` sends at full speed with per-batch backoff only.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

DECREASE = 0.85          # multiplicative decrease on a 429
# Additive increase while probing past the intake measured at the last cut: this share of it
# per second of sending, doubled every PROBE_SECONDS without a 429 (the intake may have grown).
# Per second, not per request: a low intake (few requests) is probed as fast as a high one.
INCREASE_SHARE = 0.005
PROBE_SECONDS = 10.0
# The accepted rate bounds the pace only when measured over at least this long; it is counted
# in windows of WINDOW_SECONDS, and a cut takes the better of the current and the last window
# (the rate just before the 429, not an average since the last cut, which a ramp-up lowers).
MEASURE_SECONDS = 1.0
WINDOW_SECONDS = 2.0
MIN_RATE = 100.0         # events/s: the pace never drops below this
LATE_SECONDS = 0.05      # how far behind its schedule the pace may send to catch up
# Once paced, a batch holds at most this many seconds of the pace (at least MIN_BATCH_EVENTS):
# under a low intake a 2,000-event batch is a large share of it, and each 429 wastes a lot.
BATCH_SECONDS = 0.1
MIN_BATCH_EVENTS = 50
# Below NEAR_CEILING x the intake measured at the last cut, the pace rises by FAST_SHARE of
# itself per accepted request (recovery); above, by INCREASE_SHARE (probing).
NEAR_CEILING = 0.95
FAST_SHARE = 0.02
# The pace never exceeds MAX_PACE_SHARE x the higher of the intake measured at the last cut
# and the rate taken in the last window (above, it limits nothing, and a cut means nothing).
MAX_PACE_SHARE = 2.0
# After a cut the pace holds while the requests sent before it come back (SETTLE_ROUND_TRIPS
# round trips), then until TEST_ANSWERS requests sent since were answered (at most
# MAX_HOLD_SECONDS of them): those answers decide whether the cut stays. Fewer would often
# see no 429 at all where 10% are refused at random, and keep cuts that should be undone.
SETTLE_ROUND_TRIPS = 2.0
TEST_ANSWERS = 25
MAX_HOLD_SECONDS = 4.0
# A cut that is no test (from sending unpaced, or soon after another cut) holds the pace this
# long. While the pace holds, only more than MAX_BACKGROUND of at least
# MIN_ANSWERS_TO_CUT_AGAIN answers answered 429 cuts it again.
SETTLE_SECONDS = WINDOW_SECONDS
MIN_ANSWERS_TO_CUT_AGAIN = 10
# The share of 429s since the last cut is counted over about RECENT_ANSWERS answers; the
# background share over about BACKGROUND_ANSWERS answers to requests sent while holding,
# starting from BACKGROUND_PRIOR answers' worth of none, and never above MAX_BACKGROUND (more
# is congestion). A 429 starts a cut when the recent count of 429s passes the background's
# expectation by more than CONGESTION_Z standard deviations plus CONGESTION_MARGIN (so with no
# background, any 429 does).
RECENT_ANSWERS = 20
BACKGROUND_ANSWERS = 30
BACKGROUND_PRIOR = 5
MAX_BACKGROUND = 0.3
CONGESTION_Z = 3.0
CONGESTION_MARGIN = 0.5


# The shared numbers, by index (0.0 stands for "not set" where a rate or a time is meant).
(RATE, CEILING, PROBE_FROM, NEXT_SLOT, LAST_CUT, MEASURED_FROM, ACCEPTED, CUTS, MEASURED,
 LAST_WINDOW_RATE, RECENT, RECENT_THROTTLED, BACKGROUND, BACKGROUND_THROTTLED, ROUND_TRIP,
 HOLD_FROM, HOLD_UNTIL, DECIDE_AT, HOLD_ANSWERS, HOLD_THROTTLED, BEFORE_RATE, BEFORE_CEILING,
 BEFORE_PROBE_FROM, UNDONE, HOLD_TESTS) = range(25)
NUMBERS = 25


class SharedPace:
    """The pace numbers every sender of a project shares, with the lock that guards them.

    Made before the worker processes start (it lives in shared memory) and handed to each;
    `SharedPace.local()` serves a single process.
    """

    def __init__(self, values: Any, lock: Any):
        """Use `values` (NUMBERS doubles) and `lock`; see `for_processes` and `local`."""
        self.values = values
        self.lock = lock

    @classmethod
    def for_processes(cls, context: Any = multiprocessing) -> SharedPace:
        """Numbers in shared memory, for the worker processes `context` starts."""
        return cls(context.RawArray("d", NUMBERS), context.Lock())

    @classmethod
    def local(cls) -> SharedPace:
        """Numbers for the senders of this process only."""
        return cls([0.0] * NUMBERS, threading.Lock())


class AdaptivePace:
    """Gate for one sender's requests; `acquire` before a POST, `release` with its answer."""

    def __init__(self, max_in_flight: int, shared: SharedPace | None = None,
                 clock: Callable[[], float] = time.monotonic):
        """Start with the full window; the pace is `shared` with other senders, or our own."""
        self.max_in_flight = max(1, max_in_flight)
        self.window = float(self.max_in_flight)
        self._in_flight = 0
        self._clock = clock
        self._changed = threading.Condition()
        self._shared = shared or SharedPace.local()
        with self._shared.lock:
            numbers = self._shared.values
            if not numbers[LAST_CUT]:  # the first sender starts the clock: the first "cut"
                numbers[LAST_CUT] = clock()
        self._window_cut = clock()  # 429s to requests sent before this were answered already

    @property
    def rate(self) -> float | None:
        """The pace in events/s, None while no 429 was seen."""
        return self._shared.values[RATE] or None

    def batch_events(self, configured: int) -> int:
        """How many events a batch should hold at most: `configured`, less under a low pace."""
        rate = self._shared.values[RATE]
        if not rate:
            return configured
        return max(min(configured, MIN_BATCH_EVENTS), min(configured, int(rate * BATCH_SECONDS)))

    @property
    def cuts(self) -> int:
        """How many congestion events cut the pace (cuts undone not counted)."""
        return int(self._shared.values[CUTS] - self._shared.values[UNDONE])

    @property
    def undone(self) -> int:
        """How many cuts were undone: the 429s went on at the lower pace."""
        return int(self._shared.values[UNDONE])

    @property
    def background(self) -> float:
        """The share of requests answered 429 whatever the pace, as learned so far."""
        return _background(self._shared.values)

    def acquire(self, events: int) -> float:
        """Wait for room in the window and for the pace; returns when the request got its slot.

        Hand that time to `release`: a 429 to a request paced before the last cut cuts no more.
        """
        with self._changed:
            while self._in_flight >= max(1, int(self.window)):
                self._changed.wait()
            self._in_flight += 1
        while (wait := self.take_slot(events)) > 0:
            time.sleep(wait)
        return self._clock()

    def take_slot(self, events: int) -> float:
        """Book the slot for a request of `events` if free (0.0), else the seconds until it is.

        Nothing is booked ahead, so a cut slows down every waiting sender at once.
        """
        with self._shared.lock:
            numbers = self._shared.values
            now = self._clock()
            if not numbers[RATE]:
                return 0.0
            if numbers[NEXT_SLOT] > now:
                return numbers[NEXT_SLOT] - now
            # a sender woken late may catch up on at most LATE_SECONDS of pace
            numbers[NEXT_SLOT] = (max(numbers[NEXT_SLOT], now - LATE_SECONDS)
                                  + events / numbers[RATE])
            return 0.0

    def release(self, paced_at: float, *, throttled: bool, events: int = 0) -> None:
        """The answer to a request of `events` paced at `paced_at`: 429 (`throttled`) or not."""
        congested = False
        with self._shared.lock:
            numbers = self._shared.values
            now = self._clock()
            numbers[ROUND_TRIP] += (now - paced_at - numbers[ROUND_TRIP]) / RECENT_ANSWERS
            if not numbers[MEASURED_FROM]:  # the intake is measured from the first request
                numbers[MEASURED_FROM] = paced_at
            if paced_at >= numbers[LAST_CUT]:  # else: paced before the last cut, already cut
                _count_answer(numbers, throttled, paced_at)
            if numbers[DECIDE_AT] and (now >= numbers[DECIDE_AT]
                                       or numbers[HOLD_ANSWERS] >= TEST_ANSWERS):
                _end_hold(numbers)
            if not throttled:
                numbers[ACCEPTED] += events
                _roll_window(numbers, now)
                if numbers[RATE] and not numbers[DECIDE_AT]:  # not while the pace holds
                    _raise(numbers, events, now)
            elif paced_at >= numbers[LAST_CUT] and _should_cut(numbers):
                _cut(numbers, now, events)
                congested = True
        with self._changed:
            self._in_flight -= 1
            if congested:
                if paced_at >= self._window_cut:  # one congestion event cuts the window once
                    self.window = max(1.0, self.window * DECREASE)
                    self._window_cut = self._clock()
            elif not throttled:
                self.window = min(float(self.max_in_flight), self.window + 1 / self.window)
            self._changed.notify_all()


def _raise(numbers: Any, events: int, now: float) -> None:
    """Quickly back to just under the intake last measured, slowly past it."""
    # requests refused at random took nothing from the intake: send that much more
    near = numbers[CEILING] * NEAR_CEILING / (1 - _background(numbers))
    if not numbers[MEASURED]:  # the ceiling is a first guess: double per second until a 429
        numbers[RATE] *= 2 ** min(1.0, events / numbers[RATE])
    elif numbers[RATE] < near:
        numbers[RATE] = min(near, numbers[RATE] * (1 + FAST_SHARE))
    else:
        if not numbers[PROBE_FROM]:
            numbers[PROBE_FROM] = now
        doublings = min(20, int((now - numbers[PROBE_FROM]) / PROBE_SECONDS))
        seconds_of_sending = events / numbers[RATE]
        numbers[RATE] += numbers[CEILING] * INCREASE_SHARE * 2**doublings * seconds_of_sending
    numbers[RATE] = min(numbers[RATE],
                        MAX_PACE_SHARE * max(numbers[CEILING], numbers[LAST_WINDOW_RATE]))


def _count_answer(numbers: Any, throttled: bool, paced_at: float) -> None:
    """Count an answer to a request paced since the last cut.

    All count in the recent share of 429s; those paced while holding decide the cut and count
    in the background share.
    """
    numbers[RECENT] = numbers[RECENT] * (1 - 1 / RECENT_ANSWERS) + 1
    numbers[RECENT_THROTTLED] = numbers[RECENT_THROTTLED] * (1 - 1 / RECENT_ANSWERS) + throttled
    if numbers[DECIDE_AT] and numbers[HOLD_FROM] <= paced_at < numbers[HOLD_UNTIL]:
        numbers[HOLD_ANSWERS] += 1
        numbers[HOLD_THROTTLED] += throttled
        if numbers[HOLD_TESTS]:
            keep = 1 - 1 / BACKGROUND_ANSWERS
            numbers[BACKGROUND] = numbers[BACKGROUND] * keep + 1
            numbers[BACKGROUND_THROTTLED] = numbers[BACKGROUND_THROTTLED] * keep + throttled


def _background(numbers: Any) -> float:
    share = numbers[BACKGROUND_THROTTLED] / (numbers[BACKGROUND] + BACKGROUND_PRIOR)
    return min(MAX_BACKGROUND, share)


def _congested(numbers: Any) -> bool:
    """Whether the 429s since the last cut are more than the background share explains."""
    share = _background(numbers)
    expected = share * numbers[RECENT]
    spread = math.sqrt(expected * (1 - share))
    return numbers[RECENT_THROTTLED] > expected + CONGESTION_Z * spread + CONGESTION_MARGIN


def _should_cut(numbers: Any) -> bool:
    """Whether a 429 to a request paced since the last cut cuts the pace (again)."""
    if not numbers[DECIDE_AT]:
        return _congested(numbers)
    # the pace holds (a test, or a cut that is no test while it is measured): its 429s are
    # what it measures; only an intake clearly below it (more 429s than any background)
    # cuts again
    return (numbers[RECENT] >= MIN_ANSWERS_TO_CUT_AGAIN
            and numbers[RECENT_THROTTLED] > MAX_BACKGROUND * numbers[RECENT])


def _end_hold(numbers: Any) -> None:
    """The held pace was answered: a cut that did not stop the 429s is undone."""
    if numbers[HOLD_TESTS] and numbers[HOLD_THROTTLED]:
        numbers[RATE] = numbers[BEFORE_RATE]
        numbers[CEILING] = numbers[BEFORE_CEILING]
        numbers[PROBE_FROM] = numbers[BEFORE_PROBE_FROM]
        numbers[MEASURED] = 0.0  # no intake was found: the pace doubles until the next cut
        numbers[UNDONE] += 1
    numbers[DECIDE_AT] = numbers[HOLD_ANSWERS] = numbers[HOLD_THROTTLED] = 0.0


def _roll_window(numbers: Any, now: float) -> None:
    elapsed = now - numbers[MEASURED_FROM]
    if elapsed >= WINDOW_SECONDS:
        numbers[LAST_WINDOW_RATE] = numbers[ACCEPTED] / elapsed
        numbers[MEASURED_FROM] = now
        numbers[ACCEPTED] = 0


def _cut(numbers: Any, now: float, events: int) -> None:
    """A congestion event (a 429 to a request of `events`): cut the pace below the intake.

    Measures what Mixpanel took, cuts the pace below it, and leaves the intake the time of one
    such request at the new pace to refill what probing past it used up (else the next request
    is refused too).
    """
    numbers[BEFORE_RATE], numbers[BEFORE_CEILING] = numbers[RATE], numbers[CEILING]
    numbers[BEFORE_PROBE_FROM] = numbers[PROBE_FROM]
    # Only a cut from a pace set by a measured intake and in force for a while (the measure
    # is of paced sending, not of a burst) is held below the intake, and tests the 429s. A cut
    # from sending unpaced, or from a guess, stands; its pace holds while it is measured.
    numbers[HOLD_TESTS] = float(bool(numbers[RATE] and numbers[MEASURED]
                                     and now - numbers[LAST_CUT] >= SETTLE_SECONDS))
    elapsed = now - numbers[MEASURED_FROM]
    window_rate = numbers[ACCEPTED] / elapsed if elapsed >= MEASURE_SECONDS else 0.0
    if window_rate or numbers[LAST_WINDOW_RATE]:
        numbers[CEILING] = max(window_rate, numbers[LAST_WINDOW_RATE])  # what Mixpanel took
        numbers[MEASURED] = 1.0
    elif numbers[ACCEPTED] and not numbers[CEILING]:
        # a first 429 within MEASURE_SECONDS: what was accepted before its answer, counted
        # over MEASURE_SECONDS (not a few milliseconds); a guess, low when accepted requests
        # were still on their way back, so the pace grows fast until the next 429
        numbers[CEILING] = numbers[ACCEPTED] / MEASURE_SECONDS
    if numbers[CEILING]:  # else: nothing measured yet; only the windows shrink
        pace = numbers[RATE] or numbers[CEILING]
        numbers[RATE] = max(MIN_RATE, min(pace, numbers[CEILING]) * DECREASE)
        numbers[PROBE_FROM] = 0.0
    numbers[NEXT_SLOT] = max(numbers[NEXT_SLOT], now) + events / max(numbers[RATE], MIN_RATE)
    numbers[LAST_CUT] = now
    numbers[CUTS] += 1
    numbers[RECENT] = numbers[RECENT_THROTTLED] = 0.0
    if numbers[HOLD_TESTS]:  # the requests sent before come back, then those sent held decide
        numbers[HOLD_FROM] = now + SETTLE_ROUND_TRIPS * numbers[ROUND_TRIP]
        numbers[HOLD_UNTIL] = numbers[HOLD_FROM] + MAX_HOLD_SECONDS
        numbers[DECIDE_AT] = numbers[HOLD_UNTIL] + numbers[ROUND_TRIP]
    else:
        numbers[HOLD_FROM] = numbers[HOLD_UNTIL] = now
        numbers[DECIDE_AT] = now + SETTLE_SECONDS
