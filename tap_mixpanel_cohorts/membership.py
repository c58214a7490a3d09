"""Paging a cohort's members out of /engage into snapshot parts (no Python object per member).

Each page is decoded and its ids gathered; every 100,000 members become a part of the new
snapshot, written at once and dropped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import msgspec
import polars as pl

from tap_mixpanel_cohorts.mixpanel_query_api import (
    DISTINCT_ID,
    ENGAGE_PATH,
    MAX_SESSION_RESTARTS,
    is_session_refusal,
)
from tap_mixpanel_cohorts.query_client import QueryClient, QueryRefusedError
from tap_mixpanel_cohorts.snapshots import MEMBER_SCHEMA, SnapshotStore

logger = logging.getLogger(__name__)

PART_ROWS = 100_000  # members per snapshot part


class EngageProfile(msgspec.Struct):
    """One result of /engage.

    $distinct_id is a string, or an integer as in Mixpanel's OpenAPI example (read as text).
    """

    distinct_id: str | int | None = msgspec.field(default=None, name="$distinct_id")
    properties: dict[str, Any] = msgspec.field(default_factory=dict, name="$properties")


class EngagePage(msgspec.Struct):
    """One answer of /engage."""

    results: list[EngageProfile] = msgspec.field(default_factory=list)
    page_size: int = 1000
    session_id: str | None = None
    total: int | None = None


@dataclass
class Membership:
    """What paging a cohort gave: members stored (duplicates included), members without id."""

    stored: int
    without_id: int
    queries: int
    session_restarts: int = 0


class SessionExpiredError(Exception):
    """Engage refused the session_id of a later page more often than MAX_SESSION_RESTARTS."""


def engage_form(cohort_id: int, id_property: str) -> dict[str, str]:
    """The /engage parameters for one cohort, asking only for what the tap needs.

    `include_all_users: true` (Mixpanel's default): members without a profile too, which is
    every user known only from imported events (target-mixpanel creates no profile). With a
    profile property as id_property they have no id and are counted, not lost silently.
    """
    # $distinct_id comes with every result: no profile property is needed for it.
    wanted = [id_property] if id_property != DISTINCT_ID else [DISTINCT_ID]
    return {"filter_by_cohort": json.dumps({"id": cohort_id}),
            "output_properties": json.dumps(wanted),
            "include_all_users": "true"}


def _text(value: object) -> str | None:
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    text = str(value)
    return text if text.strip() else None


def _user_id(profile: EngageProfile, id_property: str) -> str | None:
    return _text(profile.distinct_id if id_property == DISTINCT_ID
                 else profile.properties.get(id_property))


def read_membership(client: QueryClient, cohort_id: int, id_property: str,
                    store: SnapshotStore, snapshot: str) -> Membership:
    """Every member of the cohort into snapshot `snapshot`, paging while pages are full.

    Engage refusing the session_id of a later page (it expired) pages the cohort again from
    the top, into a clean snapshot, at most MAX_SESSION_RESTARTS times.
    """
    queries = 0
    for restart in range(MAX_SESSION_RESTARTS + 1):
        try:
            found = _page_through(client, cohort_id, id_property, store, snapshot)
        except SessionRefusedError as refused:
            queries += refused.queries
            store.remove(snapshot)
            logger.warning("Cohort %s: /engage refused the session of page %d (%s); paging "
                           "the cohort again from its first page", cohort_id, refused.page,
                           refused.message)
            continue
        found.queries += queries
        found.session_restarts = restart
        return found
    msg = (f"Cohort {cohort_id}: /engage refused the paging session {MAX_SESSION_RESTARTS + 1} "
           "times in a row; try again later")
    raise SessionExpiredError(msg)


class SessionRefusedError(Exception):
    """A page after the first was refused for its session_id (internal to read_membership)."""

    def __init__(self, page: int, queries: int, message: str):
        super().__init__(message)
        self.page, self.queries, self.message = page, queries, message


def _page_through(client: QueryClient, cohort_id: int, id_property: str,
                  store: SnapshotStore, snapshot: str) -> Membership:
    decoder = msgspec.json.Decoder(EngagePage)
    form = engage_form(cohort_id, id_property)
    user_ids: list[str] = []
    distinct_ids: list[str | None] = []
    parts = stored = without_id = 0
    page, session_id = 0, None

    def write_part() -> None:
        nonlocal parts, stored, user_ids, distinct_ids
        store.write_part(snapshot, parts, pl.DataFrame(
            {"user_id": user_ids, "distinct_id": distinct_ids}, schema=MEMBER_SCHEMA))
        parts += 1
        stored += len(user_ids)
        user_ids, distinct_ids = [], []

    while True:
        params = {**form, "page": str(page)}
        if session_id:
            params["session_id"] = session_id
        try:
            answer = decoder.decode(client.post(ENGAGE_PATH, params))
        except QueryRefusedError as refused:
            if page == 0 or not is_session_refusal(refused.status, refused.text):
                raise
            raise SessionRefusedError(page, page + 1, refused.text) from None
        for profile in answer.results:
            user_id = _user_id(profile, id_property)
            if user_id is None:
                without_id += 1
                continue
            distinct_id = _text(profile.distinct_id)
            user_ids.append(user_id)
            distinct_ids.append(None if distinct_id == user_id else distinct_id)
        if len(user_ids) >= PART_ROWS:
            write_part()
        session_id = answer.session_id or session_id
        if len(answer.results) < answer.page_size or not answer.results:
            break
        page += 1
    if user_ids or parts == 0:  # an empty cohort still has a (empty) part: the snapshot exists
        write_part()
    return Membership(stored, without_id, page + 1)
