"""Adaptive sending against a simulated token bucket (Mixpanel's intake), on a simulated clock."""

from __future__ import annotations

import pytest

from target_mixpanel.pacing import AdaptivePace

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


@pytest.mark.parametrize("limit", [5_000, 20_000, 30_000])
def test_one_sender_settles_under_the_intake(limit: int) -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    pace = AdaptivePace(4, clock=lambda: clock[0], sleep=sleep)
    bucket = Bucket(limit)
    accepted = requests = throttled = 0
    while clock[0] < 600:
        started = pace.acquire(BATCH)
        clock[0] += 0.01  # the request's round trip
        ok = bucket.take(started, BATCH)
        pace.release(started, throttled=not ok, events=BATCH)
        requests += 1
        throttled += not ok
        accepted += BATCH * ok
    assert accepted / clock[0] >= 0.9 * limit
    # under 2% of requests throttled at 20k and 30k; at 5k (2.5 requests/s of 2,000 events)
    # each probe past the ceiling costs a larger share: 6.7% today (issue 6 is open on it)
    assert throttled / requests < (0.02 if limit >= 20_000 else 0.08)
    assert pace.rate is not None
    assert pace.rate < 1.1 * limit
