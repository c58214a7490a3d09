"""SnapshotStore: parts written and read back in order, a gone snapshot named, old ones cleaned.

Against a real local folder and fsspec's memory filesystem."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import polars as pl
import pytest

from tap_mixpanel_cohorts.snapshots import MEMBER_SCHEMA, SnapshotError, SnapshotStore

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


def members(*ids: str) -> pl.DataFrame:
    return pl.DataFrame({"user_id": list(ids), "distinct_id": [None] * len(ids)},
                        schema=MEMBER_SCHEMA)


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SnapshotStore:
    if request.param == "local":
        return SnapshotStore(str(tmp_path / "snapshots"))
    return SnapshotStore(f"memory://snapshots-{uuid.uuid4().hex}")


def test_parts_come_back_in_the_order_written(store: SnapshotStore) -> None:
    name = SnapshotStore.new_name(7, NOW)
    for number in range(12):            # part-00010 sorts after part-00009
        store.write_part(name, number, members(f"u{number}a", f"u{number}b"))
    ids = [i for part in store.parts(name) for i in part["user_id"].to_list()]
    assert ids == [f"u{n}{x}" for n in range(12) for x in "ab"]


def test_a_new_name_is_unique_and_carries_the_cohort_and_time() -> None:
    first, second = SnapshotStore.new_name(7, NOW), SnapshotStore.new_name(7, NOW)
    assert first != second
    assert first.startswith("cohort-7/20260301T120000Z-")


def test_a_snapshot_the_state_names_that_is_gone_says_how_to_recover(
        store: SnapshotStore) -> None:
    with pytest.raises(SnapshotError, match=r"cohort-7/x, which is gone.*meltano state clear"):
        list(store.parts("cohort-7/x"))


def test_a_removed_snapshot_is_gone_and_removing_it_again_is_no_error(
        store: SnapshotStore) -> None:
    name = SnapshotStore.new_name(7, NOW)
    store.write_part(name, 0, members("u1"))
    store.remove(name)
    store.remove(name)
    with pytest.raises(SnapshotError, match="gone"):
        list(store.parts(name))


def test_json_beside_the_snapshots_round_trips_and_is_none_when_absent(
        store: SnapshotStore) -> None:
    assert store.read_json("budget.json") is None
    store.write_json("budget.json", {"recent": [1.5]})
    store.write_json("budget.json", {"recent": [2.5]})
    assert store.read_json("budget.json") == {"recent": [2.5]}


def test_only_unnamed_snapshots_older_than_the_grace_period_are_deleted(
        store: SnapshotStore) -> None:
    old_kept = SnapshotStore.new_name(1, NOW - dt.timedelta(days=10))
    old_unnamed = SnapshotStore.new_name(1, NOW - dt.timedelta(days=10))
    young_unnamed = SnapshotStore.new_name(2, NOW - dt.timedelta(hours=1))
    for name in (old_kept, old_unnamed, young_unnamed):
        store.write_part(name, 0, members("u1"))
    store.write_json("cohort-3.json", {"not": "a snapshot"})
    deleted = store.delete_unnamed({old_kept}, dt.timedelta(days=1), NOW)
    assert deleted == 1
    assert store.fs.exists(f"{store.root}/cohort-3.json")
    for name, exists in ((old_kept, True), (old_unnamed, False), (young_unnamed, True)):
        assert store.fs.exists(f"{store.root}/{name}") is exists, name


def test_check_names_the_setting_when_the_folder_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = SnapshotStore(str(blocker / "snapshots"))
    with pytest.raises(SnapshotError, match=r"snapshot_url .* cannot be written.*snapshot_options"):
        store.check()


def test_the_url_as_messages_show_it_has_no_password() -> None:
    store = SnapshotStore("memory://user:PW-Z9q@host/x")
    assert "PW-Z9q" not in store.url
    assert "host/x" in store.url
