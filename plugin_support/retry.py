"""Retries of HTTP requests, for every client: backoff with jitter within a time budget.

Each client sends a request, looks at the answer by its vendor's rules, and either takes it or
asks for another attempt (`Retry`). What is shared lives here: the delay schedule (exponential
backoff plus random jitter, or a wait the server asked for with Retry-After), the budget after
which the run fails, the loop of attempts, the request counters, and the errors that stop a
run.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class AuthError(Exception):
    """The service refused the credentials (401/403); the run stops."""


class TlsError(Exception):
    """The server's TLS certificate did not check out; the run stops (retrying cannot help)."""


class RetriesExhausted(Exception):  # noqa: N818 - reads as "the retries are exhausted"
    """A request could not be made within the retry budget; the run stops.

    `problem` is the last attempt's; `budget_seconds` the budget that was spent.
    """

    def __init__(self, message: str, problem: str = "", budget_seconds: float = 0.0):
        super().__init__(message)
        self.problem, self.budget_seconds = problem, budget_seconds


@dataclass(frozen=True)
class RetryPolicy:
    """Delays doubling from `first_delay` to `max_delay`, plus jitter, within a total budget.

    The defaults are Mixpanel's advice (2 s doubling to 60 s, 1-5 s of jitter); a plugin that
    wants no jitter gives `jitter_min=0, jitter_max=0`.
    """

    first_delay: float = 2.0
    max_delay: float = 60.0
    jitter_min: float = 1.0
    jitter_max: float = 5.0
    budget_seconds: float = 900.0

    def delays(self, uniform: Callable[[float, float], float] = random.uniform
               ) -> Iterator[float]:
        """Successive waits before each retry: first_delay, twice that, ... up to max_delay."""
        backoff = min(self.first_delay, self.max_delay)
        while True:
            jitter = uniform(self.jitter_min, self.jitter_max) if self.jitter_max > 0 else 0.0
            yield backoff + jitter
            backoff = min(backoff * 2, self.max_delay)


def retry_after_seconds(value: str | None,
                        now: Callable[[], float] = time.time) -> float | None:
    """The wait a Retry-After header value asks for, in seconds (RFC 9110 section 10.2.3).

    Either delta-seconds (`120`) or an HTTP date (`Fri, 31 Dec 1999 23:59:59 GMT`; one in the
    past asks for no wait). None when there is no header or it reads as neither.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": a time in UTC, said without a zone
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return max(0.0, moment.timestamp() - now())


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


@dataclass(frozen=True)
class Retry:
    """An attempt to make again: what went wrong, and the wait the server asked for, if any.

    `delay` (e.g. from Retry-After) takes the place of the policy's next backoff delay;
    `throttled` marks a 429, whose wait a client may spend its own way (`RetrySchedule.hold`).
    """

    problem: str
    delay: float | None = None
    throttled: bool = False

    @classmethod
    def answered(cls, status: int, headers: Mapping[str, str], throttled: bool = False,
                 detail: str = "") -> Retry:
        """A retry after an answer of `status`, waiting as its Retry-After header asks."""
        problem = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
        return cls(problem, retry_after_seconds(headers.get("Retry-After")), throttled)


class RetrySchedule:
    """The attempts of one request: another after each `Retry`, until the budget is spent."""

    def __init__(self, policy: RetryPolicy, service: str, counters: Counters, *,
                 hold: Callable[[float], None] | None = None,
                 log_level: int = logging.DEBUG,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        """Start the budget now; `service` names who keeps failing in logs and the final error.

        `hold` spends a throttled retry's wait instead of sleeping (the cohort tap pauses every
        query); `clock` and `sleep` are time's unless a test gives its own.
        """
        self._policy, self._service, self._counters = policy, service, counters
        self._hold, self._log_level = hold, log_level
        self._clock, self._sleep = clock, sleep
        self._deadline = clock() + policy.budget_seconds
        self._delays = policy.delays()

    def run(self, attempt: Callable[[], T | Retry]) -> T:
        """What `attempt` returns, calling it again after a wait while it returns a Retry.

        Each call counts as a request. Raises RetriesExhausted once the budget is spent.
        """
        while True:
            self._counters.add(requests=1)
            outcome = attempt()
            if not isinstance(outcome, Retry):
                return outcome
            self.wait(outcome)

    def wait(self, retry: Retry) -> None:
        """Wait before the next attempt: `retry.delay`, or the next backoff delay.

        Raises RetriesExhausted, naming the problem and max_retry_seconds, when the wait would
        end past the budget.
        """
        delay = next(self._delays) if retry.delay is None else retry.delay
        if self._clock() + delay > self._deadline:
            budget = self._policy.budget_seconds
            msg = (f"{self._service} still failing after the retry budget of {budget:g} s "
                   f"(last: {retry.problem}); raise max_retry_seconds or try again later")
            raise RetriesExhausted(msg, retry.problem, budget)
        self._counters.add(retries=1)
        logger.log(self._log_level, "%s: %s; retrying in %.1f s", self._service, retry.problem,
                   delay)
        if retry.throttled and self._hold is not None:
            self._hold(delay)
        else:
            self._sleep(delay)
