"""The three streams: cohorts, their full membership, and the membership changes to apply.

`cohort_membership_changes` is what target-braze applies. Its state names, per cohort, the
snapshot the emitted changes lead to; a cohort's entry changes only after all its changes
were written, so any STATE the target passes on names what the destination has.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from singer_sdk import Stream
from singer_sdk import typing as th

try:
    from singer_sdk.helpers.conform import TypeConformanceLevel
except ImportError:  # singer-sdk before it moved
    from singer_sdk.helpers._typing import TypeConformanceLevel

from tap_mixpanel_cohorts.membership_diff import CohortSide, membership_changes, unique_parts

if TYPE_CHECKING:
    from tap_mixpanel_cohorts.cohort_sync import CohortSync
    from tap_mixpanel_cohorts.tap import TapMixpanelCohorts

class CohortStream(Stream):
    """A stream of this tap: simple records, already of their schema's types."""

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, tap: TapMixpanelCohorts):
        """A stream of `tap`."""
        super().__init__(tap)
        self._cohort_tap = tap

    @property
    def sync_run(self) -> CohortSync:
        """The run's cohorts and memberships."""
        return self._cohort_tap.sync_run


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
            fixed = {"cohort_id": int(cohort["id"]), "cohort_name": cohort["name"]}
            for part in unique_parts(sync_run.store, sync_run.snapshot_of(cohort)):
                for user_id, distinct_id, _ in part.iter_rows():
                    yield {**fixed, "user_id": user_id, "distinct_id": distinct_id or user_id}


class CohortMembershipChangesStream(CohortStream):
    """Adds and removes since the last run whose records were delivered."""

    name = "cohort_membership_changes"
    primary_keys = ("cohort_id", "user_id", "action")
    schema = th.PropertiesList(
        th.Property("cohort_id", th.IntegerType, required=True),
        th.Property("cohort_name", th.StringType, required=True),
        th.Property("user_id", th.StringType, required=True),
        th.Property("action", th.StringType, required=True, allowed_values=["add", "remove"]),
        th.Property("synced_at", th.DateTimeType, required=True),
    ).to_dict()

    @property
    def delivered(self) -> dict[str, dict[str, Any]]:
        """Cohort id -> {name, snapshot, synced_at} of the last delivered run."""
        cohorts: dict[str, dict[str, Any]] = self.stream_state.setdefault("cohorts", {})
        return cohorts

    def named_snapshots(self) -> set[str]:
        """The snapshots this stream's state names."""
        return {entry["snapshot"] for entry in self.delivered.values() if entry.get("snapshot")}

    def _commit(self, cohort_id: str, entry: dict[str, Any] | None) -> None:
        """After a cohort's changes were all written: its state entry, and a STATE message."""
        if entry is None:
            self.delivered.pop(cohort_id, None)
        else:
            self.delivered[cohort_id] = entry
        self.state_manager.is_flushed = False
        self._write_state_message()

    def get_records(self, context: Any) -> Iterable[dict[str, Any]]:
        """Each cohort's changes against its delivered snapshot, then the cohorts gone."""
        sync_run = self.sync_run
        current = {str(c["id"]): c for c in sync_run.cohorts}
        for cohort_id, cohort in current.items():
            entry = self.delivered.get(cohort_id)
            before = CohortSide(entry["snapshot"], entry["name"]) if entry else None
            now = CohortSide(sync_run.snapshot_of(cohort), cohort["name"])
            yield from self._records(int(cohort_id), before, now)
            self._commit(cohort_id, {"name": cohort["name"], "snapshot": now.snapshot,
                                     "synced_at": sync_run.synced_at})
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
