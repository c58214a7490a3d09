"""Batches sent from a pool of threads, their outcomes taken in the order they were sent.

A target's delivery pipeline hands each full batch to `OrderedSends.submit`; at most
`max_in_flight` requests run at once. Outcomes are accounted for oldest first, so a STATE held
here is released exactly when every batch read before it has its outcome (delivered, or
dead-lettered by the `account` callback). A fatal error raised by a send is raised again when
its outcome is taken, and no state past it is released.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Generic, TypeVar

from plugin_support.state_release import StateGate

Batch = TypeVar("Batch")
Outcome = TypeVar("Outcome")

# Finished batches held (in order) behind an unfinished one, as a multiple of max_in_flight.
HELD_BATCHES_FACTOR = 4


class OrderedSends(Generic[Batch, Outcome]):
    """Sends in flight, outcomes in order, and the STATE messages they release."""

    def __init__(self, *, send: Callable[[Batch], Outcome],
                 account: Callable[[Batch, Outcome], None],
                 emit_state: Callable[[dict[str, Any]], None],
                 before_state: Callable[[], None], max_in_flight: int, thread_name: str,
                 on_close: Callable[[], None] = lambda: None):
        """Wire the callbacks; nothing is sent yet.

        `send` runs in the pool; `account` runs in the caller's thread as outcomes are taken,
        `before_state` (e.g. flush dead letters) before each state is emitted, `on_close`
        (e.g. close them) once the sends are over, finished or abandoned.
        """
        self._send = send
        self._account = account
        self._emit_state = emit_state
        self._before_state = before_state
        self._on_close = on_close
        self._max_in_flight = max_in_flight
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight,
                                        thread_name_prefix=thread_name)
        self._in_flight: deque[tuple[int, Batch, Future[Outcome]]] = deque()
        self._sent = 0                     # batches submitted, numbered from 1
        self._completed_through = 0        # every batch numbered <= this has its outcome
        self._states = StateGate()

    def submit(self, batch: Batch, clashes: Callable[[Batch], bool] | None = None) -> None:
        """Send `batch` once there is room (and no unfinished batch `clashes` with it)."""
        self.wait_for_room(clashes)
        self._sent += 1
        self._in_flight.append((self._sent, batch, self._pool.submit(self._send, batch)))

    def wait_for_room(self, clashes: Callable[[Batch], bool] | None = None) -> None:
        """Until fewer than max_in_flight sends are unfinished, none of them clashing.

        A batch waiting to retry (after a 429) does not hold back the ones behind it; their
        outcomes wait in order, up to HELD_BATCHES_FACTOR x max_in_flight batches.
        """
        while True:
            self.collect(block=False)
            unfinished = [(b, f) for _, b, f in self._in_flight if not f.done()]
            clashing = [f for b, f in unfinished if clashes is not None and clashes(b)]
            if not clashing and len(unfinished) < self._max_in_flight and \
                    len(self._in_flight) < self._max_in_flight * HELD_BATCHES_FACTOR:
                return
            wait(clashing or [f for _, f in unfinished], timeout=1.0,
                 return_when=FIRST_COMPLETED)

    def collect(self, *, block: bool) -> None:
        """Take the outcomes of finished sends, oldest first; release the states they cover.

        With `block`, wait for at least the oldest one.
        """
        while self._in_flight:
            number, batch, future = self._in_flight[0]
            if not future.done():
                if not block:
                    break
                wait([future], timeout=1.0, return_when=FIRST_COMPLETED)
                continue
            self._in_flight.popleft()
            self._account(batch, future.result())  # re-raises a fatal send error
            self._completed_through = number
            block = False
        if not self._in_flight:
            self._completed_through = self._sent
        ready = self._states.release_through(self._completed_through)
        if ready is not None:
            self._before_state()
            self._emit_state(ready)

    def add_state(self, state: dict[str, Any], *, open_batch: bool) -> None:
        """Hold a STATE until every batch so far (and the `open_batch` not yet sent) is done."""
        self._states.hold(self._sent + 1 if open_batch else self._sent, state)
        self.collect(block=False)

    def finish(self) -> None:
        """Wait for every outcome; release the last state."""
        while self._in_flight:
            self.collect(block=True)
        self.collect(block=False)
        self._pool.shutdown(wait=True)
        self._on_close()

    def abandon(self) -> None:
        """Stop after a fatal error: wait for requests in flight, release nothing more."""
        self._states.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._on_close()
