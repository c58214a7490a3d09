"""Membership from the webhook spool: whole exports only, diffs in arrival order, positions."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from plugin_support.webhook_spool import WebhookSpool
from tap_mixpanel_cohorts.webhook_membership import settle


class Spool:
    """A real local spool, filled with Mixpanel-shaped messages of cohort 7."""

    def __init__(self, root: Path):
        self.spool = WebhookSpool(str(root))

    def post(self, action: str, users: list[str], session: str, page: int = 1,
             pages: int = 1) -> None:
        body = json.dumps({"action": action, "parameters": {
            "mixpanel_cohort_id": "7", "mixpanel_session_id": session,
            "page_info": {"total_pages": pages, "page_count": page},
            "members": [{"mixpanel_distinct_id": u} for u in users]}}).encode()
        self.spool.store("7", body)

    def messages(self) -> list:
        return list(self.spool.messages("7"))


def ids(series: pl.Series | None) -> set[str]:
    assert series is not None
    return set(series.to_list())


def test_a_full_export_replaces_the_membership_once_every_page_is_in(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.post("members", ["a", "b"], "s1", 1, 3)
    spool.post("members", ["c"], "s1", 3, 3)
    waiting = settle(pl.Series(["old"]), spool.messages(), 0)
    assert ids(waiting.members) == {"old"}
    assert (waiting.waiting_session, waiting.position, waiting.settled) == ("s1", 0, [])
    spool.post("members", ["d", 7], "s1", 2, 3)  # an integer distinct_id is read as text
    whole = settle(pl.Series(["old"]), spool.messages(), waiting.position)
    assert ids(whole.members) == {"a", "b", "c", "d", "7"}
    assert whole.waiting_session is None
    assert len(whole.settled) == 3
    assert whole.position == max(m.received_ns for m, _ in spool.messages())
    again = settle(whole.members, spool.messages(), whole.position)
    assert (again.applied_sessions, again.settled) == (0, [])


def test_diffs_apply_in_arrival_order(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.post("members", ["a", "b"], "full")
    spool.post("add_members", ["x"], "d1")
    spool.post("remove_members", ["a"], "d2")
    spool.post("remove_members", ["x"], "d3")
    spool.post("add_members", ["a"], "d4")
    result = settle(None, spool.messages(), 0)
    assert ids(result.members) == {"a", "b"}
    assert result.applied_sessions == 5


def test_an_export_cut_short_and_started_again_is_abandoned(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.post("members", ["a", "b"], "try-1", 1, 2)  # page 2 never came: a failure
    spool.post("members", ["a"], "try-2", 1, 2)
    spool.post("members", ["c"], "try-2", 2, 2)
    result = settle(None, spool.messages(), 0)
    assert ids(result.members) == {"a", "c"}
    assert (result.abandoned_sessions, result.applied_sessions) == (1, 1)
    assert len(result.settled) == 3  # the abandoned page can be deleted too


def test_a_diff_before_any_full_export_leaves_the_membership_unknown(tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.post("add_members", ["x"], "d1")
    assert settle(None, spool.messages(), 0).members is None


def test_pages_of_a_waiting_export_between_settled_ones_keep_the_position_below_them(
        tmp_path) -> None:
    spool = Spool(tmp_path)
    spool.post("members", ["a"], "A", 1, 2)
    spool.post("add_members", ["late"], "B", 1, 2)  # B's first page lands between A's pages
    spool.post("members", ["b"], "A", 2, 2)
    first = settle(None, spool.messages(), 0)
    assert ids(first.members) == {"a", "b"}
    assert first.waiting_session == "B"
    a1, b1, a2 = spool.messages()
    assert first.position == a1[0].received_ns < b1[0].received_ns
    assert first.settled_above == [a2[0].path.rsplit("/", 1)[-1]]
    spool.post("add_members", ["later"], "B", 2, 2)
    second = settle(first.members, spool.messages(), first.position, first.settled_above)
    assert ids(second.members) == {"a", "b", "late", "later"}
    assert second.applied_sessions == 1  # A's second page is not applied again
    assert second.settled_above == []
    assert second.position == max(m.received_ns for m, _ in spool.messages())
