"""Keeping within Mixpanel's Query API limits: queries an hour, and queries at once.

Every query takes a slot for as long as it runs (at most `max_concurrent` slots) and is counted
in a sliding window of `window_seconds`; a query that would be one too many in the window waits
until the oldest one leaves it. A 429 pauses every query until its Retry-After has passed.
The window is carried from one run to the next (`recent`, `seed`): a run started right after
another spends only what is left of the hour.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

HOUR_SECONDS = 3600.0


def describe_duration(seconds: float) -> str:
    """'4 h 11 min', '12 min', '40 s'."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class QueryBudget:
    """At most `max_per_window` queries per window, `max_concurrent` running at once.

    A query counts in the window from when it ends (Mixpanel counts it somewhere between its
    start and its end), so the window the server sees never holds more than the budget.
    """

    def __init__(self, max_per_window: int, max_concurrent: int,
                 window_seconds: float = HOUR_SECONDS):
        """An empty budget: nothing spent yet."""
        self.max_per_window = max_per_window
        self.window_seconds = window_seconds
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._ended: deque[float] = deque()  # end times of the queries in the window
        self._running = 0
        self._paused_until = 0.0
        self._changed = threading.Condition()
        self.queries = 0

    def seconds_for(self, queries: int) -> float:
        """How much budget `queries` use: at `max_per_window` per window."""
        return queries * self.window_seconds / self.max_per_window

    def _wait_needed(self, now: float) -> float | None:
        """0 when a query may start now, else seconds to wait (None: until one ends)."""
        while self._ended and self._ended[0] <= now - self.window_seconds:
            self._ended.popleft()
        if self._paused_until > now:
            return self._paused_until - now
        if len(self._ended) + self._running < self.max_per_window:
            return 0.0
        return self._ended[0] + self.window_seconds - now if self._ended else None

    @contextmanager
    def query(self) -> Iterator[None]:
        """Hold a slot and a place in the window for one query."""
        with self._slots:
            with self._changed:
                while (wait := self._wait_needed(time.monotonic())) != 0:
                    if wait is not None and wait > 5:
                        logger.info("Query budget: waiting %s before the next query (at most "
                                    "%d queries per %s)", describe_duration(wait),
                                    self.max_per_window, describe_duration(self.window_seconds))
                    self._changed.wait(wait)
                self._running += 1
                self.queries += 1
            try:
                yield
            finally:
                with self._changed:
                    self._running -= 1
                    self._ended.append(time.monotonic())
                    self._changed.notify_all()

    def recent(self) -> list[float]:
        """End times (epoch seconds) of the queries still in the window, oldest first."""
        with self._changed:
            offset = time.time() - time.monotonic()
            self._wait_needed(time.monotonic())  # drops what left the window
            return [end + offset for end in self._ended]

    def seed(self, ended: list[float]) -> None:
        """Count queries an earlier run ended (epoch seconds) in the window."""
        with self._changed:
            offset = time.time() - time.monotonic()
            earlier = sorted(float(t) - offset for t in ended)
            self._ended = deque(sorted([*earlier, *self._ended]))
            self._wait_needed(time.monotonic())

    def pause(self, seconds: float) -> None:
        """No query starts within the next `seconds` (a 429 asked for it)."""
        with self._changed:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
