"""The tap's settings, declared once (the JSON Schema) and read once (typed)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from plugin_support.delivery_settings import SECONDS
from plugin_support.retry import RetryPolicy
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
NUMERIC_ID = th.CustomType({"type": ["integer", "string"], "pattern": "^[0-9]+$"})

CONFIG_SCHEMA = th.PropertiesList(
    th.Property("source", th.StringType, default=QUERY_API, allowed_values=list(SOURCES),
                description="Where memberships come from: query_api (the Query API, within "
                "its budget of 60 queries an hour) or webhook (the messages of Mixpanel's "
                "cohort sync to a custom webhook that mixpanel-cohort-receiver stored in "
                "spool_url; no query is made)."),
    th.Property("project_id", NUMERIC_ID,
                description="Mixpanel project id (a number or a numeric string); required for "
                "source query_api."),
    th.Property("service_account_username", th.StringType,
                description="Service account user name (needs access to the project); "
                "required for source query_api."),
    th.Property("service_account_secret", th.StringType, secret=True,
                description="Service account secret; required for source query_api."),
    th.Property("workspace_id", NUMERIC_ID,
                description="Optional: workspace (data view) id, for projects with data views."),
    th.Property("region", th.StringType, default="US", allowed_values=list(REGION_HOSTS),
                description="Data residency: US (mixpanel.com), EU (eu.mixpanel.com) or IN "
                "(in.mixpanel.com)."),
    th.Property("api_url", th.StringType,
                description="Base URL overriding region (proxies, tests); requests go to "
                "{api_url}/api/query/cohorts/list and {api_url}/api/query/engage."),
    th.Property("cohort_ids", th.ArrayType(th.IntegerType),
                description="Optional list of cohort ids to read; default: every cohort of "
                "the project. A cohort dropped from the list gets a remove for every member."),
    th.Property("id_property", th.StringType, default=DISTINCT_ID,
                description="The profile property holding the Braze external_id (user_id); "
                "$distinct_id or a property such as $braze_external_id. Members without it "
                "are skipped and counted."),
    th.Property("spool_url", th.StringType,
                description="source webhook: where mixpanel-cohort-receiver stores Mixpanel's "
                "messages (its spool_url): a local folder, s3://, gs:// or az:// URL."),
    th.Property("spool_options", th.ObjectType(additional_properties=True), secret=True,
                description="source webhook: options for the fsspec filesystem of spool_url "
                "(endpoint_url, key, secret, token, connection_string, ...)."),
    th.Property("snapshot_url", th.StringType, default=DEFAULT_SNAPSHOT_URL,
                description="Where membership snapshots are kept: a local folder, s3://, gs:// "
                "or az:// URL. Keep one per pipeline; the state names files here."),
    th.Property("snapshot_options", th.ObjectType(additional_properties=True), secret=True,
                description="Options for the fsspec filesystem of snapshot_url (endpoint_url, "
                "key, secret, token, connection_string, ...)."),
    th.Property("full_resync_hours", th.IntegerType, default=72,
                description="Every member's whole set is sent again when the last full resync "
                "that reached the target is older than this (Mixpanel's own sync keeps its "
                "snapshot 3 days): users created in Braze after their cohorts were synced get "
                "them then. 0: every run is a full resync.", minimum=0, maximum=MAX_HOURS),
    th.Property("snapshot_grace_hours", th.IntegerType, default=72,
                description="Snapshots no state names any longer are deleted after this many "
                "hours (0: at the end of the run); with source webhook also the spool's "
                "messages, once the saved state a run starts from covers them.", minimum=0,
                maximum=MAX_HOURS),
    th.Property("max_queries_per_hour", th.IntegerType, default=MAX_QUERIES_PER_HOUR,
                description="Query API budget of the project (Mixpanel: 60 an hour); the tap "
                "never starts more in any hour.", minimum=1, maximum=1_000_000),
    th.Property("max_concurrent_queries", th.IntegerType, default=MAX_CONCURRENT_QUERIES,
                description="Queries at once (Mixpanel: 5 per project).", minimum=1,
                maximum=100),
    th.Property("max_retry_seconds", SECONDS, default=600,
                description="How long one query is retried (429, 5xx, dropped connections) "
                "before the run fails.", minimum=0),
    th.Property("retry_first_delay_seconds", SECONDS, default=2,
                description="First wait before a retry; it doubles up to 60 s.", minimum=0),
).to_dict()


@dataclass(frozen=True)
class Settings:
    """The tap's config, typed, defaults applied."""

    source: str
    project_id: str
    username: str
    secret: str
    workspace_id: str | None
    base_url: str
    cohort_ids: tuple[int, ...] | None
    id_property: str
    spool_url: str | None
    spool_options: Mapping[str, Any]
    snapshot_url: str
    snapshot_options: Mapping[str, Any]
    snapshot_grace: dt.timedelta
    full_resync_hours: int
    max_queries_per_hour: int
    max_concurrent_queries: int
    retry: RetryPolicy

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Read from a validated config; a setting left out takes its schema default.

        SourceSettingError names the settings the chosen `source` needs and lacks.
        """
        defaults = {name: prop.get("default")
                    for name, prop in CONFIG_SCHEMA["properties"].items()}
        config = {**defaults, **{k: v for k, v in config.items() if v is not None}}
        _check_source(config)
        workspace = config["workspace_id"]
        ids = config["cohort_ids"]
        return cls(
            source=str(config["source"]),
            project_id=str(config["project_id"] or ""),
            username=str(config["service_account_username"] or ""),
            secret=str(config["service_account_secret"] or ""),
            workspace_id=str(workspace) if workspace not in (None, "") else None,
            base_url=str(config["api_url"] or REGION_HOSTS[config["region"]]),
            cohort_ids=tuple(int(i) for i in ids) if ids else None,
            id_property=str(config["id_property"]),
            spool_url=str(config["spool_url"]) if config["spool_url"] else None,
            spool_options=dict(config["spool_options"] or {}),
            snapshot_url=str(config["snapshot_url"]),
            snapshot_options=dict(config["snapshot_options"] or {}),
            snapshot_grace=dt.timedelta(hours=int(config["snapshot_grace_hours"])),
            full_resync_hours=int(config["full_resync_hours"]),
            max_queries_per_hour=int(config["max_queries_per_hour"]),
            max_concurrent_queries=int(config["max_concurrent_queries"]),
            retry=RetryPolicy(first_delay=float(config["retry_first_delay_seconds"]),
                              jitter_min=0, jitter_max=0,  # alone on its budget: no jitter
                              budget_seconds=float(config["max_retry_seconds"])),
        )


class SourceSettingError(Exception):
    """The chosen source lacks a setting it needs; the message names them."""


def _check_source(config: Mapping[str, Any]) -> None:
    if config["source"] == WEBHOOK:
        if not config["spool_url"]:
            msg = ("source webhook reads Mixpanel's messages from spool_url: set spool_url to "
                   "mixpanel-cohort-receiver's spool_url")
            raise SourceSettingError(msg)
        return
    missing = [name for name in QUERY_API_REQUIRED if config.get(name) in (None, "")]
    if missing:
        msg = (f"source {config['source']} needs {', '.join(missing)} (a Mixpanel service "
               "account of the project); or set source to webhook")
        raise SourceSettingError(msg)
