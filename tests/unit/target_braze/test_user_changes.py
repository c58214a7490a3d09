"""UserChanges: what a record changes on a Braze user, by mapping and attribute mode.

Settings come from the target itself (its defaults filled in), as a user's config gives them."""

from __future__ import annotations

from typing import Any

import pytest

from target_braze.target import TargetBraze
from target_braze.user_changes import (
    UPDATE_EXISTING_ONLY,
    Change,
    Refused,
    Skipped,
    UserChanges,
)


def user_changes(**config: Any) -> UserChanges:
    target = TargetBraze(config={"rest_endpoint": "https://rest.iad-01.braze.com",
                                 "api_key": "k", **config})
    return UserChanges(target.settings)


def cohort_record(user: Any = "u1", names: Any = ("A", "B"), synced: Any = ("A", "B", "C"),
                  **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "cohort_names": list(names) if isinstance(names, tuple) else names,
            "synced_cohort_names": list(synced), **extra}


def test_the_cohort_attribute_is_set_to_the_users_whole_set() -> None:
    changes = user_changes(cohort_attribute="mixpanel_cohorts")
    change = changes.change("user_cohorts", cohort_record(names=("A", "B", "A")))
    assert change == Change("u1", {"mixpanel_cohorts": ["A", "B"]}, bulk=False)
    assert changes.is_cohort_mapping


def test_an_empty_set_removes_the_attribute_and_a_full_resync_is_bulk() -> None:
    change = user_changes(cohort_attribute="c").change(
        "user_cohorts", cohort_record(names=(), full_resync=True))
    assert change == Change("u1", {"c": None}, bulk=True)


def test_boolean_mode_sets_every_synced_cohorts_boolean() -> None:
    change = user_changes(cohort_attribute="in", attribute_mode="boolean").change(
        "user_cohorts", cohort_record(names=("Big Spenders",), synced=("Big Spenders", "Churn")))
    assert change.set == {"in_big_spenders": True, "in_churn": False}


def test_two_cohorts_giving_one_boolean_attribute_are_refused_naming_both() -> None:
    changes = user_changes(cohort_attribute="in", attribute_mode="boolean")
    with pytest.raises(Refused, match="'Big Spenders' and 'big-spenders'") as refused:
        changes.change("user_cohorts", cohort_record(names=("Big Spenders",),
                                                     synced=("Big Spenders", "big-spenders")))
    assert refused.value.field == "cohort_names"


def test_a_set_over_array_limit_is_refused_never_sent_to_be_truncated() -> None:
    changes = user_changes(array_limit=2)
    with pytest.raises(Refused, match=r"in 3 synced cohorts, more than array_limit \(2\)") as r:
        changes.change("user_cohorts", cohort_record(names=("A", "B", "C")))
    assert r.value.field == "array_limit"
    assert changes.change("user_cohorts", cohort_record(names=("A", "B"))).set


def test_another_stream_is_skipped_with_its_name() -> None:
    with pytest.raises(Skipped, match="stream cohorts"):
        user_changes().change("cohorts", cohort_record())


@pytest.mark.parametrize(("record", "field"), [
    (cohort_record(user=None), "user_id"),
    (cohort_record(user=True), "user_id"),
    (cohort_record(user="  "), "user_id"),
    (cohort_record(names="A"), "cohort_names"),
    (cohort_record(names=["A", ""]), "cohort_names"),
    (cohort_record(names=["A", 3]), "cohort_names"),
])
def test_a_record_without_a_user_or_a_list_of_names_is_refused_naming_the_field(
        record: dict[str, Any], field: str) -> None:
    with pytest.raises(Refused) as refused:
        user_changes().change("user_cohorts", record)
    assert refused.value.field == field
    assert field in refused.value.message


def test_an_integer_user_id_names_the_user_as_a_string() -> None:
    assert user_changes().change("user_cohorts", cohort_record(user=42)).user == "42"


def test_attributes_mapping_sets_every_field_but_the_id_and_singer_metadata() -> None:
    changes = user_changes(mapping="attributes", external_id_field="id")
    record = {"id": "u9", "plan": "pro", "seats": 3, "_sdc_extracted_at": "x"}
    assert changes.change("any_stream", record) == Change("u9", {"plan": "pro", "seats": 3})
    assert not changes.is_cohort_mapping
    with pytest.raises(Skipped, match="no attributes"):
        changes.change("any_stream", {"id": "u9", "_sdc_batched_at": "x"})
    for bad in ("$email", UPDATE_EXISTING_ONLY):
        with pytest.raises(Refused) as refused:
            changes.change("any_stream", {"id": "u9", bad: 1})
        assert refused.value.field == bad


def test_new_objects_name_the_user_by_the_identifier_and_never_create_one() -> None:
    assert user_changes().new_object("u1") == {"external_id": "u1", UPDATE_EXISTING_ONLY: True}
    by_alias = user_changes(braze_identifier="user_alias", user_alias_label="crm")
    assert by_alias.new_object("u1") == {
        "user_alias": {"alias_name": "u1", "alias_label": "crm"}, UPDATE_EXISTING_ONLY: True}


def test_folded_changes_keep_the_latest_value_of_each_attribute() -> None:
    target: dict[str, Any] = {"external_id": "u1"}
    UserChanges.fold(target, Change("u1", {"a": 1, "b": 1}))
    UserChanges.fold(target, Change("u1", {"a": None}))
    assert target == {"external_id": "u1", "a": None, "b": 1}
