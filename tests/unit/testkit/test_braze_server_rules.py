"""The test servers' vendor rules themselves (each as the vendor's page says)."""

from __future__ import annotations

from testkit.braze_server import BrazeState, apply_object


def test_braze_truncates_an_array_over_its_limit_oldest_first_and_answers_no_error() -> None:
    state = BrazeState(known_users={"u"}, array_limit=3)
    assert apply_object(state, {"external_id": "u", "c": ["a", "b", "c", "d"]}) is None
    assert state.profiles["u"]["c"] == ["b", "c", "d"]
    # a value added again moves to the end: it is the newest, and "c" is now the oldest
    assert apply_object(state, {"external_id": "u", "c": {"add": ["c", "e"]}}) is None
    assert state.profiles["u"]["c"] == ["d", "c", "e"]
    assert state.truncated["u"] == 2
    assert apply_object(state, {"external_id": "u", "c": {"add": ["f"]}}) is None
    assert state.profiles["u"]["c"] == ["c", "e", "f"]


def test_braze_names_a_user_by_alias_email_or_braze_id() -> None:
    state = BrazeState(known_users={"label:n", "x@example.com", "b-1"})
    for obj in ({"user_alias": {"alias_name": "n", "alias_label": "label"}},
                {"email": "x@example.com"}, {"braze_id": "b-1"}):
        assert apply_object(state, {**obj, "_update_existing_only": True, "v": 1}) is None
    assert set(state.profiles) == {"label:n", "x@example.com", "b-1"}
