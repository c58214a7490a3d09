"""target-mixpanel's settings: declared once (schema, defaults), read once, typed, checked."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from singer_sdk import typing as th

from plugin_support.config_errors import SettingError, secret_values
from plugin_support.delivery_settings import (
    output_properties,
    progress_property,
    request_timeout_property,
    retry_policy_from,
    retry_properties,
)
from plugin_support.retry import RetryPolicy
from plugin_support.setting_checks import check_http_url
from target_mixpanel.mixpanel_rules import MAX_EVENTS_PER_REQUEST, MAX_REQUEST_BYTES, REGION_HOSTS

logger = logging.getLogger("target-mixpanel")
AUTH_SETTINGS = ("project_id + service_account_username + service_account_secret, "
                 "or project_token, or api_secret")
DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_CONCURRENCY = 200
MAX_WORKER_PROCESSES = 64
# Where tap-braze-currents writes its batch files in meltano.yml's prod environment
DEFAULT_BATCH_ROOTS = [".meltano/run/braze-batches"]
__all__ = ["CONFIG_SCHEMA", "MixpanelAuth", "MixpanelSettings", "SettingError"]


def default_worker_processes() -> int:
    """CPUs + 1 (a worker waiting on Mixpanel leaves its CPU to another), at most 8."""
    return min(8, (os.cpu_count() or 1) + 1)


CONFIG_SCHEMA = th.PropertiesList(
    th.Property("project_id", th.StringType,
                description="Mixpanel project id (required with a service account)."),
    th.Property("service_account_username", th.StringType,
                description="Service account user name (preferred auth)."),
    th.Property("service_account_secret", th.StringType, secret=True,
                description="Service account secret."),
    th.Property("project_token", th.StringType, secret=True,
                description="Project token (auth when no service account is given)."),
    th.Property("api_secret", th.StringType, secret=True,
                description="Project API secret (deprecated by Mixpanel; works, warns)."),
    th.Property("region", th.StringType, default="US", allowed_values=list(REGION_HOSTS),
                description="Data residency: US (api), EU (api-eu) or IN (api-in)."),
    th.Property("api_url", th.StringType,
                description="Base URL overriding region (proxies, tests); POSTs go to "
                "{api_url}/import."),
    th.Property("mapping", th.StringType, default="braze_currents",
                allowed_values=["braze_currents", "generic"],
                description="braze_currents: Braze's own Mixpanel naming; generic: any tap."),
    th.Property("event_name", th.StringType, default="{stream}",
                description="generic: event name; {field} and {stream} are filled in."),
    th.Property("distinct_id_field", th.StringType, default="distinct_id",
                description="generic: the field holding the user id."),
    th.Property("time_field", th.StringType, default="time",
                description="generic: the field holding the event time (epoch s/ms or "
                "ISO 8601)."),
    th.Property("insert_id_field", th.StringType, default="id",
                description="generic: the field that identifies an event for dedup "
                "(absent: a hash of the record)."),
    th.Property("batch_size", th.IntegerType(minimum=1, maximum=MAX_EVENTS_PER_REQUEST),
                default=MAX_EVENTS_PER_REQUEST,
                description="Events per request (at most 2000)."),
    th.Property("max_batch_bytes", th.IntegerType(minimum=1024, maximum=MAX_REQUEST_BYTES),
                default=DEFAULT_MAX_BATCH_BYTES,
                description="Uncompressed bytes per request (at most 10 MB)."),
    th.Property("max_concurrency", th.IntegerType(minimum=1, maximum=MAX_CONCURRENCY),
                default=10,
                description="Requests in flight at once (split across worker processes)."),
    th.Property("adaptive_sending", th.BooleanType, default=True,
                description="Steer requests in flight and events/s from Mixpanel's "
                "answers (AIMD on 429s), starting from max_concurrency."),
    th.Property("worker_processes", th.IntegerType(minimum=1, maximum=MAX_WORKER_PROCESSES),
                description="Processes that map and send events; default: CPUs + 1, "
                "at most 8."),
    th.Property("gzip", th.BooleanType, default=True, description="Gzip request bodies."),
    th.Property("gzip_level", th.IntegerType, default=1, allowed_values=[0, 1, 2, 3],
                description="Gzip level (ISA-L): 0 fastest to 3 smallest."),
    th.Property("strict", th.BooleanType, default=True,
                description="Ask Mixpanel to validate every event (strict=1)."),
    *output_properties("mixpanel", "imported"),
    th.Property("delete_batch_files", th.BooleanType, default=True,
                description="BATCH messages: delete each batch file once every record in "
                "it is imported, skipped or dead-lettered."),
    th.Property("batch_roots", th.ArrayType(th.StringType), default=DEFAULT_BATCH_ROOTS,
                description="BATCH messages: the folders (paths or fsspec URLs) batch files "
                "may be in; a file elsewhere, or not named as the Singer SDK names batch "
                "files, is refused, never read or deleted. Default: the tap's batch root in "
                "meltano.yml, .meltano/run/braze-batches."),
    th.Property("pii", th.StringType, default="keep", allowed_values=["keep", "hash", "drop"],
                description="Email addresses and phone numbers: keep, hash (salted SHA-256) "
                "or drop."),
    th.Property("pii_salt", th.StringType, secret=True,
                description="Salt for pii: hash."),
    *retry_properties(),
    request_timeout_property(),
    th.Property("verify_tls", th.BooleanType, default=True,
                description="Check TLS certificates (turning it off warns)."),
    progress_property(),
    th.Property("profile_properties", th.ObjectType(additional_properties=th.StringType),
                description="Optional (off by default): {profile property: event property} "
                "set on each user's Mixpanel profile with $set after their events are "
                "imported, e.g. {\"$braze_external_id\": \"distinct_id\"}, so profile-based "
                "cohorts and Mixpanel's Braze export match users known only from events. "
                "Needs project_token."),
).to_dict()


@dataclass(frozen=True)
class MixpanelAuth:
    """How requests authenticate: basic auth pair, query params, and the settings in use."""

    basic: tuple[str, str] = field(repr=False)
    params: dict[str, str]
    describe: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MixpanelAuth:
        """The credentials in Mixpanel's order of preference; SettingError names what is missing."""
        if config.get("service_account_username") or config.get("service_account_secret"):
            missing = [k for k in ("project_id", "service_account_username",
                                   "service_account_secret") if not config.get(k)]
            if missing:
                msg = f"Service account auth needs {', '.join(missing)} as well."
                raise SettingError(msg)
            return cls((config["service_account_username"], config["service_account_secret"]),
                       {"project_id": str(config["project_id"])},
                       "project_id, service_account_username and service_account_secret")
        params = {"project_id": str(config["project_id"])} if config.get("project_id") else {}
        if config.get("project_token"):
            return cls((config["project_token"], ""), params, "project_token")
        if config.get("api_secret"):
            return cls((config["api_secret"], ""), params, "api_secret")
        msg = f"No Mixpanel credentials: set {AUTH_SETTINGS}."
        raise SettingError(msg)


