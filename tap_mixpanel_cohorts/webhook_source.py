"""source webhook: the run's cohorts and memberships from mixpanel-cohort-receiver's spool.

No Query API call is made. A cohort is synced once its membership is known: the snapshot the
saved state names, or a complete `members` export in the spool. Each run settles the messages
not settled yet on top of the saved snapshot (`webhook_membership.settle`) and writes the
result as this run's snapshot, exactly as the Query API source does, so the same streams come
out. The state names, per cohort, the spool position beside the snapshot. A message is deleted
from the spool only once the saved state the run started from (delivered by the target, saved
by Meltano) covers it, and it arrived more than snapshot_grace_hours ago.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import msgspec
import polars as pl

from plugin_support.cohort_webhook_messages import WebhookMessage
from plugin_support.redaction import redact
from plugin_support.webhook_spool import SpooledMessage, WebhookSpool
from tap_mixpanel_cohorts.cohort_sync import CohortSettingError, CohortSync, Summary
from tap_mixpanel_cohorts.membership import PART_ROWS
from tap_mixpanel_cohorts.mixpanel_query_api import DISTINCT_ID
from tap_mixpanel_cohorts.settings import Settings
from tap_mixpanel_cohorts.snapshots import MEMBER_SCHEMA, location_secrets
from tap_mixpanel_cohorts.webhook_membership import Settlement, settle

logger = logging.getLogger(__name__)

_NAME_DECODER = msgspec.json.Decoder(WebhookMessage)


@dataclass
class SpoolPosition:
    """How far a cohort's messages are settled: all at or before `position`, and those named."""

    position: int = 0
    settled_above: tuple[str, ...] = ()

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> SpoolPosition:
        """The position a state entry names (none: nothing settled)."""
        return cls(int(entry.get("position") or 0), tuple(entry.get("settled_above") or ()))

    def covers(self, message: SpooledMessage) -> bool:
        """Whether `message` is settled in a membership at this position."""
        return (message.received_ns <= self.position
                or message.path.rsplit("/", 1)[-1] in self.settled_above)


