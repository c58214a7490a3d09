"""Pacing from a server's rate-limit headers (limit, remaining, reset as epoch seconds).

A server that says how many requests its current window has left, and when the window ends,
tells the sender all it needs: send while the window has room for the requests already on
their way, then hold every sender until the window resets. No 429 is needed to find the
limit, and none is risked while the headers are right (a 429 still holds until the reset).
The senders of a process share one `HeaderPace`; each takes a slot before a request and
reports the answer's headers.
"""

from __future__ import annotations

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
        self._lock = threading.Lock()
        self._hold_until = 0.0        # monotonic time before which nothing is sent
        self._reset: float | None = None
        self._remaining: int | None = None
        self._in_flight = 0

    def acquire(self) -> None:
        """Wait for this request's slot."""
        while True:
            with self._lock:
                now = self._clock()
                if now >= self._hold_until:
                    self._in_flight += 1
                    return
                wait = self._hold_until - now
            time.sleep(wait)

    def release(self, limit: int | None, remaining: int | None, reset: float | None) -> None:
        """An answer came back with these header values (None: absent)."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if remaining is None or reset is None:
                return
            if self._reset is not None and reset < self._reset:
                return                 # a late answer about a window already over
            if reset != self._reset:   # a new window: its first answer sets what remains
                self._reset, self._remaining = reset, remaining
            else:                      # answers arrive out of order: the lowest is the latest
                self._remaining = min(self._remaining or remaining, remaining)
            spare = self._remaining - self._in_flight - int(HEADROOM * (limit or 0))
            if spare <= 0:
                left = max(MIN_RESET_WAIT, reset - self._wall())
                self._hold_until = max(self._hold_until, self._clock() + left)

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