@dataclass(frozen=True)
class MixpanelSettings:
    """The settings a run uses, checked (it pickles, for the worker processes)."""

    api_url: str
    auth: MixpanelAuth | None  # None in a dry run, which sends nothing
    mapping: str
    event_name: str
    distinct_id_field: str
    time_field: str
    insert_id_field: str
    batch_size: int
    max_batch_bytes: int
    max_concurrency: int
    adaptive_sending: bool
    worker_processes: int
    gzip: bool
    gzip_level: int
    strict: bool
    dead_letter_path: str
    dry_run: bool
    dry_run_path: str
    delete_batch_files: bool
    batch_roots: tuple[str, ...]
    pii: str
    pii_salt: str = field(repr=False)
    retry: RetryPolicy
    request_timeout: float
    verify_tls: bool
    progress_seconds: float
    profile_properties: tuple[tuple[str, str], ...] = ()   # (profile property, event property)
    profile_token: str = field(default="", repr=False)
    # the secret settings' values, for the redaction in worker processes
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MixpanelSettings:
        """Read validated settings (the SDK filled in the defaults); SettingError names one.

        Risky settings are warned about here, once, in the main process.
        """
        api_url = REGION_HOSTS[config["region"]]
        if config.get("api_url"):
            api_url = check_http_url("api_url", str(config["api_url"]),
                                     "https://api.mixpanel.com")
        auth = None
        if not config["dry_run"]:
            auth = MixpanelAuth.from_config(config)
            _warn_about_risky_settings(config, auth, api_url)
        processes = config.get("worker_processes") or default_worker_processes()
        return cls(api_url=api_url, auth=auth, mapping=str(config["mapping"]),
                   event_name=str(config["event_name"]),
                   distinct_id_field=str(config["distinct_id_field"]),
                   time_field=str(config["time_field"]),
                   insert_id_field=str(config["insert_id_field"]),
                   batch_size=int(config["batch_size"]),
                   max_batch_bytes=int(config["max_batch_bytes"]),
                   max_concurrency=int(config["max_concurrency"]),
                   adaptive_sending=bool(config["adaptive_sending"]),
                   worker_processes=int(processes), gzip=bool(config["gzip"]),
                   gzip_level=int(config["gzip_level"]), strict=bool(config["strict"]),
                   dead_letter_path=str(config["dead_letter_path"]),
                   dry_run=bool(config["dry_run"]), dry_run_path=str(config["dry_run_path"]),
                   delete_batch_files=bool(config["delete_batch_files"]),
                   batch_roots=tuple(config.get("batch_roots") or DEFAULT_BATCH_ROOTS),
                   pii=str(config["pii"]), pii_salt=str(config.get("pii_salt") or ""),
                   retry=retry_policy_from(config),
                   request_timeout=float(config["request_timeout_seconds"]),
                   verify_tls=bool(config["verify_tls"]),
                   progress_seconds=float(config["progress_interval_seconds"]),
                   secrets=tuple(secret_values(CONFIG_SCHEMA, dict(config))),
                   **profile_settings(config))


def profile_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """profile_properties, checked: names and event properties, and the token it needs."""
    wanted = config.get("profile_properties") or {}
    if not wanted:
        return {}
    if not all(isinstance(k, str) and k and isinstance(v, str) and v
               for k, v in wanted.items()):
        msg = ("profile_properties must map profile property names to event property names, "
               f"got {wanted!r:.200}")
        raise SettingError(msg)
    token = str(config.get("project_token") or "")
    if not token and not config.get("dry_run"):
        msg = ("profile_properties writes profiles through /engage, which needs project_token: "
               "set project_token (the project's token), or unset profile_properties")
        raise SettingError(msg)
    return {"profile_properties": tuple(sorted(wanted.items())), "profile_token": token}


def _warn_about_risky_settings(config: Mapping[str, Any], auth: MixpanelAuth,
                               api_url: str) -> None:
    if auth.describe == "api_secret":
        logger.warning("api_secret is deprecated by Mixpanel (retired 2027-03-03); use a "
                       "service account (service_account_username/secret + project_id)")
    if not config["verify_tls"]:
        logger.warning("verify_tls is off: TLS certificates of %s are not checked", api_url)
    if config["pii"] == "hash" and not config.get("pii_salt"):
        logger.warning("pii is 'hash' without pii_salt: hashes of common values can be "
                       "guessed; set pii_salt")
