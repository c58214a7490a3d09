"""Pacing from a server's rate-limit headers (limit, remaining, reset as epoch seconds).

A server that says how many requests its current window has left, and when the window ends,
tells the sender its pace: spread what remains over the time left. The senders of a process
share one `HeaderPace`; each takes a slot before a request and reports the answer's headers.
A 429 (nothing left) holds every sender until the window resets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Never wait less than this for a window to reset (the reset is given in whole seconds).
MIN_RESET_WAIT = 0.02
# Keep this share of a window's requests unused, for answers still on their way.
HEADROOM = 0.02
# Spread what remains over this share of the time left: a request sent late then still fits
# the window (spreading over all of it leaves the window's last requests unsent when late).
SPREAD_SHARE = 0.8


class HeaderPace:
    """Slots for requests, spaced by what the latest answers said remains of the window."""

    def __init__(self, wall_clock: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic):
        """Unpaced until the first answer with rate-limit headers."""
        self._wall = wall_clock
        self._clock = clock
        self._lock = threading.Lock()
        self._interval = 0.0          # seconds between request starts; 0: unpaced
        self._next_slot = 0.0
        self._hold_until = 0.0        # monotonic time before which nothing is sent
        self._reset: float | None = None
        self._remaining: int | None = None
        self._in_flight = 0

    def acquire(self) -> None:
        """Wait for this request's slot."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot, self._hold_until)
            self._next_slot = slot + self._interval
            self._in_flight += 1
        if slot > now:
            time.sleep(slot - now)

    def release(self, limit: int | None, remaining: int | None, reset: float | None) -> None:
        """An answer came back with these header values (None: absent)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if remaining is None or reset is None:
                return
            if reset != self._reset:   # a new window: its first answer sets what remains
                self._reset, self._remaining = reset, remaining
            else:                      # answers arrive out of order: the lowest is the latest
                self._remaining = min(self._remaining or remaining, remaining)
            left = max(MIN_RESET_WAIT, reset - self._wall())
            spare = self._remaining - self._in_flight - int(HEADROOM * (limit or 0))
            if spare <= 0:
                self._hold_until = max(self._hold_until, self._clock() + left)
                self._interval = 0.0 if limit is None else left / max(1, limit)
            else:
                self._interval = SPREAD_SHARE * left / spare

    def throttled(self, reset: float | None) -> float:
        """A 429: hold every sender until `reset` (epoch seconds); returns the wait, or -1.

        Without a reset header nothing is held and -1 says so (back off instead).
        """
        if reset is None:
            return -1.0
        wait = max(MIN_RESET_WAIT, reset - self._wall())
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + wait)
            self._remaining = 0
        return wait
