"""Each user's whole set of synced cohorts, for the users whose set changed (or every user).

What target-braze writes: the complete set, never an add or a remove, so that replaying any
run's records leaves Braze right and a value Braze dropped is written again by the next full
resync. The users whose set changed are those of any cohort's adds and removes against the
snapshot Braze has (membership_diff: 8 bytes a member); their sets are then gathered from
this run's snapshots, keeping only their rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import polars as pl

from tap_mixpanel_cohorts.membership_diff import CohortSide, membership_changes
from tap_mixpanel_cohorts.snapshots import SnapshotStore

EMPTY_IDS = pl.Series("user_id", [], pl.String)
BUCKET_ROWS = 200_000  # membership rows gathered at once on a full resync


@dataclass(frozen=True)
class SyncedCohort:
    """A cohort as this run syncs it: its id, the name it is synced under, its snapshot."""

    cohort_id: int
    name: str
    snapshot: str
    members: int = 0   # rows of its snapshot (sizes a full resync's buckets)


def changed_users(store: SnapshotStore,
                  sides: list[tuple[CohortSide | None, CohortSide | None]],
                  removes_only: bool = False) -> pl.Series:
    """Every user added to or removed from any cohort (a rename: all of its members).

    `removes_only`: only those removed (a full resync hands out every member anyway).
    """
    found = []
    for before, now in sides:
        if removes_only and before is None:
            continue
        for batch in membership_changes(store, before, now):
            if removes_only and batch.action != "remove":
                break  # the adds come after the removes and are not computed
            found.append(batch.user_ids)
    return pl.concat(found).unique().sort() if found else EMPTY_IDS


def _gather(store: SnapshotStore, cohorts: list[SyncedCohort],
            keep: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
    """(user_id, cohort: the cohort's index) of the members `keep` keeps, each pair once."""
    frames = []
    for index, cohort in enumerate(cohorts):
        for part in store.parts(cohort.snapshot):
            ids = keep(part.select("user_id"))
            if len(ids):
                frames.append(ids.with_columns(cohort=pl.lit(index, pl.UInt32)))
    if not frames:
        return pl.DataFrame(schema={"user_id": pl.String, "cohort": pl.UInt32})
    return pl.concat(frames).unique()


def _rows(cohorts: list[SyncedCohort], members: pl.DataFrame,
          users: pl.Series) -> Iterator[tuple[str, list[int], list[str]]]:
    grouped = members.group_by("user_id").agg(pl.col("cohort").sort())
    result = users.to_frame("user_id").join(grouped, on="user_id", how="left").sort("user_id")
    del grouped
    ids = [c.cohort_id for c in cohorts]
    names = [c.name for c in cohorts]
    for user_id, indexes in result.iter_rows():
        yield user_id, [ids[i] for i in indexes or ()], [names[i] for i in indexes or ()]


def user_sets(store: SnapshotStore, cohorts: list[SyncedCohort], changed: pl.Series,
              everyone: bool) -> Iterator[tuple[str, list[int], list[str]]]:
    """(user_id, cohort ids, cohort names) of the users whose whole set is handed out.

    Each user in `changed`, and every member of the cohorts when `everyone` (a full resync);
    names are sorted; a user in none has empty lists. A full resync gathers the members in
    buckets of user ids (by hash) of about BUCKET_ROWS rows, so its memory does not grow with
    the cohorts; users come sorted within a bucket.
    """
    cohorts = sorted(cohorts, key=lambda c: (c.name, c.cohort_id))
    if not everyone:
        wanted = changed.implode()
        yield from _rows(cohorts, _gather(store, cohorts,
                                          lambda ids: ids.filter(pl.col("user_id")
                                                                 .is_in(wanted))), changed)
        return
    buckets = max(1, -(-sum(c.members for c in cohorts) // BUCKET_ROWS))

    for bucket in range(buckets):
        def in_bucket(ids: pl.DataFrame, bucket: int = bucket) -> pl.DataFrame:
            return ids if buckets == 1 else \
                ids.filter(pl.col("user_id").hash(seed=1) % buckets == bucket)

        members = _gather(store, cohorts, in_bucket)
        removed = in_bucket(changed.to_frame("user_id"))["user_id"]
        users = pl.concat([members["user_id"], removed]).unique()
        yield from _rows(cohorts, members, users)
