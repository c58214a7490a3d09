"""The four streams: cohorts, members, each user's whole set of cohorts, changes.

`user_cohorts` is what target-braze applies: whole sets, so a replay changes nothing. Its
state names, per cohort, the snapshot the emitted sets lead to, and when the last full resync
was; it changes only after every set was written, so any STATE the target passes on names
what Braze has. `cohort_membership_changes` (adds and removes) serves warehouse targets; its
state moves cohort by cohort.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream
from singer_sdk import typing as th

try:
    from singer_sdk.helpers.conform import TypeConformanceLevel
except ImportError:  # singer-sdk before it moved
    from singer_sdk.helpers._typing import TypeConformanceLevel

from tap_mixpanel_cohorts.membership_diff import CohortSide, membership_changes, unique_parts
from tap_mixpanel_cohorts.user_sets import SyncedCohort, changed_users, user_sets

if TYPE_CHECKING:
    from singer_sdk import Tap

    from tap_mixpanel_cohorts.cohort_sync import CohortSync

class CohortStream(Stream):
    """A stream of this tap: simple records, already of their schema's types."""

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: Tap, sync_run: Callable[[], CohortSync]):
        """A stream of `tap`, reading the run `sync_run()` gives (made on first use)."""
        super().__init__(tap)
        self._sync_run = sync_run

    @property
    def sync_run(self) -> CohortSync:
        """The run's cohorts and memberships."""
        return self._sync_run()


class CohortsStream(CohortStream):
    """The selected cohorts of the project."""

    name = "cohorts"
    primary_keys = ("id",)
    schema = th.PropertiesList(
        th.Property("id", th.IntegerType, required=True),
        th.Property("name", th.StringType),
        th.Property("description", th.StringType),
        th.Property("count", th.IntegerType),
        th.Property("created", th.StringType),
        th.Property("is_visible", th.BooleanType),
        th.Property("project_id", th.IntegerType),
    ).to_dict()

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        """One record per selected cohort."""
        for cohort in self.sync_run.cohorts:
            record = {key: cohort.get(key) for key in self.schema["properties"]}
            if record["is_visible"] is not None:  # Mixpanel answers 0 or 1
                record["is_visible"] = bool(record["is_visible"])
            yield record


class CohortMembersStream(CohortStream):
    """Every member of every selected cohort (for warehouses)."""

    name = "cohort_members"
    primary_keys = ("cohort_id", "user_id")
    schema = th.PropertiesList(
        th.Property("cohort_id", th.IntegerType, required=True),
        th.Property("cohort_name", th.StringType),
        th.Property("user_id", th.StringType, required=True),
        th.Property("distinct_id", th.StringType),
    ).to_dict()

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        """The members of each cohort, as this run read them (each once)."""
        sync_run = self.sync_run
        for cohort in sync_run.cohorts:
            fixed = {"cohort_id": int(cohort["id"]), "cohort_name": sync_run.name_of(cohort)}
            for part in unique_parts(sync_run.store, sync_run.snapshot_of(cohort)):
                for user_id, distinct_id, _ in part.iter_rows():
                    yield {**fixed, "user_id": user_id, "distinct_id": distinct_id or user_id}


class DeliveredCohortsStream(CohortStream):
    """A stream whose state names, per cohort, the snapshot its delivered records lead to."""

    @property
    def delivered(self) -> dict[str, dict[str, Any]]:
        """Cohort id -> {name, snapshot, synced_at} of the last delivered run."""
        cohorts: dict[str, dict[str, Any]] = self.stream_state.setdefault("cohorts", {})
        return cohorts

    def named_snapshots(self) -> set[str]:
        """The snapshots this stream's state names."""
        return {entry["snapshot"] for entry in self.delivered.values()
                if isinstance(entry, dict) and isinstance(entry.get("snapshot"), str)}

    def _write_state_now(self) -> None:
        self.state_manager.is_flushed = False
        self._write_state_message()