class WebhookCohortSync(CohortSync):
    """The cohorts of one run, from the spool; memberships settled once each."""

    def __init__(self, settings: Settings, reads_members: bool,
                 saved_snapshots: set[str] | None = None,
                 saved_entries: Mapping[str, list[dict[str, Any]]] | None = None):
        """`saved_entries`: cohort id -> its entries in the saved state (user_cohorts first)."""
        super().__init__(settings, reads_members, saved_snapshots)
        if settings.id_property != DISTINCT_ID:
            msg = (f"id_property {settings.id_property!r}: source webhook has only "
                   f"Mixpanel's distinct id of each member; use id_property {DISTINCT_ID}")
            raise CohortSettingError(msg)
        self.saved_entries = copy.deepcopy(dict(saved_entries or {}))
        self.settlements: dict[int, Settlement] = {}
        self.spooled: dict[int, list[SpooledMessage]] = {}
        try:
            self.spool = WebhookSpool(str(settings.spool_url), dict(settings.spool_options))
        except Exception as exc:
            msg = (f"spool_url cannot be opened with spool_options ({type(exc).__name__}: "
                   f"{exc})")
            raise CohortSettingError(self._clean(msg)) from None

    def _clean(self, text: str) -> str:
        return redact(text, location_secrets(str(self.settings.spool_url),
                                             self.settings.spool_options))

    @cached_property
    def cohorts(self) -> list[dict[str, Any]]:
        """The cohorts with a known membership: in the spool or the saved state, selected."""
        try:
            in_spool = {int(c) for c in self.spool.cohorts() if c.isdigit()}
        except Exception as exc:
            msg = f"spool_url cannot be read ({type(exc).__name__}: {exc}). Check spool_url."
            raise CohortSettingError(self._clean(msg)) from None
        ids = in_spool | {int(c) for c in self.saved_entries}
        wanted = self.settings.cohort_ids
        if wanted:
            waiting = [i for i in wanted if i not in ids]
            if waiting:
                logger.warning("cohort_ids lists %s: no message of it in spool_url yet (is the "
                               "cohort synced to the webhook in Mixpanel?)",
                               ", ".join(map(str, waiting)))
            ids &= set(wanted)
        selected = []
        for cohort_id in sorted(ids):
            cohort = self._settle(cohort_id)
            if cohort is not None:
                selected.append(cohort)
        self.summary.cohorts = len(selected)
        self._name_cohorts(selected)
        logger.info("Plan: %d cohorts from the spool (source webhook, no Query API call)",
                    len(selected))
        return selected

    def _settle(self, cohort_id: int) -> dict[str, Any] | None:
        entries = self.saved_entries.get(str(cohort_id), [])
        base = entries[0] if entries else None
        previous = None
        if base is not None:
            previous = pl.concat([part["user_id"] for part in self.store.parts(base["snapshot"])]
                                 or [pl.Series("user_id", [], pl.String)])
        messages = list(self.spool.messages(str(cohort_id)))
        name = _latest_name(messages) or (base["name"] if base else f"Cohort {cohort_id}")
        position = SpoolPosition.of(base or {})
        settlement = settle(previous, messages, position.position, position.settled_above)
        logger.info("Cohort %s: %d messages in the spool, %d of them after the saved position "
                    "%s; saved snapshot %s", cohort_id, len(messages),
                    sum(place.received_ns > position.position for place, _ in messages),
                    position.position, base["snapshot"] if base else None)
        self.spooled[cohort_id] = [place for place, _ in messages]
        if settlement.waiting_session:
            logger.info("Cohort %s (%r): export %s is still arriving; it is applied once "
                        "every page is in", cohort_id, name, settlement.waiting_session)
        if settlement.members is None:
            logger.info("Cohort %s (%r): no complete members export in the spool yet; "
                        "nothing is synced for it", cohort_id, name)
            return None
        self.settlements[cohort_id] = settlement
        logger.info("Cohort %s (%r): %d messages settled (%d exports applied, %d abandoned), "
                    "%d members", cohort_id, name, len(settlement.settled),
                    settlement.applied_sessions, settlement.abandoned_sessions,
                    len(settlement.members))
        return {"id": cohort_id, "name": name, "count": len(settlement.members)}

    def snapshot_of(self, cohort: dict[str, Any]) -> str:
        """The run's snapshot of a cohort: the saved one if nothing changed, else a new one."""
        cohort_id = int(cohort["id"])
        if cohort_id in self.written:
            return self.written[cohort_id]
        settlement = self.settlements[cohort_id]
        assert settlement.members is not None
        entries = self.saved_entries.get(str(cohort_id))
        if entries and settlement.applied_sessions == 0:
            name = str(entries[0]["snapshot"])    # unchanged: the snapshot Braze has
        else:
            self.check_store()
            name = self.store.new_name(cohort_id, self.started_at)
            members = settlement.members
            for number, start in enumerate(range(0, max(len(members), 1), PART_ROWS)):
                chunk = members.slice(start, PART_ROWS)
                self.store.write_part(name, number, pl.DataFrame(
                    {"user_id": chunk, "distinct_id": pl.Series([None] * len(chunk),
                                                                dtype=pl.String)},
                    schema=MEMBER_SCHEMA))
        self.summary.members += len(settlement.members)
        self.members_of[cohort_id] = len(settlement.members)
        self.written[cohort_id] = name
        return name

    def spool_entry(self, cohort_id: int) -> dict[str, Any]:
        """The spool position a state entry of this cohort names."""
        settlement = self.settlements[cohort_id]
        return {"position": settlement.position,
                "settled_above": list(settlement.settled_above)}

    def finish(self, named_snapshots: set[str]) -> Summary:
        """Delete old snapshots, and the messages the saved state covers, past the grace."""
        keep = named_snapshots | self.saved_snapshots | set(self.written.values())
        now = time.time_ns()
        self.summary.snapshots_deleted = self.store.delete_unnamed(
            keep, self.settings.snapshot_grace, dt.datetime.now(dt.timezone.utc))
        oldest = now - int(self.settings.snapshot_grace.total_seconds() * 1e9)
        deleted = 0
        for cohort_id, messages in self.spooled.items():
            saved = [SpoolPosition.of(e) for e in self.saved_entries.get(str(cohort_id), [])]
            covered = [m for m in messages if saved and m.received_ns <= oldest
                       and all(p.covers(m) for p in saved)]
            try:
                self.spool.delete(covered)
                deleted += len(covered)
            except Exception as exc:
                logger.warning("Could not delete settled messages of cohort %s: %s", cohort_id,
                               self._clean(f"{type(exc).__name__}: {exc}"))
        self.summary.spool_messages_deleted = deleted
        return self.summary


def _latest_name(messages: list[tuple[SpooledMessage, bytes]]) -> str | None:
    """The cohort's name as the newest message gives it."""
    for _, body in reversed(messages):
        try:
            name = _NAME_DECODER.decode(body).parameters.mixpanel_cohort_name
        except msgspec.MsgspecError:
            continue
        if name:
            return name
    return None
