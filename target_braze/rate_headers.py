"""Pacing from a server's rate-limit headers (limit, remaining, reset as epoch seconds).

A server that says how many requests its current window has left, and when the window ends,
tells the sender all it needs: send while the window has room for the requests already on
their way, then hold every sender until the window resets. No 429 is needed to find the
limit, and none is risked while the headers are right (a 429 still holds until the reset).
The senders of a process share one `HeaderPace`; each takes a slot before a request and
reports the answer's headers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

# Never wait less than this for a window to reset (the reset is given in whole seconds).
MIN_RESET_WAIT = 0.02
# Keep this share of a window's requests unused (other clients of the same key, late answers).
HEADROOM = 0.01


class HeaderPace:
    """Slots for requests: free while the window has room, held until its reset when not."""

    def __init__(self, wall_clock: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic):
        """Unpaced until the first answer with rate-limit headers."""
        self._wall = wall_clock
        self._clock = clock
        self._changed = threading.Condition()
        self._hold_until = 0.0        # monotonic time before which nothing is sent (a 429)
        self._limit: int | None = None
        self._reset: float | None = None     # the latest window's reset, as the server gives it
        self._window_ends = 0.0              # ... and as a monotonic time
        self._remaining: int | None = None
        self._in_flight = 0

    def acquire(self) -> None:
        """Wait for this request's slot: the window must have room for it beside those in flight."""
        with self._changed:
            while True:
                now = self._clock()
                if now < self._hold_until:
                    self._changed.wait(self._hold_until - now)
                elif self._spare(now) > 0:
                    self._in_flight += 1
                    return
                else:                  # until an answer frees a slot, or the window resets
                    self._changed.wait(max(MIN_RESET_WAIT, self._window_ends - now))

    def _spare(self, now: float) -> float:
        """Requests the window still has room for, beyond those in flight."""
        if self._remaining is None:
            return math.inf
        # once the window has reset, the new one has room for as much as the limit allows
        room = self._remaining if now < self._window_ends else self._limit
        if room is None:
            return math.inf
        return room - self._in_flight - int(HEADROOM * (self._limit or 0))

    def release(self, limit: int | None, remaining: int | None, reset: float | None) -> None:
        """An answer came back with these header values (None: absent)."""
        with self._changed:
            self._in_flight = max(0, self._in_flight - 1)
            self._changed.notify_all()
            if remaining is None or reset is None:
                return
            if self._reset is not None and reset < self._reset:
                return                 # a late answer about a window already over
            self._limit = limit if limit is not None else self._limit
            if reset != self._reset:   # a new window: its first answer sets what remains
                self._reset, self._remaining = reset, remaining
                self._window_ends = self._clock() + max(MIN_RESET_WAIT, reset - self._wall())
            else:                      # answers arrive out of order: the lowest is the latest
                self._remaining = min(remaining, self._remaining
                                      if self._remaining is not None else remaining)

    def throttled(self, reset: float | None) -> float:
        """A 429: hold every sender until `reset` (epoch seconds); returns the wait, or -1.

        Without a reset header nothing is held and -1 says so (back off instead).
        """
        if reset is None:
            return -1.0
        wait = max(MIN_RESET_WAIT, reset - self._wall())
        with self._changed:
            self._hold_until = max(self._hold_until, self._clock() + wait)
            self._changed.notify_all()
        return wait
