"""What every target's delivery pipeline shares: the ordered sends, dead letters, the end.

A target's Delivery (target_braze.delivery, target_mixpanel.delivery) subclasses
`RecordDelivery`: it folds records into its own batches, sends them (`_send`), accounts for
each outcome (`_account`) and writes its summary; the sends in flight, the STATE release,
dead-lettering, finishing and abandoning are here.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from plugin_support.dead_letter import DeadLetterFile
from plugin_support.ordered_sends import OrderedSends
from plugin_support.retry import Counters

Batch = TypeVar("Batch")
Outcome = TypeVar("Outcome")


@dataclass
class RecordTally:
    """Records skipped by a rule and dead-lettered, by rule and by reason."""

    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)


class RecordDelivery(Generic[Batch, Outcome]):
    """Sends batches in order, dead-letters records, releases STATE messages once safe."""

    tally: RecordTally

    def __init__(self, *, dead_letters: DeadLetterFile, emit_state: Callable[[dict], None],
                 counters: Counters, max_concurrency: int, thread_name: str):
        """Wire the sends (at most `max_concurrency` in flight); nothing is sent yet."""
        self._dead_letters = dead_letters
        self.counters = counters
        self.received = 0
        self._sends: OrderedSends[Batch, Outcome] = OrderedSends(
            send=self._send, account=self._account, emit_state=emit_state,
            before_state=dead_letters.flush, on_close=dead_letters.close,
            max_in_flight=max_concurrency, thread_name=thread_name)
        self._started = time.monotonic()

    # -- the subclass's part -------------------------------------------------------------

    def _submit(self) -> None:
        """Send the open batch, if it holds anything."""
        raise NotImplementedError

    def _send(self, batch: Batch) -> Outcome:
        """Deliver one batch (in a sending thread)."""
        raise NotImplementedError

    def _account(self, batch: Batch, outcome: Outcome) -> None:
        """Count (or dead-letter) every record of a batch with its outcome."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------

    def _collect(self, *, block: bool) -> None:
        self._sends.collect(block=block)

    def _dead_letter(self, stream: str, record: dict[str, Any], reason: str,
                     field_name: str | None, message: str | None) -> None:
        self._dead_letters.write(stream, record, reason, field_name, message)
        self.tally.dead_lettered[reason] += 1

    def finish(self) -> None:
        """Send what is left, wait for every outcome, release the last state."""
        self._submit()
        self._sends.finish()

    def abandon(self) -> None:
        """Stop after a fatal error: wait for requests in flight, release nothing more."""
        self._sends.abandon()

    def seconds(self) -> float:
        """Since the pipeline was wired, for the summary."""
        return round(time.monotonic() - self._started, 3)
