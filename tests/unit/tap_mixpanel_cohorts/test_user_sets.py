"""Each user's whole set of cohorts: the same whether a full resync gathers it in one bucket
or in many, and for the changed users only."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tap_mixpanel_cohorts import user_sets
from tap_mixpanel_cohorts.snapshots import MEMBER_SCHEMA, SnapshotStore
from tap_mixpanel_cohorts.user_sets import SyncedCohort


def _store(tmp_path: Path) -> tuple[SnapshotStore, list[SyncedCohort]]:
    store = SnapshotStore(str(tmp_path))
    members = {1: [f"u{i}" for i in range(0, 60)], 2: [f"u{i}" for i in range(40, 90)],
               3: ["u5", "u5", "u88"]}
    cohorts = []
    for cohort_id, ids in members.items():
        name = f"cohort-{cohort_id}/20260101T000000Z-00000000000{cohort_id}"
        store.write_part(name, 0, pl.DataFrame({"user_id": ids, "distinct_id": [None] * len(ids)},
                                               schema=MEMBER_SCHEMA))
        cohorts.append(SyncedCohort(cohort_id, f"C{4 - cohort_id}", name, len(ids)))
    return store, cohorts


def _as_dict(rows: list[tuple[str, list[int], list[str]]]) -> dict[str, tuple]:
    assert len(rows) == len({r[0] for r in rows})            # each user once
    return {user: (tuple(ids), tuple(names)) for user, ids, names in rows}


def test_a_full_resync_in_buckets_gives_each_user_its_whole_set_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, cohorts = _store(tmp_path)
    gone = pl.Series("user_id", ["left-1"])
    whole = _as_dict(list(user_sets.user_sets(store, cohorts, gone, everyone=True)))
    monkeypatch.setattr(user_sets, "BUCKET_ROWS", 7)          # 163 rows: 24 buckets
    assert _as_dict(list(user_sets.user_sets(store, cohorts, gone, everyone=True))) == whole
    assert len(whole) == 91                                   # u0..u89 and left-1
    assert whole["u5"] == ((3, 1), ("C1", "C3"))              # names sorted, ids alike
    assert whole["u45"] == ((2, 1), ("C2", "C3"))
    assert whole["left-1"] == ((), ())


def test_changed_users_only(tmp_path: Path) -> None:
    store, cohorts = _store(tmp_path)
    changed = pl.Series("user_id", ["u1", "u88", "left-1"])
    assert _as_dict(list(user_sets.user_sets(store, cohorts, changed, everyone=False))) == {
        "u1": ((1,), ("C3",)), "u88": ((3, 2), ("C1", "C2")), "left-1": ((), ())}
