"""Adaptive sending: requests in flight and events per second steered by Mixpanel's answers.

Mixpanel takes about 30,000 events/s per project and answers 429 above that. Firing at full
speed and sleeping on 429s wastes the intake: most requests bounce. Instead each sender keeps,
like TCP's congestion control (AIMD):

- a window of requests in flight, at most `max_in_flight`: +1/window per accepted request,
  x`DECREASE` on a 429;
- a pace in events/s, unset until the first 429 (no limit is known before). On a 429 the
  rate Mixpanel accepted since the previous cut is the measured intake (the ceiling), and the
  pace is cut to `DECREASE` x the lower of itself and the ceiling. After a cut the pace climbs
  back fast to just under the ceiling, then probes past it by a step per accepted request
  (additive increase) that doubles every PROBE_REQUESTS requests without a 429, so an intake
  that grew, or was measured low, is found again quickly.

A burst of 429s from requests sent before the last cut counts as one signal (they saw the
old pace), so one congestion event cuts once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DECREASE = 0.85          # multiplicative decrease on a 429
# Additive increase per accepted request, as a share of the pace right after the last cut:
# about (1 - DECREASE) / INCREASE_SHARE accepted requests pass between two congestion events.
INCREASE_SHARE = 0.0005
# The accepted rate bounds the pace only when measured over at least this long.
MEASURE_SECONDS = 1.0
MIN_RATE = 100.0         # events/s: the pace never drops below this
# Below NEAR_CEILING x the intake measured at the last cut, the pace rises by FAST_SHARE of
# itself per accepted request (recovery); above, by the constant step (probing).
NEAR_CEILING = 0.95
FAST_SHARE = 0.02
PROBE_REQUESTS = 100     # the probing step doubles after this many accepted requests


class AdaptivePace:
    """Gate for one sender's requests; `acquire` before a POST, `release` with its answer."""

    def __init__(self, max_in_flight: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        """Start with the full window and no pace."""
        self.max_in_flight = max(1, max_in_flight)
        self.window = float(self.max_in_flight)
        self.rate: float | None = None       # events/s; None: unpaced
        self.ceiling: float | None = None    # events/s Mixpanel accepted when it last throttled
        self.cuts = 0
        self._step = 0.0
        self._probes = 0                     # accepted requests probing past the ceiling
        self._in_flight = 0
        self._next_slot = 0.0
        self._clock = clock
        self._sleep = sleep
        self._last_cut = clock()             # the first "cut": the start
        self._measured_from = self._last_cut
        self._accepted_since_cut = 0         # events accepted since _measured_from
        self._changed = threading.Condition()

    def acquire(self, events: int) -> float:
        """Wait for room in the window and for the pace; returns the request's start time."""
        with self._changed:
            while self._in_flight >= max(1, int(self.window)):
                self._changed.wait()
            self._in_flight += 1
            now = self._clock()
            start = now
            if self.rate is not None:
                start = max(now, self._next_slot)
                self._next_slot = start + events / self.rate
        if start > now:
            self._sleep(start - now)
        return start

    def release(self, started: float, *, throttled: bool, events: int = 0) -> None:
        """The answer to a request of `events` started at `started`: 429 (`throttled`) or not."""
        with self._changed:
            self._in_flight -= 1
            if throttled:
                if started >= self._last_cut:  # else: sent before the last cut, already cut
                    self._cut()
            else:
                self._accepted_since_cut += events
                self.window = min(float(self.max_in_flight), self.window + 1 / self.window)
                if self.rate is not None:
                    self._raise()
            self._changed.notify_all()

    def _raise(self) -> None:
        """Quickly back to just under the intake last measured, slowly past it."""
        assert self.rate is not None
        near = (self.ceiling or 0) * NEAR_CEILING
        if self.rate < near:
            self.rate = min(near, self.rate * (1 + FAST_SHARE))
        else:
            self._probes += 1
            if self._probes % PROBE_REQUESTS == 0:
                self._step *= 2  # no 429 for a while: the intake may have grown; probe faster
            self.rate += self._step

    def _cut(self) -> None:
        now = self._clock()
        elapsed = now - self._measured_from
        if elapsed >= MEASURE_SECONDS and self._accepted_since_cut:
            self.ceiling = self._accepted_since_cut / elapsed  # what Mixpanel took
            self._measured_from = now
            self._accepted_since_cut = 0
        elif self.ceiling is None and self.rate is not None:
            self.ceiling = self.rate
        if self.ceiling is not None:  # else: nothing measured yet; only the window shrinks
            current = self.rate if self.rate is not None else self.ceiling
            self.rate = max(MIN_RATE, min(current, self.ceiling) * DECREASE)
            self._step = self.ceiling * INCREASE_SHARE
            self._probes = 0
        self.window = max(1.0, self.window * DECREASE)
        self._next_slot = max(self._next_slot, now)
        self._last_cut = now
        self.cuts += 1
