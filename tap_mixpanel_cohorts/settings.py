"""The tap's settings: each declared once (plugin_support.declared_settings), typed, checked."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from plugin_support.declared_settings import setting
from plugin_support.delivery_settings import HttpSettings
from tap_mixpanel_cohorts.mixpanel_query_api import (
    DISTINCT_ID,
    MAX_CONCURRENT_QUERIES,
    MAX_QUERIES_PER_HOUR,
    REGION_HOSTS,
)

DEFAULT_SNAPSHOT_URL = "mixpanel-cohort-snapshots"
QUERY_API, WEBHOOK = "query_api", "webhook"
SOURCES = (QUERY_API, WEBHOOK)
QUERY_API_REQUIRED = ("project_id", "service_account_username", "service_account_secret")
MAX_HOURS = 24 * 365 * 10  # hour settings: at most ten years
NUMERIC_ID = {"type": ["integer", "string"], "pattern": "^[0-9]+$"}  # a number or its string


@dataclass(frozen=True, kw_only=True)
class Settings(HttpSettings):
    """The tap's config, typed, defaults applied."""

    # no jitter on retries: the queries wait for one shared budget (query_budget.py) anyway
    setting_defaults: ClassVar[dict[str, Any]] = {"retry_jitter_seconds": (0.0, 0.0)}

    source: str = setting(
        QUERY_API, options=SOURCES,
        description="Where memberships come from: query_api (the Query API, within its budget "
        "of 60 queries an hour) or webhook (the messages of Mixpanel's cohort sync to a custom "
        "webhook that mixpanel-cohort-receiver stored in spool_url; no query is made).")
    project_id: str = setting(
        "", json_type=NUMERIC_ID,
        description="Mixpanel project id (a number or a numeric string); required for source "
        "query_api.")
    service_account_username: str = setting(
        "", description="Service account user name (needs access to the project); required for "
        "source query_api.")
    service_account_secret: str = setting(
        "", secret=True, description="Service account secret; required for source query_api.")
    workspace_id: str | None = setting(
        None, json_type=NUMERIC_ID,
        description="Optional: workspace (data view) id, for projects with data views.")
    region: str = setting("US", options=list(REGION_HOSTS),
                          description="Data residency: US (mixpanel.com), EU (eu.mixpanel.com) "
                          "or IN (in.mixpanel.com).")
    api_url: str | None = setting(
        None, description="Base URL overriding region (proxies, tests); requests go to "
        "{api_url}/api/query/cohorts/list and {api_url}/api/query/engage.")
    cohort_ids: tuple[int, ...] | None = setting(
        None, description="Optional list of cohort ids to read; default: every cohort of the "
        "project. A cohort dropped from the list gets a remove for every member.")
    id_property: str = setting(
        DISTINCT_ID, description="The profile property holding the Braze external_id "
        "(user_id); $distinct_id or a property such as $braze_external_id. Members without it "
        "are skipped and counted.")
    spool_url: str | None = setting(
        None, description="source webhook: where mixpanel-cohort-receiver stores Mixpanel's "
        "messages (its spool_url): a local folder, s3://, gs:// or az:// URL.")
    spool_options: Mapping[str, Any] = setting(
        {}, secret=True, description="source webhook: options for the fsspec filesystem of "
        "spool_url (endpoint_url, key, secret, token, connection_string, ...).")
    snapshot_url: str = setting(
        DEFAULT_SNAPSHOT_URL, description="Where membership snapshots are kept: a local folder, "
        "s3://, gs:// or az:// URL. Keep one per pipeline; the state names files here.")
    snapshot_options: Mapping[str, Any] = setting(
        {}, secret=True, description="Options for the fsspec filesystem of snapshot_url "
        "(endpoint_url, key, secret, token, connection_string, ...).")
    full_resync_hours: int = setting(
        72, minimum=0, maximum=MAX_HOURS,
        description="Every member's whole set is sent again when the last full resync that "
        "reached the target is older than this (Mixpanel's own sync keeps its snapshot 3 "
        "days): users created in Braze after their cohorts were synced get them then. 0: every "
        "run is a full resync.")
    snapshot_grace_hours: int = setting(
        72, minimum=0, maximum=MAX_HOURS,
        description="Snapshots no state names any longer are deleted after this many hours (0: "
        "at the end of the run); with source webhook also the spool's messages, once the saved "
        "state a run starts from covers them.")
    max_queries_per_hour: int = setting(
        MAX_QUERIES_PER_HOUR, minimum=1, maximum=1_000_000,
        description="Query API budget of the project (Mixpanel: 60 an hour); the tap never "
        "starts more in any hour.")
    max_concurrent_queries: int = setting(
        MAX_CONCURRENT_QUERIES, minimum=1, maximum=100,
        description="Queries at once (Mixpanel: 5 per project).")

    @property
    def base_url(self) -> str:
        """Where queries go: api_url, else the region's host."""
        return self.api_url or REGION_HOSTS[self.region]

    @property
    def snapshot_grace(self) -> dt.timedelta:
        """snapshot_grace_hours as a duration."""
        return dt.timedelta(hours=self.snapshot_grace_hours)

    def check(self) -> None:
        """SourceSettingError names the settings the chosen `source` needs and lacks."""
        if self.source == WEBHOOK:
            if not self.spool_url:
                msg = ("source webhook reads Mixpanel's messages from spool_url: set spool_url "
                       "to mixpanel-cohort-receiver's spool_url")
                raise SourceSettingError(msg)
            return
        missing = [name for name in QUERY_API_REQUIRED if not getattr(self, name)]
        if missing:
            msg = (f"source {self.source} needs {', '.join(missing)} (a Mixpanel service "
                   "account of the project); or set source to webhook")
            raise SourceSettingError(msg)


class SourceSettingError(Exception):
    """The chosen source lacks a setting it needs; the message names them."""


CONFIG_SCHEMA = Settings.schema()
