"""Adaptive sending: requests in flight and events per second steered by Mixpanel's answers.

Mixpanel takes about 30,000 events/s per project and answers 429 above that. Firing at full
speed and sleeping on 429s wastes the intake: most requests bounce. Instead each sender keeps,
like TCP's congestion control (AIMD):

- a window of requests in flight, at most `max_in_flight`: +1/window per accepted request,
  x`DECREASE` on a 429;
- a pace in events/s, unset until the first 429 (no limit is known before). On a 429 the
  rate Mixpanel accepted in the current or the last WINDOW_SECONDS is the measured intake
  (the ceiling), and the pace is cut to `DECREASE` x the lower of itself and the ceiling,
  after a pause of one request at the new pace for the intake to refill. After a cut the
  pace climbs back fast to just under the ceiling, then probes past it (additive increase, a
  share of the ceiling per second of sending) at a speed that doubles every PROBE_SECONDS
  without a 429, so an intake that grew, or was measured low, is found again quickly. A
  first 429 within a second only gives a guess, from which the pace grows fast.
- no slot booked ahead: a sender waits for the next free one, so a cut slows every sender at
  once; and once paced, batches of at most BATCH_SECONDS of the pace (a 2,000-event batch is
  a large share of a low intake, and each 429 then wastes much of it).

A burst of 429s from requests sent before the last cut counts as one signal (they saw the
old pace), so one congestion event cuts once.

The target's worker processes share one pace (`SharedPace`, numbers in shared memory behind one
lock): Mixpanel's intake is per project, so one measured ceiling and one schedule of send slots
serve them all. Each sender keeps its own window.

Known limit: 429s that are not the intake's doing (the benchmark's random 429s) look the same
as congestion, and each cut lowers the measured intake to what was then sent: the pace falls
far below what the endpoint would take. Mixpanel answers 429 for its rate limits;
`adaptive_sending: false` sends at full speed with per-batch backoff only.
"""

from __future__ import annotations

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


# The shared numbers, by index (0.0 stands for "not set" where a rate or a time is meant).
(RATE, CEILING, PROBE_FROM, NEXT_SLOT, LAST_CUT, MEASURED_FROM, ACCEPTED, CUTS, MEASURED,
 LAST_WINDOW_RATE) = range(10)
NUMBERS = 10


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
                numbers[LAST_CUT] = numbers[MEASURED_FROM] = clock()
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
        """How many congestion events cut the pace."""
        return int(self._shared.values[CUTS])

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
        with self._shared.lock:
            numbers = self._shared.values
            now = self._clock()
            if not throttled:
                numbers[ACCEPTED] += events
                _roll_window(numbers, now)
                if numbers[RATE]:
                    _raise(numbers, events, now)
            elif paced_at >= numbers[LAST_CUT]:  # else: paced before the last cut, already cut
                _cut(numbers, now, events)
        with self._changed:
            self._in_flight -= 1
            if throttled:
                if paced_at >= self._window_cut:  # one congestion event cuts the window once
                    self.window = max(1.0, self.window * DECREASE)
                    self._window_cut = self._clock()
            else:
                self.window = min(float(self.max_in_flight), self.window + 1 / self.window)
            self._changed.notify_all()


def _raise(numbers: Any, events: int, now: float) -> None:
    """Quickly back to just under the intake last measured, slowly past it."""
    if not numbers[MEASURED]:  # the ceiling is a first guess: grow until the next 429
        numbers[RATE] *= 1 + FAST_SHARE
        return
    near = numbers[CEILING] * NEAR_CEILING
    if numbers[RATE] < near:
        numbers[RATE] = min(near, numbers[RATE] * (1 + FAST_SHARE))
        return
    if not numbers[PROBE_FROM]:
        numbers[PROBE_FROM] = now
    doublings = min(20, int((now - numbers[PROBE_FROM]) / PROBE_SECONDS))
    seconds_of_sending = events / numbers[RATE]
    numbers[RATE] += numbers[CEILING] * INCREASE_SHARE * 2**doublings * seconds_of_sending


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
