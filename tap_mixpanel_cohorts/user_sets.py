"""Each user's whole set of synced cohorts, for the users whose set changed (or every user).

What target-braze writes: the complete set, never an add or a remove, so that replaying any
run's records leaves Braze right and a value Braze dropped is written again by the next full
resync. The users whose set changed are those of any cohort's adds and removes against the
snapshot Braze has (membership_diff: 8 bytes a member); their sets are then gathered from
this run's snapshots, keeping only their rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from tap_mixpanel_cohorts.membership_diff import CohortSide, membership_changes
from tap_mixpanel_cohorts.snapshots import SnapshotStore

EMPTY_IDS = pl.Series("user_id", [], pl.String)
ROWS_PER_CHUNK = 50_000  # users handed out at a time


@dataclass(frozen=True)
class SyncedCohort:
    """A cohort as this run syncs it: its id, the name it is synced under, its snapshot."""

    cohort_id: int
    name: str
    snapshot: str


def changed_users(store: SnapshotStore,
                  sides: list[tuple[CohortSide | None, CohortSide | None]]) -> pl.Series:
    """Every user added to or removed from any cohort (a rename: all of its members)."""
    found = [batch.user_ids for before, now in sides
             for batch in membership_changes(store, before, now)]
    return pl.concat(found).unique().sort() if found else EMPTY_IDS


def _members(store: SnapshotStore, cohorts: list[SyncedCohort],
             only: pl.Series | None) -> pl.DataFrame:
    frames = []
    for cohort in cohorts:
        for part in store.parts(cohort.snapshot):
            ids = part.select("user_id")
            if only is not None:
                ids = ids.filter(pl.col("user_id").is_in(only))
            frames.append(ids.with_columns(cohort_id=pl.lit(cohort.cohort_id, pl.Int64),
                                           cohort_name=pl.lit(cohort.name, pl.String)))
    if not frames:
        return pl.DataFrame(schema={"user_id": pl.String, "cohort_id": pl.Int64,
                                    "cohort_name": pl.String})
    return pl.concat(frames).unique(["user_id", "cohort_id"])


def user_sets(store: SnapshotStore, cohorts: list[SyncedCohort], changed: pl.Series,
              everyone: bool) -> Iterator[pl.DataFrame]:
    """Frames of (user_id, cohort_ids, cohort_names), sorted by user id.

    The users in `changed` (and, when `everyone`, every member of the cohorts), each with its
    whole set. A user in no cohort any more has empty lists.
    """
    members = _members(store, cohorts, None if everyone else changed)
    sets = (members.sort("cohort_name", "cohort_id")
            .group_by("user_id", maintain_order=True)
            .agg(pl.col("cohort_id").alias("cohort_ids"),
                 pl.col("cohort_name").alias("cohort_names")))
    users = pl.concat([changed, sets["user_id"]]).unique() if everyone else changed
    result = (users.to_frame("user_id").join(sets, on="user_id", how="left")
              .with_columns(pl.col("cohort_ids").fill_null(pl.lit([], pl.List(pl.Int64))),
                            pl.col("cohort_names").fill_null(pl.lit([], pl.List(pl.String))))
              .sort("user_id"))
    del members, sets
    for offset in range(0, len(result), ROWS_PER_CHUNK):
        yield result.slice(offset, ROWS_PER_CHUNK)
