"""QueryBudget: queries per window, a 429's pause, the window carried to the next run.

On a simulated clock: the budget's waits move the clock instead of sleeping, and are recorded."""

from __future__ import annotations

import logging
import threading

import pytest

from tap_mixpanel_cohorts import query_budget
from tap_mixpanel_cohorts.query_budget import QueryBudget, describe_duration

EPOCH_OFFSET = 1_800_000_000.0   # the wall clock is the monotonic clock plus this


class SimulatedClock:
    """time.monotonic and time.time for the budget; `waits` are the seconds it waited."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + EPOCH_OFFSET


class SimulatedCondition(threading.Condition):
    """A condition whose timed wait passes simulated time at once."""

    def __init__(self, clock: SimulatedClock) -> None:
        super().__init__()
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None, "the budget would wait for a query that never ends"
        self.clock.waits.append(timeout)
        self.clock.now += timeout
        return False


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimulatedClock:
    simulated = SimulatedClock()
    monkeypatch.setattr(query_budget, "time", simulated)
    return simulated


def budget(clock: SimulatedClock, per_window: int, window: float = 100.0) -> QueryBudget:
    made = QueryBudget(max_per_window=per_window, max_concurrent=2, window_seconds=window)
    made._changed = SimulatedCondition(clock)
    return made


def run_query(made: QueryBudget, clock: SimulatedClock, seconds: float = 1.0) -> float:
    """Run one query lasting `seconds`; the time it started."""
    with made.query():
        started = clock.now
        clock.now += seconds
    return started


def test_a_query_over_the_budget_waits_until_the_oldest_leaves_the_window(
        clock: SimulatedClock) -> None:
    made = budget(clock, per_window=3)
    assert [run_query(made, clock) for _ in range(3)] == [0.0, 1.0, 2.0]
    assert clock.waits == []
    # the first query ended at 1.0: it leaves the window at 101.0
    assert run_query(made, clock) == 101.0
    assert run_query(made, clock) == 102.0
    assert made.queries == 5


def test_a_429_pause_holds_every_query_until_it_has_passed(clock: SimulatedClock) -> None:
    made = budget(clock, per_window=100)
    run_query(made, clock)
    made.pause(30)
    made.pause(5)                       # a shorter pause does not cut the longer one
    assert run_query(made, clock) == 31.0


def test_a_long_wait_is_logged_with_the_budget(clock: SimulatedClock,
                                               caplog: pytest.LogCaptureFixture) -> None:
    made = budget(clock, per_window=1, window=3600)
    run_query(made, clock)
    with caplog.at_level(logging.INFO, logger=query_budget.__name__):
        run_query(made, clock)
    assert "waiting 1 h 0 min before the next query (at most 1 queries per 1 h 0 min)" \
        in caplog.text


def test_a_run_seeded_with_the_last_runs_queries_spends_only_what_is_left(
        clock: SimulatedClock) -> None:
    first = budget(clock, per_window=2)
    run_query(first, clock)             # ends at 1.0
    run_query(first, clock)             # ends at 2.0
    ended = first.recent()
    assert ended == [1.0 + EPOCH_OFFSET, 2.0 + EPOCH_OFFSET]
    clock.now = 50.0
    second = budget(clock, per_window=2)
    second.seed(ended)
    assert run_query(second, clock) == 101.0
    assert run_query(second, clock) == 102.0


def test_queries_that_left_the_window_are_not_carried(clock: SimulatedClock) -> None:
    made = budget(clock, per_window=5)
    run_query(made, clock)
    clock.now = 150.0
    assert made.recent() == []          # the query that ended at 1.0 left the window at 101.0
    run_query(made, clock)
    assert made.recent() == [151.0 + EPOCH_OFFSET]
    fresh = budget(clock, per_window=1)
    fresh.seed([0.5 + EPOCH_OFFSET])    # long gone
    assert run_query(fresh, clock) == 151.0


def test_seconds_for_and_durations_as_a_user_reads_them() -> None:
    made = QueryBudget(max_per_window=60, max_concurrent=5, window_seconds=3600)
    assert made.seconds_for(30) == 1800.0
    assert [describe_duration(s) for s in (40, 720, 15060)] == ["40 s", "12 min", "4 h 11 min"]
