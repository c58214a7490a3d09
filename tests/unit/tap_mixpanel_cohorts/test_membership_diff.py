"""membership_changes: the removes and adds that turn one snapshot's members into another's.

Snapshots in a real local folder, written in several parts as the tap writes them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from tap_mixpanel_cohorts.membership_diff import (
    CohortSide,
    contains,
    membership_changes,
    sorted_unique_hashes,
)
from tap_mixpanel_cohorts.snapshots import MEMBER_SCHEMA, SnapshotStore

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(str(tmp_path / "snapshots"))


def snapshot(store: SnapshotStore, *parts: list[str]) -> str:
    name = SnapshotStore.new_name(1, NOW)
    for number, ids in enumerate(parts):
        store.write_part(name, number, pl.DataFrame(
            {"user_id": ids, "distinct_id": [None] * len(ids)}, schema=MEMBER_SCHEMA))
    return name


def changes(store: SnapshotStore, before: CohortSide | None,
            now: CohortSide | None) -> list[tuple[str, str, list[str]]]:
    """(action, cohort name, user ids) in order; a part's batches merged, no id twice."""
    merged: list[tuple[str, str, list[str]]] = []
    for change in membership_changes(store, before, now):
        if not merged or merged[-1][:2] != (change.action, change.cohort_name):
            merged.append((change.action, change.cohort_name, []))
        merged[-1][2].extend(change.user_ids.to_list())
    for _, _, ids in merged:
        assert len(ids) == len(set(ids)), f"an id emitted twice: {ids}"
    return [(action, name, sorted(ids)) for action, name, ids in merged]


def test_who_left_is_removed_then_who_joined_is_added(store: SnapshotStore) -> None:
    before = snapshot(store, ["a", "b"], ["c", "d"])
    now = snapshot(store, ["b", "e"], ["d", "f", "a"])
    found = changes(store, CohortSide(before, "Buyers"), CohortSide(now, "Buyers"))
    assert found == [("remove", "Buyers", ["c"]), ("add", "Buyers", ["e", "f"])]


def test_the_same_members_in_other_parts_change_nothing(store: SnapshotStore) -> None:
    before = snapshot(store, ["a", "b", "c"])
    now = snapshot(store, ["c"], ["b"], ["a"])
    assert changes(store, CohortSide(before, "X"), CohortSide(now, "X")) == []


def test_no_snapshot_before_makes_every_member_an_add_once(store: SnapshotStore) -> None:
    now = snapshot(store, ["a", "b"], ["b", "c"])   # "b" listed twice, in two parts
    found = changes(store, None, CohortSide(now, "X"))
    assert found == [("add", "X", ["a", "b", "c"])]


def test_a_cohort_gone_removes_every_member(store: SnapshotStore) -> None:
    before = snapshot(store, ["a"], ["b"])
    assert changes(store, CohortSide(before, "X"), None) == [("remove", "X", ["a", "b"])]


def test_a_renamed_cohort_moves_every_member_to_the_new_name(store: SnapshotStore) -> None:
    before = snapshot(store, ["a", "b"])
    now = snapshot(store, ["b", "c"])
    found = changes(store, CohortSide(before, "Old"), CohortSide(now, "New"))
    assert found == [("remove", "Old", ["a", "b"]), ("add", "New", ["b", "c"])]


def test_contains_finds_exactly_the_hashes_present(store: SnapshotStore) -> None:
    sorted_hashes = sorted_unique_hashes(store, snapshot(store, ["a", "c"], ["e", "a"]))
    assert len(sorted_hashes) == 3
    probe = sorted_unique_hashes(store, snapshot(store, ["a", "b", "c", "d", "e", "z"]))
    present = dict(zip(probe.to_list(), contains(sorted_hashes, probe).to_list(), strict=True))
    assert sorted(present.values()) == [False, False, False, True, True, True]
    assert set(contains(pl.Series("hash", [], pl.UInt64), probe).to_list()) == {False}
