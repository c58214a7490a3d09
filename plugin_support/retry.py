"""Retries for a target's HTTP requests: backoff with jitter within a time budget.

Both targets send a request, look at the answer, and either take it or wait and send again.
What is shared lives here: the delay schedule (exponential backoff plus random jitter), the
budget after which the run fails, the request counters, and the errors that stop a run.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import backoff

logger = logging.getLogger(__name__)


class AuthError(Exception):
    """The service refused the credentials (401/403); the run stops."""


class TlsError(Exception):
    """The server's TLS certificate did not check out; the run stops (retrying cannot help)."""


class RetriesExhausted(Exception):  # noqa: N818 - reads as "the retries are exhausted"
    """A batch could not be delivered within the retry budget; the run stops."""


@dataclass
class RetryPolicy:
    """Delays doubling from `first_delay` to `max_delay`, plus jitter, within a total budget."""

    first_delay: float = 2.0
    max_delay: float = 60.0
    jitter_min: float = 1.0
    jitter_max: float = 5.0
    budget_seconds: float = 900.0

    def delays(self) -> Iterator[float]:
        """Successive waits before each retry."""
        for delay in backoff.expo(base=2, factor=self.first_delay, max_value=self.max_delay):
            yield float(delay or 0) + random.uniform(self.jitter_min, self.jitter_max)


@dataclass
class Counters:
    """Request-level counts, updated from every sending thread."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    network_errors: int = 0
    splits: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **amounts: int) -> None:
        """Add to named counters."""
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def count_retryable(self, status: int) -> bool:
        """Count a retryable answer: a 429 as throttled, any other as a server error.

        True for a 429.
        """
        throttled = status == 429
        self.add(throttled=int(throttled), server_errors=int(not throttled))
        return throttled

    def as_summary(self) -> dict[str, int]:
        """The counts as a run's summary names them."""
        return {"requests": self.requests, "retries": self.retries,
                "throttled_429": self.throttled, "server_errors": self.server_errors,
                "network_errors": self.network_errors}


class RetrySchedule:
    """The retries of one request: `wait` before each, until the budget is spent."""

    def __init__(self, policy: RetryPolicy, counters: Counters, service: str):
        """Start the budget now; `service` names who keeps failing in the final error."""
        self._policy = policy
        self._counters = counters
        self._service = service
        self._deadline = time.monotonic() + policy.budget_seconds
        self._delays = policy.delays()

    def wait(self, problem: str, delay: float | None = None) -> None:
        """Sleep before the next attempt (`delay`, or the next backoff delay).

        Raises RetriesExhausted, naming `problem` and max_retry_seconds, when the wait would
        end past the budget.
        """
        if delay is None:
            delay = next(self._delays)
        if time.monotonic() + delay > self._deadline:
            msg = (f"{self._service} still failing after the retry budget of "
                   f"{self._policy.budget_seconds:g} s (last: {problem}); raise "
                   "max_retry_seconds or try again later")
            raise RetriesExhausted(msg)
        self._counters.add(retries=1)
        logger.debug("Retrying a batch in %.1f s after %s", delay, problem)
        time.sleep(delay)