class UserCohortsStream(DeliveredCohortsStream):
    """Each user's whole set of synced cohorts (what target-braze writes).

    For every user whose set changed since the state Braze has, and for every member on a
    full resync.
    """

    name = "user_cohorts"
    primary_keys = ("user_id",)
    schema = th.PropertiesList(
        th.Property("user_id", th.StringType, required=True),
        th.Property("cohort_ids", th.ArrayType(th.IntegerType), required=True),
        th.Property("cohort_names", th.ArrayType(th.StringType), required=True,
                    description="The names the user's cohorts are synced under (sorted)."),
        th.Property("synced_cohort_names", th.ArrayType(th.StringType), required=True,
                    description="Every cohort name this run syncs, and the names the "
                    "delivered state still holds (renamed or gone cohorts): a user is in none "
                    "of these but cohort_names."),
        th.Property("full_resync", th.BooleanType, required=True,
                    description="True on a first sync and a full resync (a bulk load)."),
        th.Property("synced_at", th.DateTimeType, required=True),
    ).to_dict()

    def full_resync_due(self) -> bool:
        """Whether every member's set is sent: a first sync, or full_resync_hours passed.

        Also when `full_resync_hours` is 0, and when the last full resync is later than now
        (a clock or a hand edit).
        """
        last = self.stream_state.get("full_resync_at")
        hours = self.sync_run.settings.full_resync_hours
        if not self.delivered or not isinstance(last, str) or hours == 0:
            return True
        ended = dt.datetime.fromisoformat(last.replace("Z", "+00:00"))
        age = self.sync_run.started_at - ended   # a time in the future resyncs now too
        return not dt.timedelta(0) <= age < dt.timedelta(hours=hours)

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        """The sets of the users whose set changed (everyone's on a full resync), then STATE.

        The state names this run's snapshots (and the full resync, if this was one).
        """
        sync_run = self.sync_run
        full = self.full_resync_due()
        sides: list[tuple[CohortSide | None, CohortSide | None]] = []
        synced: list[SyncedCohort] = []
        for cohort in sync_run.cohorts:
            entry = self.delivered.get(str(cohort["id"]))
            snapshot = sync_run.snapshot_of(cohort)
            now = SyncedCohort(int(cohort["id"]), sync_run.name_of(cohort), snapshot,
                               sync_run.members_of.get(int(cohort["id"]), 0))
            synced.append(now)
            sides.append((CohortSide(entry["snapshot"], entry["name"]) if entry else None,
                          CohortSide(now.snapshot, now.name)))
        current = {str(c.cohort_id) for c in synced}
        for cohort_id, entry in self.delivered.items():
            if cohort_id not in current:
                self.logger.info("Cohort %s (%r) is deleted in Mixpanel or no longer "
                                 "selected: its members' sets no longer hold it", cohort_id,
                                 entry["name"])
                sides.append((CohortSide(entry["snapshot"], entry["name"]), None))
        names = sorted({c.name for c in synced} | {e["name"] for e in self.delivered.values()})
        if full:
            self.logger.info("Full resync: every member's whole set is sent (full_resync_hours "
                             "%s)", sync_run.settings.full_resync_hours)
        summary = sync_run.summary
        summary.full_resync = full
        fixed = {"synced_cohort_names": names, "full_resync": full,
                 "synced_at": sync_run.synced_at}
        changed = changed_users(sync_run.store, sides, removes_only=full)
        for user_id, cohort_ids, cohort_names in user_sets(sync_run.store, synced, changed,
                                                           everyone=full):
            yield {"user_id": user_id, "cohort_ids": cohort_ids, "cohort_names": cohort_names,
                   **fixed}
            summary.user_sets += 1
        self.stream_state["cohorts"] = {
            str(c.cohort_id): {"name": c.name, "snapshot": c.snapshot,
                               "synced_at": sync_run.synced_at,
                               **sync_run.spool_entry(c.cohort_id)} for c in synced}
        if full:
            self.stream_state["full_resync_at"] = sync_run.synced_at
        self._write_state_now()


class CohortMembershipChangesStream(DeliveredCohortsStream):
    """Adds and removes since the last run whose records were delivered (for warehouses)."""

    name = "cohort_membership_changes"
    primary_keys = ("cohort_id", "user_id", "action")
    schema = th.PropertiesList(
        th.Property("cohort_id", th.IntegerType, required=True),
        th.Property("cohort_name", th.StringType, required=True),
        th.Property("user_id", th.StringType, required=True),
        th.Property("action", th.StringType, required=True, allowed_values=["add", "remove"]),
        th.Property("synced_at", th.DateTimeType, required=True),
    ).to_dict()

    def _commit(self, cohort_id: str, entry: dict[str, Any] | None) -> None:
        """After a cohort's changes were all written: its state entry, and a STATE message."""
        if entry is None:
            self.delivered.pop(cohort_id, None)
        else:
            self.delivered[cohort_id] = entry
        self._write_state_now()

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        """Each cohort's changes against its delivered snapshot, then the cohorts gone."""
        sync_run = self.sync_run
        current = {str(c["id"]): c for c in sync_run.cohorts}
        for cohort_id, cohort in current.items():
            entry = self.delivered.get(cohort_id)
            before = CohortSide(entry["snapshot"], entry["name"]) if entry else None
            now = CohortSide(sync_run.snapshot_of(cohort), sync_run.name_of(cohort))
            yield from self._records(int(cohort_id), before, now)
            self._commit(cohort_id, {"name": now.cohort_name, "snapshot": now.snapshot,
                                     "synced_at": sync_run.synced_at,
                                     **sync_run.spool_entry(int(cohort_id))})
        for cohort_id in [c for c in self.delivered if c not in current]:
            entry = self.delivered[cohort_id]
            self.logger.info("Cohort %s (%r) is deleted in Mixpanel or no longer selected: "
                             "removing its members", cohort_id, entry["name"])
            yield from self._records(int(cohort_id), CohortSide(entry["snapshot"], entry["name"]),
                                     None)
            self._commit(cohort_id, None)

    def _records(self, cohort_id: int, before: CohortSide | None,
                 now: CohortSide | None) -> Iterator[dict[str, Any]]:
        summary = self.sync_run.summary
        for batch in membership_changes(self.sync_run.store, before, now):
            fixed = {"cohort_id": cohort_id, "cohort_name": batch.cohort_name,
                     "action": batch.action, "synced_at": self.sync_run.synced_at}
            for user_id in batch.user_ids:
                yield {**fixed, "user_id": user_id}
            if batch.action == "add":
                summary.adds += len(batch.user_ids)
            else:
                summary.removes += len(batch.user_ids)
