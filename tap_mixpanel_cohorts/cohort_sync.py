"""One run of the tap: which cohorts, their memberships read once, snapshots, the summary.

The streams ask this object for what they emit; it reads each cohort's membership from
Mixpanel at most once per run, stores it as a new snapshot and hands out its name.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import msgspec

from plugin_support.cohort_names import distinct_names
from tap_mixpanel_cohorts.membership import read_membership
from tap_mixpanel_cohorts.mixpanel_query_api import (
    COHORTS_LIST_PATH,
    COUNT_TOLERANCE_MEMBERS,
    COUNT_TOLERANCE_SHARE,
    ENGAGE_PAGE_SIZE,
)
from tap_mixpanel_cohorts.query_budget import QueryBudget, describe_duration
from tap_mixpanel_cohorts.query_client import Credentials, QueryClient
from tap_mixpanel_cohorts.settings import Settings
from tap_mixpanel_cohorts.snapshots import SnapshotStore

logger = logging.getLogger(__name__)

# Beside the snapshots: when the last hour's queries ended, for the next run's budget.
QUERY_LOG = "query-log.json"


class CohortSettingError(Exception):
    """cohort_ids or id_property do not fit the project; the message names the setting."""


@dataclass
class Summary:
    """What the run did, logged at its end."""

    cohorts: int = 0
    members: int = 0
    members_without_id: int = 0
    adds: int = 0
    removes: int = 0
    queries: int = 0
    retries: int = 0
    snapshots_deleted: int = 0
    user_sets: int = 0
    full_resync: bool = False
    session_restarts: int = 0
    spool_messages_deleted: int = 0
    without_id_by_cohort: dict[str, int] = field(default_factory=dict)
    count_differs_by_cohort: dict[str, dict[str, int]] = field(default_factory=dict)


def planned_queries(cohorts: list[dict[str, Any]]) -> int:
    """/engage queries to page these cohorts: one per full page, plus the last (short) one."""
    return sum(int(c.get("count") or 0) // ENGAGE_PAGE_SIZE + 1 for c in cohorts)


class CohortSync:
    """The cohorts of one run and their memberships."""

    def __init__(self, settings: Settings, reads_members: bool,
                 saved_snapshots: set[str] | None = None):
        """Nothing is sent yet; `reads_members` says whether /engage will be paged.

        `saved_snapshots`: those the state the run started from names (what Meltano saved);
        they are kept until a later run starts from a state that no longer names them.
        """
        self.settings = settings
        self.saved_snapshots = set(saved_snapshots or ())
        self.reads_members = reads_members
        self.started_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self.budget = QueryBudget(settings.max_queries_per_hour,
                                  settings.max_concurrent_queries)
        self.client = QueryClient(
            settings.base_url,
            Credentials(settings.service_account_username, settings.service_account_secret,
                        settings.project_id, settings.workspace_id),
            self.budget, settings.retry)
        self.store = SnapshotStore(settings.snapshot_url, settings.snapshot_options)
        self.summary = Summary()
        self.written: dict[int, str] = {}  # cohort id -> this run's snapshot name
        self.members_of: dict[int, int] = {}  # cohort id -> members its snapshot holds
        self._store_checked = False

    @property
    def synced_at(self) -> str:
        """The run's start, as records carry it."""
        return self.started_at.isoformat().replace("+00:00", "Z")

    @cached_property
    def cohorts(self) -> list[dict[str, Any]]:
        """The selected cohorts as /cohorts/list gives them (one query); logs the plan."""
        self._load_query_log()
        listed = msgspec.json.decode(self.client.post(COHORTS_LIST_PATH, {}))
        if not isinstance(listed, list):
            msg = f"{COHORTS_LIST_PATH} answered {type(listed).__name__}, not a list of cohorts"
            raise CohortSettingError(msg)
        by_id = {int(c["id"]): c for c in listed}
        wanted = self.settings.cohort_ids
        if wanted:
            unknown = [i for i in wanted if i not in by_id]
            if unknown:
                msg = (f"cohort_ids lists {', '.join(map(str, unknown))}: not a cohort of "
                       f"project {self.settings.project_id} (it has "
                       f"{', '.join(map(str, sorted(by_id))) or 'none'}). Fix cohort_ids.")
                raise CohortSettingError(msg)
            selected = [by_id[i] for i in dict.fromkeys(wanted)]
        else:
            selected = sorted(listed, key=lambda c: int(c["id"]))
        self.summary.cohorts = len(selected)
        self._name_cohorts(selected)
        self._log_plan(selected)
        return selected

    def _name_cohorts(self, selected: list[dict[str, Any]]) -> None:
        """The names the cohorts are synced under (`NAME (ID)` where names collide)."""
        self._names = distinct_names((int(c["id"]), str(c["name"])) for c in selected)
        for cohort in selected:
            if self._names[int(cohort["id"])] != cohort["name"]:
                logger.warning("Cohort %s: another selected cohort has the name %r (or one "
                               "giving the same boolean attribute); it is synced as %r",
                               cohort["id"], cohort["name"], self._names[int(cohort["id"])])

    def spool_entry(self, cohort_id: int) -> dict[str, Any]:
        """What a state entry names beside the snapshot (the webhook source's position)."""
        return {}

    def name_of(self, cohort: dict[str, Any]) -> str:
        """The name a cohort is synced under: its own, or `NAME (ID)` when names collide."""
        _ = self.cohorts
        return self._names[int(cohort["id"])]

    def _log_plan(self, cohorts: list[dict[str, Any]]) -> None:
        engage = planned_queries(cohorts) if self.reads_members else 0
        total = 1 + engage
        members = sum(int(c.get("count") or 0) for c in cohorts)
        logger.info(
            "Plan: %d queries (1 cohorts list + %d /engage pages for %d cohorts, %s members); "
            "at %d queries an hour that is %s of query budget (the first %d start at once)",
            total, engage, len(cohorts), f"{members:,}", self.settings.max_queries_per_hour,
            describe_duration(self.budget.seconds_for(total)), self.settings.max_queries_per_hour)

    def _load_query_log(self) -> None:
        try:
            ended = self.store.read_json(QUERY_LOG) or []
        except Exception as exc:
            logger.warning("No query log from earlier runs (%s): the budget starts empty",
                           self.store.describe_error(exc))
            return
        self.budget.seed([t for t in ended if isinstance(t, (int, float))])
        if ended:
            logger.info("Query budget: %d queries of earlier runs still in the last hour",
                        len(self.budget.recent()))

    def save_query_log(self) -> None:
        """Keep the last hour's query times for the next run (best effort)."""
        try:
            self.store.write_json(QUERY_LOG, self.budget.recent())
        except Exception as exc:
            logger.warning("Could not save the query log (%s)", self.store.describe_error(exc))

    def check_store(self) -> None:
        """Fail early, naming snapshot_url, when snapshots cannot be written (checked once)."""
        if not self._store_checked:
            self.store.check()
            self._store_checked = True

    def snapshot_of(self, cohort: dict[str, Any]) -> str:
        """The name of this run's snapshot of a cohort (read from Mixpanel the first time)."""
        cohort_id = int(cohort["id"])
        if cohort_id in self.written:
            return self.written[cohort_id]
        self.check_store()
        name = self.store.new_name(cohort_id, self.started_at)
        membership = read_membership(self.client, cohort_id, self.settings.id_property,
                                     self.store, name)
        if membership.without_id:
            self.summary.members_without_id += membership.without_id
            self.summary.without_id_by_cohort[str(cohort_id)] = membership.without_id
            logger.warning("Cohort %s (%r): %d members have no %s and are skipped", cohort_id,
                           cohort["name"], membership.without_id, self.settings.id_property)
            if membership.stored == 0:
                msg = (f"id_property {self.settings.id_property!r}: none of the "
                       f"{membership.without_id} members of cohort {cohort_id} "
                       f"({cohort['name']!r}) has it. Check id_property.")
                raise CohortSettingError(msg)
        self.save_query_log()
        self._compare_count(cohort, membership.stored + membership.without_id)
        self.summary.session_restarts += membership.session_restarts
        self.summary.members += membership.stored
        self.members_of[cohort_id] = membership.stored
        self.written[cohort_id] = name
        logger.info("Cohort %s (%r): %d members read in %d queries, snapshot %s", cohort_id,
                    cohort["name"], membership.stored, membership.queries, name)
        return name

    def _compare_count(self, cohort: dict[str, Any], read: int) -> None:
        """Warn when /engage gave a number of members far from cohorts/list's `count`."""
        listed = cohort.get("count")
        if not isinstance(listed, int):
            return
        tolerance = max(COUNT_TOLERANCE_MEMBERS, int(listed * COUNT_TOLERANCE_SHARE))
        if abs(read - listed) > tolerance:
            self.summary.count_differs_by_cohort[str(cohort["id"])] = {
                "listed": listed, "read": read}
            logger.warning("Cohort %s (%r): /engage gave %d members, cohorts/list counts %d "
                           "(more than %d apart). Membership may have moved between the two "
                           "queries; if it repeats, check id_property and the cohort in "
                           "Mixpanel.", cohort["id"], cohort["name"], read, listed, tolerance)

    def finish(self, named_snapshots: set[str]) -> Summary:
        """Delete old snapshots no state names (after the grace period); the run's summary.

        `named_snapshots`: those the state emitted at the end names.
        """
        self.save_query_log()
        keep = named_snapshots | self.saved_snapshots | set(self.written.values())
        self.summary.snapshots_deleted = self.store.delete_unnamed(
            keep, self.settings.snapshot_grace, dt.datetime.now(dt.timezone.utc))
        self.summary.queries = self.budget.queries
        self.summary.retries = self.client.retries
        return self.summary
