"""OrderedSends: sends in a pool, outcomes taken in the order sent, STATE released after them.

Each send blocks on an Event the test sets, so which send finishes first is the test's choice
(no sleeping, no timing)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from plugin_support.ordered_sends import HELD_BATCHES_FACTOR, OrderedSends


class FatalSendError(Exception):
    pass


class Harness:
    """Sends that finish when the test says; what was accounted and emitted, in order."""

    def __init__(self, max_in_flight: int = 4) -> None:
        self.release: dict[str, threading.Event] = {}
        self.started: dict[str, threading.Event] = {}
        self.fail: set[str] = set()
        self.log: list[Any] = []
        self.closed = 0
        self.sends: OrderedSends[str, str] = OrderedSends(
            send=self._send, account=self._account, emit_state=self._emit,
            before_state=lambda: self.log.append("before-state"),
            max_in_flight=max_in_flight, thread_name="test-send", on_close=self._close)

    def events(self, batch: str) -> tuple[threading.Event, threading.Event]:
        return (self.started.setdefault(batch, threading.Event()),
                self.release.setdefault(batch, threading.Event()))

    def _send(self, batch: str) -> str:
        started, release = self.events(batch)
        started.set()
        assert release.wait(60), f"{batch} never released"
        if batch in self.fail:
            raise FatalSendError(batch)
        return f"sent {batch}"

    def _account(self, batch: str, outcome: str) -> None:
        self.log.append(("account", batch, outcome))

    def _emit(self, state: dict[str, Any]) -> None:
        self.log.append(("state", state))

    def _close(self) -> None:
        self.closed += 1

    def submit(self, batch: str) -> None:
        self.events(batch)
        self.sends.submit(batch)

    def finish_send(self, batch: str) -> None:
        """Let `batch`'s send end and wait until its future is done."""
        self.release[batch].set()
        future = next(f for _, b, f in self.sends._in_flight if b == batch)
        future.exception(timeout=60)


def test_outcomes_are_accounted_in_the_order_sent_whatever_order_sends_end() -> None:
    h = Harness()
    for batch in ("a", "b", "c"):
        h.submit(batch)
    h.finish_send("c")
    h.finish_send("b")
    h.sends.collect(block=False)
    assert h.log == []                  # "a" is unfinished: nothing after it is taken
    h.finish_send("a")
    h.sends.finish()
    assert h.log == [("account", "a", "sent a"), ("account", "b", "sent b"),
                     ("account", "c", "sent c")]
    assert h.closed == 1


def test_a_state_is_emitted_only_after_every_batch_read_before_it() -> None:
    h = Harness()
    h.submit("a")
    h.submit("b")
    h.sends.add_state({"after": "b"}, open_batch=False)
    h.submit("c")
    h.sends.add_state({"after": "c+open"}, open_batch=True)   # the next batch is not sent yet
    h.finish_send("b")
    h.finish_send("c")
    h.sends.collect(block=False)
    assert not any(entry[0] == "state" for entry in h.log if isinstance(entry, tuple))
    h.finish_send("a")
    h.sends.collect(block=False)
    assert h.log == [("account", "a", "sent a"), ("account", "b", "sent b"),
                     ("account", "c", "sent c"), "before-state", ("state", {"after": "b"})]
    h.submit("d")
    h.finish_send("d")
    h.sends.finish()
    assert h.log[-3:] == [("account", "d", "sent d"), "before-state",
                          ("state", {"after": "c+open"})]


def test_a_state_with_nothing_in_flight_is_emitted_at_once() -> None:
    h = Harness()
    h.sends.add_state({"n": 1}, open_batch=False)
    assert h.log == ["before-state", ("state", {"n": 1})]
    h.sends.finish()


def test_a_fatal_send_error_is_raised_and_no_later_state_is_emitted() -> None:
    h = Harness()
    h.fail.add("b")
    h.submit("a")
    h.sends.add_state({"n": 1}, open_batch=False)
    h.finish_send("a")
    h.sends.collect(block=False)
    h.submit("b")
    h.sends.add_state({"n": 2}, open_batch=False)
    h.submit("c")
    h.sends.add_state({"n": 3}, open_batch=False)
    h.finish_send("b")
    h.finish_send("c")
    with pytest.raises(FatalSendError, match="b"):
        h.sends.collect(block=False)
    h.sends.abandon()
    assert h.log == [("account", "a", "sent a"), "before-state", ("state", {"n": 1})]
    assert h.closed == 1


class Probe:
    """A `clashes` callback that counts its calls: two calls prove submit looped, held back."""

    def __init__(self, clashing: set[str]) -> None:
        self.clashing = clashing
        self.calls = 0
        self.changed = threading.Condition()

    def __call__(self, batch: str) -> bool:
        with self.changed:
            self.calls += 1
            self.changed.notify_all()
        return batch in self.clashing

    def wait_for_calls(self, calls: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.calls >= calls, timeout=60)


@pytest.mark.parametrize(("max_in_flight", "clashing"), [(4, {"a"}), (2, set())],
                         ids=["clashing batch unfinished", "max_in_flight unfinished"])
def test_submit_waits_while_a_clashing_batch_or_max_in_flight_are_unfinished(
        max_in_flight: int, clashing: set[str]) -> None:
    h = Harness(max_in_flight=max_in_flight)
    h.submit("a")
    h.submit("b")
    h.finish_send("b")   # "b" is done but not taken: it waits behind "a"
    if not clashing:
        h.submit("b2")   # two unfinished now: "a" and "b2"
    probe = Probe(clashing)
    third = threading.Thread(target=h.sends.submit, args=("c",), kwargs={"clashes": probe})
    h.events("c")
    third.start()
    probe.wait_for_calls(2 if clashing else 3)   # it looked, waited, and looked again
    assert not h.started["c"].is_set()
    h.release["a"].set()
    third.join(60)
    assert not third.is_alive()
    for batch in ("b2", "c"):
        h.release.get(batch, threading.Event()).set()
    h.sends.finish()
    sent = ["a", "b", "c"] if clashing else ["a", "b", "b2", "c"]
    assert [entry[1] for entry in h.log] == sent


def test_finished_batches_held_behind_an_unfinished_one_are_bounded() -> None:
    h = Harness(max_in_flight=2)
    h.submit("slow")
    limit = 2 * HELD_BATCHES_FACTOR
    for n in range(limit - 1):          # each finishes, but waits behind "slow" for its turn
        h.submit(f"b{n}")
        h.finish_send(f"b{n}")
    assert len(h.sends._in_flight) == limit
    probe = Probe(set())
    blocked = threading.Thread(target=h.sends.submit, args=("over",), kwargs={"clashes": probe})
    h.events("over")
    blocked.start()
    probe.wait_for_calls(2)             # "slow" asked about twice: submit is held back
    assert not h.started["over"].is_set()
    h.release["slow"].set()
    blocked.join(60)
    assert not blocked.is_alive()
    h.release["over"].set()
    h.sends.finish()
    assert [entry[1] for entry in h.log] == ["slow", *[f"b{n}" for n in range(limit - 1)], "over"]
