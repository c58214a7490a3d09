"""plugin_support.retry: the backoff delays, the budget, jitter, and a server's wait first.

Time is a fake clock that `sleep` advances: nothing here sleeps.
"""

from __future__ import annotations

import itertools
import logging

import pytest

from plugin_support.retry import Counters, Retry, RetryPolicy, RetrySchedule
from plugin_support.retry import RetriesExhausted as Exhausted

NO_JITTER = {"jitter_min": 0.0, "jitter_max": 0.0}


class FakeTime:
    """A monotonic clock that only `sleep` moves; every sleep and hold is kept."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.holds: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if len(self.sleeps) > 100:
            raise AssertionError("retried without end")

    def hold(self, seconds: float) -> None:
        self.holds.append(seconds)
        self.now += seconds


def _schedule(policy: RetryPolicy, time: FakeTime, counters: Counters | None = None,
              **kwargs: object) -> RetrySchedule:
    return RetrySchedule(policy, "Vendor", counters or Counters(), clock=time.clock,
                         sleep=time.sleep, **kwargs)  # type: ignore[arg-type]


def _answers(*outcomes: object):
    """An attempt that returns the outcomes in turn."""
    given = iter(outcomes)
    return lambda: next(given)


def test_delays_double_from_the_first_up_to_the_longest() -> None:
    policy = RetryPolicy(first_delay=2, max_delay=60, **NO_JITTER)
    assert list(itertools.islice(policy.delays(), 8)) == [2, 4, 8, 16, 32, 60, 60, 60]


def test_jitter_is_added_to_every_delay_within_its_range() -> None:
    policy = RetryPolicy(first_delay=2, max_delay=8, jitter_min=1, jitter_max=5)
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    assert list(itertools.islice(policy.delays(uniform), 4)) == [7, 9, 13, 13]
    assert asked == [(1, 5)] * 4


def test_jitter_zero_gives_the_bare_delays_and_draws_no_random_number() -> None:
    def no_random(low: float, high: float) -> float:
        raise AssertionError("a policy without jitter drew a random number")

    policy = RetryPolicy(first_delay=0.5, max_delay=3, **NO_JITTER)
    assert list(itertools.islice(policy.delays(no_random), 5)) == [0.5, 1, 2, 3, 3]


def test_a_first_delay_above_the_longest_is_the_longest() -> None:
    policy = RetryPolicy(first_delay=10, max_delay=3, **NO_JITTER)
    assert list(itertools.islice(policy.delays(), 3)) == [3, 3, 3]


def test_retries_wait_the_backoff_delays_until_an_answer_is_taken() -> None:
    time, counters = FakeTime(), Counters()
    schedule = _schedule(RetryPolicy(first_delay=2, **NO_JITTER), time, counters)
    answer = schedule.run(_answers(Retry("HTTP 500"), Retry("network error"), Retry("HTTP 503"),
                                   "the answer"))
    assert answer == "the answer"
    assert time.sleeps == [2, 4, 8]
    assert (counters.requests, counters.retries) == (4, 3)


def test_the_budget_ends_the_retries_before_a_wait_that_would_pass_it() -> None:
    time, counters = FakeTime(), Counters()
    schedule = _schedule(RetryPolicy(first_delay=2, budget_seconds=10, **NO_JITTER), time,
                         counters)
    with pytest.raises(Exhausted) as raised:
        schedule.run(lambda: Retry("HTTP 502"))
    assert time.sleeps == [2, 4]  # 2 + 4 + 8 would end past 10 s: no third wait
    assert (counters.requests, counters.retries) == (3, 2)
    assert raised.value.problem == "HTTP 502"
    assert raised.value.budget_seconds == 10
    assert "Vendor" in str(raised.value)
    assert "max_retry_seconds" in str(raised.value)


def test_a_budget_of_zero_makes_no_retry() -> None:
    time = FakeTime()
    with pytest.raises(Exhausted):
        _schedule(RetryPolicy(first_delay=2, budget_seconds=0), time).run(
            lambda: Retry("HTTP 500"))
    assert time.sleeps == []


def test_the_servers_wait_takes_the_place_of_the_backoff_delay() -> None:
    time = FakeTime()
    schedule = _schedule(RetryPolicy(first_delay=2, **NO_JITTER), time)
    schedule.run(_answers(Retry("HTTP 429", delay=30), Retry("HTTP 500"),
                          Retry("HTTP 429", delay=0), Retry("HTTP 500"), "done"))
    # the backoff goes on where it was: a Retry-After does not use up a delay
    assert time.sleeps == [30, 2, 0, 4]


def test_a_servers_wait_past_the_budget_ends_the_retries_at_once() -> None:
    time = FakeTime()
    schedule = _schedule(RetryPolicy(first_delay=2, budget_seconds=60, **NO_JITTER), time)
    with pytest.raises(Exhausted, match="HTTP 429"):
        schedule.run(lambda: Retry("HTTP 429", delay=3600))
    assert time.sleeps == []


def test_a_throttled_wait_goes_to_hold_when_the_client_gives_one() -> None:
    time = FakeTime()
    schedule = _schedule(RetryPolicy(first_delay=2, **NO_JITTER), time, hold=time.hold)
    schedule.run(_answers(Retry("HTTP 429", delay=5, throttled=True), Retry("HTTP 500"), 1))
    assert time.holds == [5]
    assert time.sleeps == [2]


def test_an_error_of_an_attempt_ends_the_retries() -> None:
    time, counters = FakeTime(), Counters()

    def refused() -> Retry:
        raise PermissionError("401")

    with pytest.raises(PermissionError):
        _schedule(RetryPolicy(), time, counters).run(refused)
    assert (counters.requests, counters.retries, time.sleeps) == (1, 0, [])


def test_each_retry_is_logged_at_the_clients_level(caplog: pytest.LogCaptureFixture) -> None:
    time = FakeTime()
    schedule = _schedule(RetryPolicy(first_delay=2, **NO_JITTER), time,
                         log_level=logging.WARNING)
    with caplog.at_level(logging.WARNING, logger="plugin_support.retry"):
        schedule.run(_answers(Retry("HTTP 503"), None))
    assert [r.getMessage() for r in caplog.records] == ["Vendor: HTTP 503; retrying in 2.0 s"]
