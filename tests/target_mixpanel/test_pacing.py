"""Adaptive sending against a simulated token bucket (Mixpanel's intake), on a simulated clock,
and its pace shared by real worker processes."""

from __future__ import annotations

import heapq
import math
import multiprocessing
import random
from typing import Any

import pytest

from target_mixpanel.pacing import CEILING, MEASURED, NUMBERS, RATE, AdaptivePace, SharedPace

BATCH = 2000


class Bucket:
    """R events/s, one second of burst; says whether a request of n events is taken."""

    def __init__(self, rate: float):
        self.rate, self.tokens, self.at = rate, rate, 0.0

    def take(self, now: float, events: int) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < events:
            return False
        self.tokens -= events
        return True


def simulate(limit: float, round_trips: list[float], seconds: float = 600,
             window: int = 3, noise: float = 0.0) -> tuple[float, float, AdaptivePace]:
    """Senders (one per round trip, like the target's worker processes) sharing one pace send
    to a bucket of `limit` events/s (no limit: inf) that also refuses a `noise` share of
    requests at random (before the bucket, taking nothing from it); returns the accepted
    events/s, the share of requests throttled, and a pace."""
    rng = random.Random(7)
    clock = [0.0]
    shared = SharedPace.local()
    paces = [AdaptivePace(window, shared, clock=lambda: clock[0]) for _ in round_trips]
    bucket = Bucket(limit)
    # events: (time, sender, "send" | "answer", paced_at, events)
    queue = [(0.0, i, "send", 0.0, 0) for i in range(len(round_trips)) for _ in range(window)]
    heapq.heapify(queue)
    in_flight = [0] * len(round_trips)
    pending = [window] * len(round_trips)  # "send" events queued per sender
    accepted = requests = throttled = 0
    while queue and queue[0][0] < seconds:
        now, sender, kind, paced_at, events = heapq.heappop(queue)
        clock[0] = now
        pace = paces[sender]
        if kind == "send":
            if in_flight[sender] >= max(1, int(pace.window)):
                pending[sender] -= 1
                continue  # the window is full: this sender sends again after an answer
            events = pace.batch_events(BATCH)
            wait = pace.take_slot(events)
            if wait:
                heapq.heappush(queue, (now + wait, sender, "send", 0.0, 0))
                continue
            pending[sender] -= 1
            in_flight[sender] += 1
            heapq.heappush(queue, (now + round_trips[sender], sender, "answer", now, events))
        else:
            ok = rng.random() >= noise and (math.isinf(limit) or bucket.take(now, events))
            in_flight[sender] -= 1
            pace.release(paced_at, throttled=not ok, events=events)
            requests += 1
            throttled += not ok
            accepted += events * ok
            for _ in range(max(1, int(pace.window)) - in_flight[sender] - pending[sender]):
                pending[sender] += 1
                heapq.heappush(queue, (now, sender, "send", 0.0, 0))
    return accepted / seconds, throttled / requests, paces[0]


@pytest.mark.parametrize("limit", [5_000, 20_000, 30_000])
@pytest.mark.parametrize("round_trips", [[0.01], [0.01, 0.05, 0.3], [0.2, 0.5, 1.0]],
                         ids=["one sender", "three mixed", "three slow"])
def test_senders_settle_under_the_intake(limit: int, round_trips: list[float]) -> None:
    accepted, throttled, pace = simulate(limit, round_trips)
    assert accepted >= 0.9 * limit
    assert throttled < 0.02
    assert pace.rate is not None
    assert pace.rate < 1.1 * limit
    assert pace.cuts >= 5  # it did probe the limit, again and again


@pytest.mark.parametrize("round_trips", [[0.01], [0.01, 0.05, 0.3], [0.5, 0.5, 0.5]],
                         ids=["one sender", "three mixed", "three slow"])
def test_random_429s_do_not_starve_the_senders(round_trips: list[float]) -> None:
    # no rate limit, but 10% of requests refused at random: the most that can be accepted is
    # 90% of what the senders' windows carry; each cut for a random 429 is tested and undone
    capacity = sum(3 * BATCH / round_trip for round_trip in round_trips)
    accepted, throttled, pace = simulate(math.inf, round_trips, noise=0.1)
    assert accepted >= 0.7 * capacity
    assert 0.09 <= throttled <= 0.11
    assert pace.undone >= 1
    assert pace.background >= 0.03  # learned: random 429s no longer start cuts


def test_a_low_pace_makes_smaller_batches() -> None:
    pace = AdaptivePace(4)
    assert pace.batch_events(2000) == 2000  # unpaced: as configured
    pace._shared.values[RATE] = 5_000
    assert pace.batch_events(2000) == 500
    pace._shared.values[RATE] = 100
    assert pace.batch_events(2000) == 50
    assert pace.batch_events(20) == 20


ROUNDS = 10
STEP = 0.125  # seconds: one request of 100 events at 800 events/s (exact in binary)


def _take_slots(shared: SharedPace, clock: Any, rounds: Any, booked: Any) -> None:
    """Each round, at the same simulated moment as the other workers, try for one slot."""
    pace = AdaptivePace(1, shared, clock=lambda: clock.value)
    for _ in range(ROUNDS):
        rounds.wait()
        if pace.take_slot(100) == 0.0:
            with booked.get_lock():
                booked.value += 1
        rounds.wait()


def test_worker_processes_share_one_pace() -> None:
    context = multiprocessing.get_context("fork")
    shared = SharedPace.for_processes(context)
    assert len(shared.values) == NUMBERS
    shared.values[RATE] = 800.0  # one request of 100 events per STEP, for all together
    shared.values[CEILING] = 800.0
    shared.values[MEASURED] = 1.0
    clock = context.RawValue("d", 1000.0)  # the simulated clock every worker reads
    booked = context.Value("i", 0)
    workers = 3
    rounds = context.Barrier(workers + 1)
    processes = [context.Process(target=_take_slots, args=(shared, clock, rounds, booked))
                 for _ in range(workers)]
    for process in processes:
        process.start()
    for _ in range(ROUNDS):
        rounds.wait(timeout=60)  # the workers try for a slot at this moment
        rounds.wait(timeout=60)  # all of them did
        clock.value += STEP
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    # unshared, each worker would book a slot every round (3 x ROUNDS); shared, one does
    assert booked.value == ROUNDS
