"""The delivery pipeline: records in, one attributes object per user per request, STATE out.

The reading thread folds each record's change into the open request (a user's changes in one
request go in one object; a request holding bulk-load records is sent as one); a full request
goes to a pool of sending threads (at most `max_concurrency` in flight). A request holding a
user whose earlier request is still on its way waits for it, so a user's changes reach Braze in
input order. Outcomes are taken in request order, and a STATE is released
(plugin_support.ordered_sends) once every record before it is applied or dead-lettered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from plugin_support.dead_letter import DeadLetterFile
from plugin_support.record_delivery import RecordDelivery, RecordTally
from plugin_support.retry import Counters
from target_braze.user_changes import Refused, Skipped, UserChanges
from target_braze.users_track import ObjectFailure

# An open request is sent once a record arrives this long after its first (a slow tap); a
# STATE and the end of input send it too.
MAX_REQUEST_AGE = 2.0


class Sender(Protocol):
    """Delivers one request's objects (see users_track)."""

    def send(self, objects: list[dict[str, Any]],  # noqa: D102
             bulk: bool = False) -> list[ObjectFailure]: ...


@dataclass
class Request:
    """Attributes objects on their way, with the records each one stands for."""

    number: int
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)   # by user
    sources: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    opened: float = field(default_factory=time.monotonic)
    bulk: bool = False   # holds a first sync's or full resync's sets (X-Braze-Bulk)


@dataclass
class Tally(RecordTally):
    """Where every record went (skipped, dead-lettered, applied), and what Braze applied."""

    applied: int = 0                 # records
    users_updated: int = 0           # attributes objects applied
    cohort_sets: int = 0             # whole cohort sets written (array or booleans)
    attributes_set: int = 0


class Delivery(RecordDelivery[Request, list[ObjectFailure]]):
    """Folds, sends and accounts for records; releases STATE messages once they are safe."""

    tally: Tally

    def __init__(self, *, changes: UserChanges, sender: Sender, dead_letters: DeadLetterFile,
                 emit_state: Callable[[dict], None], counters: Counters,
                 objects_per_request: int, max_concurrency: int):
        """Wire the pipeline; nothing is sent until records arrive."""
        super().__init__(dead_letters=dead_letters, emit_state=emit_state, counters=counters,
                         max_concurrency=max_concurrency, thread_name="braze-track")
        self._changes = changes
        self._sender = sender
        self._per_request = objects_per_request
        self._request = Request(1)
        self.tally = Tally()

    # -- records -------------------------------------------------------------------------

    def add(self, stream: str, record: dict[str, Any]) -> None:
        """Take one record: skip it, dead-letter it, or fold it into the open request."""
        self.received += 1
        try:
            change = self._changes.change(stream, record)
        except Skipped as skip:
            self.tally.skipped[skip.rule] += 1
            return
        except Refused as refused:
            self._dead_letter(stream, record, f"refused before sending: {refused.field}",
                              refused.field, refused.message)
            return
        request = self._request
        user = change.user
        target = request.objects.get(user)
        if target is None:
            if len(request.objects) >= self._per_request:
                self._submit()
                request = self._request
            if not request.objects:
                request.opened = time.monotonic()
            target = request.objects[user] = self._changes.new_object(user)
            request.sources[user] = []
        self._changes.fold(target, change)
        request.bulk |= change.bulk
        request.sources[user].append((stream, record))
        if time.monotonic() - request.opened > MAX_REQUEST_AGE:
            self._submit()
        elif not self.received & 255:
            self._collect(block=False)

    # -- requests ------------------------------------------------------------------------

    def _submit(self) -> None:
        request = self._request
        if not request.objects:
            return
        users = request.objects.keys()
        # a user's earlier request still on its way goes first: changes arrive in input order
        self._sends.wait_for_room(lambda sent: not users.isdisjoint(sent.objects))
        self._request = Request(request.number + 1)
        self._sends.submit(request)

    def _send(self, request: Request) -> list[ObjectFailure]:
        return self._sender.send(list(request.objects.values()), request.bulk)

    def _account(self, request: Request, failures: list[ObjectFailure]) -> None:
        users = list(request.objects)
        failed = {users[failure.index]: failure for failure in failures}
        tally = self.tally
        cohort_sets = self._changes.is_cohort_mapping
        for user in request.objects:
            sources = request.sources[user]
            if user in failed:
                for stream, record in sources:
                    self._dead_letter(stream, record, failed[user].reason, None,
                                      failed[user].message)
                continue
            tally.applied += len(sources)
            tally.users_updated += 1
            if cohort_sets:
                tally.cohort_sets += 1
            else:
                tally.attributes_set += len(request.objects[user]) - 2  # id, update-only

    # -- state ---------------------------------------------------------------------------

    def add_state(self, state: dict) -> None:
        """Hold a STATE until every record before it is accounted for (send what is open)."""
        self._submit()
        self._sends.add_state(state, open_batch=False)

    # -- reporting -----------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The closing summary (logged as one JSON line): every record is counted once."""
        tally, counters = self.tally, self.counters
        return {
            "received": self.received,
            "applied": tally.applied,
            "skipped": dict(tally.skipped),
            "dead_lettered": dict(tally.dead_lettered),
            "in_flight": self.received - tally.applied - sum(tally.skipped.values())
            - sum(tally.dead_lettered.values()),
            "users_updated": tally.users_updated,
            "cohort_sets": tally.cohort_sets,
            "attributes_set": tally.attributes_set,
            "dead_letter_file": self._dead_letters.written_path,
            **counters.as_summary(),
            "request_splits_400": counters.splits,
            "seconds": self.seconds(),
        }
