"""What changed in a cohort between the snapshot Braze has and the one read now.

Works part by part: only the 64-bit hashes of the user ids (8 bytes a member) are held for
the whole cohort, and lookups are binary searches in sorted hash arrays. Both sides are hashed
in the same run, so the hash function never has to be stable across versions. (Two different
ids colliding in 64 bits: about 1 in 10^7 for two 2,000,000-member snapshots.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl

from tap_mixpanel_cohorts.snapshots import SnapshotStore

EMPTY_HASHES = pl.Series("hash", [], pl.UInt64)


@dataclass(frozen=True)
class CohortSide:
    """One side of a diff: a snapshot and the cohort name its members carry in Braze."""

    snapshot: str
    cohort_name: str


@dataclass
class ChangeBatch:
    """User ids to add or remove under one cohort name."""

    action: str          # "add" or "remove"
    cohort_name: str
    user_ids: pl.Series


def _hashes(part: pl.DataFrame) -> pl.Series:
    return part["user_id"].hash(seed=0).alias("hash")


def sorted_unique_hashes(store: SnapshotStore, snapshot: str) -> pl.Series:
    """The hashes of every user id in a snapshot, unique and sorted."""
    chunks = [_hashes(part) for part in store.parts(snapshot)]
    return pl.concat(chunks).unique().sort() if chunks else EMPTY_HASHES


def unique_parts(store: SnapshotStore, snapshot: str) -> Iterator[pl.DataFrame]:
    """The snapshot's parts with a `hash` column, each user id in its first part only."""
    all_hashes = pl.concat([_hashes(part) for part in store.parts(snapshot)])
    first = all_hashes.is_first_distinct()
    offset = 0
    for part in store.parts(snapshot):
        keep = first.slice(offset, len(part))
        offset += len(part)
        yield part.with_columns(_hashes(part)).filter(keep)


def contains(sorted_hashes: pl.Series, hashes: pl.Series) -> pl.Series:
    """Whether each of `hashes` is in `sorted_hashes` (binary search, no hash table)."""
    if len(sorted_hashes) == 0:
        return pl.Series([False] * len(hashes), dtype=pl.Boolean)
    index = sorted_hashes.search_sorted(hashes, side="left").clip(0, len(sorted_hashes) - 1)
    return sorted_hashes.gather(index) == hashes


def _not_in(store: SnapshotStore, side: CohortSide, others: pl.Series,
            action: str) -> Iterator[ChangeBatch]:
    for part in unique_parts(store, side.snapshot):
        user_ids = part.filter(~contains(others, part["hash"]))["user_id"]
        if len(user_ids):
            yield ChangeBatch(action, side.cohort_name, user_ids)


def membership_changes(store: SnapshotStore, before: CohortSide | None,
                       now: CohortSide | None) -> Iterator[ChangeBatch]:
    """Removes, then adds, turning `before` into `now`.

    No snapshot before: every member is an add. A cohort that is gone (`now` None): every
    member before is a remove. A new name: every member before is removed under the old name
    and every member now added under the new one.
    """
    renamed = before is not None and now is not None and before.cohort_name != now.cohort_name
    compare = before is not None and now is not None and not renamed
    if before is not None:
        kept = sorted_unique_hashes(store, now.snapshot) if compare and now else EMPTY_HASHES
        yield from _not_in(store, before, kept, "remove")
    if now is not None:
        had = sorted_unique_hashes(store, before.snapshot) if compare and before \
            else EMPTY_HASHES
        yield from _not_in(store, now, had, "add")
