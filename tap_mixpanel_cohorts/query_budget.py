"""Keeping within Mixpanel's Query API limits: queries an hour, and queries at once.

Every query takes a slot for as long as it runs (at most `max_concurrent` slots) and is counted
in a sliding window of `window_seconds`; a query that would be one too many in the window waits
until the oldest one leaves it. A 429 pauses every query until its Retry-After has passed.
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
    """At most `max_per_window` queries started per window, `max_concurrent` running at once."""

    def __init__(self, max_per_window: int, max_concurrent: int,
                 window_seconds: float = HOUR_SECONDS):
        """An empty budget: nothing spent yet."""
        self.max_per_window = max_per_window
        self.window_seconds = window_seconds
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._started: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.queries = 0

    def seconds_for(self, queries: int) -> float:
        """How much budget `queries` use: at `max_per_window` per window."""
        return queries * self.window_seconds / self.max_per_window

    def _wait_needed(self, now: float) -> float:
        while self._started and self._started[0] <= now - self.window_seconds:
            self._started.popleft()
        wait = self._paused_until - now
        if len(self._started) >= self.max_per_window:
            wait = max(wait, self._started[0] + self.window_seconds - now)
        return max(wait, 0.0)

    @contextmanager
    def query(self) -> Iterator[None]:
        """Hold a slot and a place in the window for one query."""
        with self._slots:
            while True:
                with self._lock:
                    now = time.monotonic()
                    wait = self._wait_needed(now)
                    if wait <= 0:
                        self._started.append(now)
                        self.queries += 1
                        break
                if wait > 5:
                    logger.info("Query budget: waiting %s before the next query (at most %d "
                                "queries per %s)", describe_duration(wait), self.max_per_window,
                                describe_duration(self.window_seconds))
                time.sleep(wait)
            yield

    def pause(self, seconds: float) -> None:
        """No query starts within the next `seconds` (a 429 asked for it)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
