"""The delivery pipeline: records in, batches out, every record accounted for.

One runs in each worker process (target_mixpanel.worker_process). A STATE (there: a chunk
marker) is released only when everything before it is imported, skipped by rule or
dead-lettered.

The reading thread maps, checks and encodes events and fills a batch; full batches go to a
pool of sending threads (at most `max_concurrency` requests in flight). Results are collected
in batch order (plugin_support.ordered_sends), so a STATE is emitted exactly when every batch
before it has its outcome.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from plugin_support.dead_letter import DeadLetterFile
from plugin_support.record_delivery import RecordDelivery, RecordTally
from plugin_support.retry import Counters
from target_mixpanel.event_mapping import SkippedByRule
from target_mixpanel.import_client import BatchResult
from target_mixpanel.mixpanel_rules import MAX_EVENT_BYTES, Refused, check_event
from target_mixpanel.pii import PiiPolicy
from target_mixpanel.profile_updates import ProfileUpdatingSender


class Mapping(Protocol):
    """Turns a record into a Mixpanel event (see event_mapping)."""

    def map(self, stream: str, record: dict[str, Any]) -> dict[str, Any]: ...  # noqa: D102


class Sender(Protocol):
    """Delivers one batch (see import_client)."""

    def batch_events(self, configured: int) -> int: ...  # noqa: D102

    def send(self, events: list[bytes], insert_ids: list[str]) -> BatchResult: ...  # noqa: D102


@dataclass
class Batch:
    """Events on their way, with what is needed to account for (or dead-letter) each one."""

    number: int
    events: list[bytes] = field(default_factory=list)
    # per event: (stream, record or its raw Singer line, event name, $insert_id)
    sources: list[tuple[str, dict[str, Any] | bytes, str, str]] = field(default_factory=list)
    size: int = 2  # the brackets of the JSON array
    opened: float = field(default_factory=time.monotonic)


@dataclass
class Tally(RecordTally):
    """Where every record went (skipped, dead-lettered, imported)."""

    imported: int = 0
    imported_by_event: Counter[str] = field(default_factory=Counter)
    received_by_stream: Counter[str] = field(default_factory=Counter)
    # records refused because of a target setting (see Refused.setting), by setting
    refused_by_setting: Counter[str] = field(default_factory=Counter)


class Delivery(RecordDelivery[Batch, BatchResult]):
    """Maps, batches and sends records; releases STATE messages once they are safe."""

    tally: Tally

    def __init__(self, *, mapping: Mapping, sender: Sender, dead_letters: DeadLetterFile,
                 pii: PiiPolicy, emit_state: Callable[[dict], None], counters: Counters,
                 batch_size: int, max_batch_bytes: int, max_concurrency: int,
                 max_batch_age: float = 5.0):
        """Wire the pipeline; nothing is sent until records arrive."""
        super().__init__(dead_letters=dead_letters, emit_state=emit_state, counters=counters,
                         max_concurrency=max_concurrency, thread_name="mixpanel-import")
        self._map = mapping.map
        self._sender = sender
        self._pii = pii
        self._pii_active = pii.active
        self._batch_size = batch_size
        self._batch_events = batch_size    # the open batch's limit: batch_size, less when paced
        self._max_batch_bytes = max_batch_bytes
        self._batch = Batch(1)
        self.tally = Tally()
        self._received_by_stream = self.tally.received_by_stream
        self._encode = msgspec.json.Encoder(decimal_format="number").encode
        self._max_batch_age = max_batch_age
        # Records are acyclic and short-lived, but thousands wait in batches in flight: with
        # the default thresholds the collector rescans them constantly (~10% of the time).
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)

    # -- records -------------------------------------------------------------------------

    def add(self, stream: str, record: dict[str, Any], raw: bytes | None = None) -> None:
        """Take one record: skip it, dead-letter it, or put it in the open batch.

        With `raw` (the record's Singer line), the batch keeps those bytes instead of the
        record (a third of the memory), and decodes them again only to dead-letter.
        """
        self.received += 1
        self._received_by_stream[stream] += 1
        if self._pii_active:
            record = self._pii.apply(record)
        try:
            event = self._map(stream, record)
            properties = event["properties"]
            check_event(event["event"], properties)
            encoded = self._encode(event)
        except SkippedByRule as skip:
            self.tally.skipped[skip.rule] += 1
            return
        except Refused as refused:
            self._refuse(stream, record, refused)
            return
        size = len(encoded)
        if size >= MAX_EVENT_BYTES:
            self._refuse(stream, record, Refused(
                "event", f"event is {size:,} bytes encoded; Mixpanel takes events under 1 MB"))
            return
        batch = self._batch
        if batch.size + size >= self._max_batch_bytes and batch.events:
            self._submit()
            batch = self._batch
        batch.events.append(encoded)
        batch.sources.append((stream, record if raw is None else raw, event["event"],
                              properties["$insert_id"]))
        batch.size += size + 1
        if len(batch.events) >= self._batch_events:
            self._submit()
        if not self.received & 1023:
            self._collect(block=False)

    def poll(self) -> None:
        """Take finished outcomes and release states; send a batch that waited too long."""
        batch = self._batch
        if batch.events and time.monotonic() - batch.opened > self._max_batch_age:
            self._submit()
        self._collect(block=False)

    def _refuse(self, stream: str, record: dict[str, Any], refused: Refused) -> None:
        self._dead_letter(stream, record, f"refused before sending: {refused.field}",
                          refused.field, refused.message)
        if refused.setting:
            self.tally.refused_by_setting[refused.setting] += 1

    def _record_of(self, source: dict[str, Any] | bytes) -> dict[str, Any]:
        if isinstance(source, dict):
            return source
        record: dict[str, Any] = msgspec.json.decode(source)["record"]
        return self._pii.apply(record) if self._pii_active else record

    # -- batches -------------------------------------------------------------------------

    def _submit(self) -> None:
        batch = self._batch
        if not batch.events:
            return
        self._sends.wait_for_room()
        self._batch = Batch(batch.number + 1)
        self._batch_events = self._sender.batch_events(self._batch_size)
        self._sends.submit(batch)

    def _send(self, batch: Batch) -> BatchResult:
        return self._sender.send(batch.events, [source[3] for source in batch.sources])

    def _account(self, batch: Batch, result: BatchResult) -> None:
        failed = set()
        for failure in result.failures:
            failed.add(failure.index)
            stream, source, _, _ = batch.sources[failure.index]
            record = self._record_of(source)
            self._dead_letter(stream, record, failure.reason, failure.field, failure.message)
        self.tally.imported += result.imported
        names = [source[2] for source in batch.sources]
        if failed:
            names = [name for index, name in enumerate(names) if index not in failed]
        self.tally.imported_by_event.update(names)

    # -- state ---------------------------------------------------------------------------

    def add_state(self, state: dict) -> None:
        """Hold a STATE until every record before it is accounted for."""
        self._sends.add_state(state, open_batch=bool(self._batch.events))

    # -- reporting -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The closing summary (also logged as one JSON line)."""
        tally, counters = self.tally, self.counters
        return {
            "received": self.received,
            "imported": tally.imported,
            "skipped": dict(tally.skipped),
            "dead_lettered": dict(tally.dead_lettered),
            "dead_letter_file": self._dead_letters.written_path,
            **counters.as_summary(),
            "batch_splits_413": counters.splits,
            "imported_by_event": dict(tally.imported_by_event.most_common()),
            "received_by_stream": dict(tally.received_by_stream),
            "refused_by_setting": dict(tally.refused_by_setting),
            # profile_properties: the user profiles written (profile_updates.py)
            **({"profiles_updated": self._sender.profiles_updated}
               if isinstance(self._sender, ProfileUpdatingSender) else {}),
            "seconds": self.seconds(),
        }
